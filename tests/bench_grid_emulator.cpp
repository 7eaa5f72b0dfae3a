// Speed of the CUDA grid emulator (kernels/cuda_grid/) on our convolution: the forward pass of
// every distinct PreResNet-20 convolution at batch 2, run as the GPU kernel's source on the CPU
// (one run in forward thread order, then the three-schedule check the kernel tests use), next to
// ref::'s plain loops and cpu::'s im2col + OpenBLAS path on the same shape. Each emulated result
// is checked against ref:: (exit 1 on a mismatch). Prints one row per shape: milliseconds, and
// emulated CUDA threads and fiber switches per second. `make bench` runs it.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/cuda/runtime.h"
#include "tests/cuda_testing.h"
#include "tests/kernel_testing.h"

namespace {

using kd::ConvGeom;
using kd::cuda_testing::DeviceArray;
using kd::kernel_testing::geom;
using kd::kernel_testing::uniform;

// Best of `reps` wall times of f, in milliseconds.
double best_ms(int reps, const std::function<void()>& f) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return best;
}

}  // namespace

int main() {
  const std::vector<std::pair<const char*, ConvGeom>> shapes = {
      {"conv1   3->16 32x32", geom(2, 3, 32, 32, 16, 3, 3, 1, 1)},
      {"layer1 16->16 32x32", geom(2, 16, 32, 32, 16, 3, 3, 1, 1)},
      {"layer2 16->32 s2   ", geom(2, 16, 32, 32, 32, 3, 3, 2, 1)},
      {"layer2 32->32 16x16", geom(2, 32, 16, 16, 32, 3, 3, 1, 1)},
      {"layer3 32->64 s2   ", geom(2, 32, 16, 16, 64, 3, 3, 2, 1)},
      {"layer3 64->64 8x8  ", geom(2, 64, 8, 8, 64, 3, 3, 1, 1)},
  };
  std::printf("grid emulator: PreResNet-20 convolutions, forward, batch 2, float, %d OpenMP "
              "threads\n", omp_get_max_threads());
  std::printf("%-20s %10s %10s %12s %12s %10s %10s\n", "shape", "grid ms", "3-sched ms",
              "threads/s", "switches/s", "ref ms", "cpu ms");
  bool ok = true;
  double total_grid = 0;
  for (const auto& [name, g] : shapes) {
    const size_t xs = size_t(g.n) * g.c * g.h * g.w, ws = size_t(g.k) * g.c * g.r * g.s,
                 ys = size_t(g.n) * g.k * g.p() * g.q();
    const auto x = uniform<float>(xs, 1, -1, 1), w = uniform<float>(ws, 2, -1, 1),
               b = uniform<float>(size_t(g.k), 3, -1, 1);
    std::vector<float> want(ys), fast(ys);
    const double ref_ms = best_ms(3, [&] {
      kd::ref::conv2d_forward(g, x.data(), w.data(), b.data(), want.data());
    });
    const double cpu_ms = best_ms(3, [&] {
      kd::cpu::conv2d_forward(g, x.data(), w.data(), b.data(), fast.data());
    });
    DeviceArray<float> dx(x), dw(w), db(b), dy(ys);
    kd::grid::Counters before = kd::grid::counters();
    double grid_ms;
    {
      kd::grid::ScheduleScope forward(kd::grid::Schedule::Forward);
      grid_ms = best_ms(3, [&] {
        kd::cuda::conv2d_forward(g, dx.get(), dw.get(), db.get(), dy.get());
      });
    }
    const kd::grid::Counters after = kd::grid::counters();
    const double runs = 3;
    const double threads = double(after.threads - before.threads) / runs,
                 switches = double(after.switches - before.switches) / runs;
    double checked_ms;
    {
      kd::grid::ScheduleScope all(kd::grid::Schedule::All);
      checked_ms = best_ms(1, [&] {
        kd::cuda::conv2d_forward(g, dx.get(), dw.get(), db.get(), dy.get());
      });
    }
    const std::vector<float> got = dy.host();
    double worst = 0;
    for (size_t i = 0; i < ys; ++i)
      worst = std::max(worst, std::fabs(double(got[i]) - want[i]) /
                                  std::max(1.0, std::fabs(double(want[i]))));
    if (!(worst <= 1e-4)) {
      std::printf("%s: emulated result differs from ref:: by %g\n", name, worst);
      ok = false;
    }
    total_grid += grid_ms;
    std::printf("%-20s %10.1f %10.1f %12.3g %12.3g %10.2f %10.2f\n", name, grid_ms, checked_ms,
                threads / (grid_ms / 1e3), switches / (grid_ms / 1e3), ref_ms, cpu_ms);
  }
  std::printf("all six shapes: %.1f ms per forward pass on the emulator (one schedule)\n",
              total_grid);
  return ok ? 0 : 1;
}
