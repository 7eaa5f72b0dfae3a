// The CUDA grid emulator: runs the kernels of kernels/cuda/*.cu and data/cuda/*.cu, compiled by
// g++ from the same source, on the CPU. Header-only. A launch checks its configuration as a GPU
// would (at most 1024 threads per block, block x/y <= 1024, z <= 64, grid y/z <= 65535, dynamic
// shared memory <= 48 KiB; static __shared__ above 48 KiB is already a ptxas error), then runs
// every block (block.h) with its threads as fibers (fiber.h); blocks spread over the OpenMP
// threads (one OS thread under ThreadSanitizer, in a fixed order). A cluster launch
// (launch_cluster) runs its clusters one after another, the blocks of each at once on OS threads
// of their own (cluster.h), as a GPU keeps a cluster's blocks resident together.
// Schedules (schedule.h): under Schedule::All, the default, a launch runs three times, forward,
// reverse and seeded random, from the same device memory (the regions hook lists it), and every
// byte the three leave behind must be equal, or the launch throws CudaError naming the kernel,
// the schedules and the first differing byte: a race or a missing barrier. Without a hook it
// runs forward only. The other schedules run once in their order (random also shuffles blocks).
// The device language itself (qualifiers, __syncthreads, shuffles, atomics) is builtins.h.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/check.h"
#include "kernels/cuda_grid/block.h"
#include "kernels/cuda_grid/builtins.h"
#include "kernels/cuda_grid/schedule.h"
#include "kernels/cuda_grid/tensor_core.h"

namespace kd {
namespace grid {

// A span of device memory a kernel may write: the schedule check snapshots and compares these.
struct Region {
  void* base;
  size_t bytes;
};
using RegionsHook = std::vector<Region> (*)();

namespace detail {

template <class... Params>
struct KernelCall {
  void (*kernel)(Params...);
  std::tuple<std::decay_t<Params>...> args;
  static void invoke(const void* self) {
    const KernelCall& c = *static_cast<const KernelCall*>(self);
    std::apply(c.kernel, c.args);
  }
};

[[noreturn]] inline void launch_error(const char* kernel, const std::string& what) {
  throw CudaError(std::string("grid emulator: kernel ") + kernel + ": " + what);
}

inline void check_configuration(const BlockJob& job) {
  const dim3 g = job.grid, b = job.block;
  std::ostringstream os;
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
    os << "empty launch grid (" << g.x << "," << g.y << "," << g.z << ") x block (" << b.x << ","
       << b.y << "," << b.z << ")";
  else if (uint64_t(b.x) * b.y * b.z > 1024)
    os << uint64_t(b.x) * b.y * b.z << " threads per block exceed the limit of 1024";
  else if (b.x > 1024 || b.y > 1024 || b.z > 64)
    os << "block (" << b.x << "," << b.y << "," << b.z << ") exceeds the limits (1024,1024,64)";
  else if (g.x > 2147483647u || g.y > 65535 || g.z > 65535)
    os << "grid (" << g.x << "," << g.y << "," << g.z
       << ") exceeds the limits (2147483647,65535,65535)";
  else if (job.cluster.x == 0 || job.cluster.y == 0 || job.cluster.z == 0 ||
           g.x % job.cluster.x != 0 || g.y % job.cluster.y != 0 || g.z % job.cluster.z != 0)
    os << "cluster (" << job.cluster.x << "," << job.cluster.y << "," << job.cluster.z
       << ") does not divide the grid (" << g.x << "," << g.y << "," << g.z << ")";
  else if (uint64_t(job.cluster.x) * job.cluster.y * job.cluster.z > 16)
    os << uint64_t(job.cluster.x) * job.cluster.y * job.cluster.z
       << " blocks per cluster exceed sm_90's limit of 16 (above 8 with the non-portable "
          "cluster size attribute)";
  else if (job.dynamic_shared > 48 * 1024)
    os << job.dynamic_shared << " bytes of dynamic shared memory exceed the 48 KiB limit";
  const std::string what = os.str();
  if (!what.empty()) launch_error(job.kernel, what + " (invalid configuration argument)");
}

// 0..count-1 in the order `order` runs them (Random: a permutation drawn from seed and salt).
inline std::vector<int64_t> run_order(int64_t count, Order order, uint64_t seed, uint64_t salt) {
  std::vector<int64_t> sequence(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    sequence[size_t(i)] = order == Order::Reverse ? count - 1 - i : i;
  if (order == Order::Random) {
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + salt;
    for (int64_t i = count - 1; i > 0; --i)
      std::swap(sequence[size_t(i)], sequence[splitmix(rng) % uint64_t(i + 1)]);
  }
  return sequence;
}

// Keeps the error to report: a block's own failure over a peer's ClusterPeerFailed, then the
// lowest linear block index.
struct FirstFailure {
  std::mutex mutex;
  int64_t block = -1;
  bool secondary = false;
  std::exception_ptr error;
  void record(int64_t linear, std::exception_ptr e, bool peer) {
    std::lock_guard<std::mutex> lock(mutex);
    if (block < 0 || (secondary && !peer) || (secondary == peer && linear < block)) {
      block = linear, secondary = peer, error = e;
    }
  }
};

// A cluster launch: clusters one after another in the job's order; the blocks of each at once,
// one OS thread each (cluster.h).
inline void run_clusters(const BlockJob& job) {
  const dim3 g = job.grid, c = job.cluster;
  const int size = int(c.x * c.y * c.z);
  const uint64_t cgx = g.x / c.x, cgy = g.y / c.y;
  const int64_t clusters = int64_t(cgx * cgy * (g.z / c.z));
  FirstFailure failure;
  for (const int64_t k : run_order(clusters, job.order, job.seed, 11)) {
    const uint3 origin{unsigned(k % int64_t(cgx)) * c.x,
                       unsigned((k / int64_t(cgx)) % int64_t(cgy)) * c.y,
                       unsigned(k / int64_t(cgx * cgy)) * c.z};
    Cluster cluster(size);
    const std::function<void(int)> block = [&](int rank) {
      // The rank order CUDA's block_rank() gives: x fastest.
      const uint3 b{origin.x + unsigned(rank) % c.x, origin.y + (unsigned(rank) / c.x) % c.y,
                    origin.z + unsigned(rank) / (c.x * c.y)};
      const int64_t linear = int64_t(b.x + uint64_t(g.x) * (b.y + uint64_t(g.y) * b.z));
      try {
        runner().run(job, b, uint64_t(linear), &cluster, rank);
      } catch (const ClusterPeerFailed&) {
        failure.record(linear, std::current_exception(), true);
      } catch (...) {
        failure.record(linear, std::current_exception(), false);
      }
    };
#if KD_GRID_TSAN
    __tsan_release(&g_tsan_launch);
#endif
    ClusterWorkers::instance().run(size, block);
#if KD_GRID_TSAN
    __tsan_acquire(&g_tsan_done);
#endif
    if (failure.error) break;
  }
  if (failure.error) std::rethrow_exception(failure.error);
}

// Runs every block of the job once, in the job's order; the first failing block (lowest linear
// index) is reported after all blocks ran or stopped.
inline void run_grid(const BlockJob& job) {
  if (job.cluster.x * job.cluster.y * job.cluster.z > 1) return run_clusters(job);
  const uint64_t gx = job.grid.x, gy = job.grid.y;
  const int64_t blocks = int64_t(gx * gy * job.grid.z);
  const std::vector<int64_t> sequence = run_order(blocks, job.order, job.seed, 7);
  FirstFailure failure;
  auto run_one = [&](int64_t i) {
    const int64_t linear = sequence[size_t(i)];
    const uint3 b{unsigned(linear % int64_t(gx)), unsigned((linear / int64_t(gx)) % int64_t(gy)),
                  unsigned(linear / int64_t(gx * gy))};
    try {
      runner().run(job, b, uint64_t(linear));
    } catch (...) {
      failure.record(linear, std::current_exception(), false);
    }
  };
#if KD_GRID_TSAN
  __tsan_release(&g_tsan_launch);
  for (int64_t i = 0; i < blocks; ++i) run_one(i);
  __tsan_acquire(&g_tsan_done);
#else
#pragma omp parallel for schedule(dynamic, 1) if (blocks > 1)
  for (int64_t i = 0; i < blocks; ++i) run_one(i);
#endif
  if (failure.error) std::rethrow_exception(failure.error);
}

inline std::vector<std::vector<unsigned char>> snapshot(const std::vector<Region>& regions) {
  std::vector<std::vector<unsigned char>> out;
  out.reserve(regions.size());
  for (const Region& r : regions) {
    const unsigned char* p = static_cast<const unsigned char*>(r.base);
    out.emplace_back(p, p + r.bytes);
  }
  return out;
}
inline void restore(const std::vector<Region>& regions,
                    const std::vector<std::vector<unsigned char>>& saved) {
  for (size_t i = 0; i < regions.size(); ++i)
    std::memcpy(regions[i].base, saved[i].data(), regions[i].bytes);
}
inline void expect_same(const char* kernel, const std::vector<Region>& regions,
                        const std::vector<std::vector<unsigned char>>& want, Order want_order,
                        Order got_order) {
  for (size_t i = 0; i < regions.size(); ++i) {
    const unsigned char* got = static_cast<const unsigned char*>(regions[i].base);
    if (std::memcmp(got, want[i].data(), regions[i].bytes) == 0) continue;
    size_t at = 0;
    while (got[at] == want[i][at]) ++at;
    std::ostringstream os;
    os << "the " << order_name(got_order) << " and " << order_name(want_order)
       << " schedules wrote different bytes (a race or a missing barrier): device block "
       << regions[i].base << " of " << regions[i].bytes << " bytes differs first at byte " << at
       << " (0x" << std::hex << int(got[at]) << " against 0x" << int(want[i][at]) << ")";
    if (at % 4 == 0 && at + 4 <= regions[i].bytes) {
      float f_got, f_want;
      std::memcpy(&f_got, got + at, 4);
      std::memcpy(&f_want, want[i].data() + at, 4);
      os << std::dec << "; as float " << f_got << " against " << f_want;
    }
    if (at % 8 == 0 && at + 8 <= regions[i].bytes) {
      double d_got, d_want;
      std::memcpy(&d_got, got + at, 8);
      std::memcpy(&d_want, want[i].data() + at, 8);
      os << "; as double " << d_got << " against " << d_want;
    }
    launch_error(kernel, os.str());
  }
}

}  // namespace detail

// Runs kernel<<<grid, block, dynamic_shared>>>(args...) on the emulator, in clusters of
// `cluster` blocks ((1, 1, 1): no clusters). `regions` lists the device memory for the schedule
// check (null: no check, forward order under Schedule::All).
template <class... Params, class... Args>
void launch_cluster(const char* name, RegionsHook regions, void (*kernel)(Params...), dim3 grid,
                    dim3 block, size_t dynamic_shared, dim3 cluster, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong arguments");
  const detail::KernelCall<Params...> call{kernel, {std::forward<Args>(args)...}};
  BlockJob job;
  job.kernel = name;
  job.grid = grid, job.block = block, job.dynamic_shared = dynamic_shared;
  job.cluster = cluster;
  job.body = {&detail::KernelCall<Params...>::invoke, &call};
  const Settings s = settings();
  job.seed = s.seed;
  detail::check_configuration(job);
  __atomic_fetch_add(&counters().launches, 1, __ATOMIC_RELAXED);
  if (s.schedule != Schedule::All || regions == nullptr) {
    job.order = s.schedule == Schedule::Reverse  ? Order::Reverse
                : s.schedule == Schedule::Random ? Order::Random
                                                 : Order::Forward;
    detail::run_grid(job);
    return;
  }
  const std::vector<Region> spans = regions();
  const auto before = detail::snapshot(spans);
  job.order = Order::Forward;
  detail::run_grid(job);
  const auto forward = detail::snapshot(spans);
  for (Order o : {Order::Reverse, Order::Random}) {
    detail::restore(spans, before);
    job.order = o;
    detail::run_grid(job);
    detail::expect_same(name, spans, forward, Order::Forward, o);
  }
}

}  // namespace grid
}  // namespace kd
