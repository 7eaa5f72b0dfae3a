// Tests for the CUDA elementwise maps (kernels/cuda/elementwise.cu) and pooling
// (kernels/cuda/pool.cu) against ref:: in float and double: relu keeps NaN, backward ops
// ACCUMULATE into prefilled dx, grid-stride loops cover arrays larger than the grid, pools on
// awkward geometries (overlapping windows kernel 3 stride 2 pad 1, stride > kernel, non-square
// windows, one row, window = input), argmax equal to ref:: (ties: first maximum wins; NaN wins).
// Tolerances: float 1e-4 relative, double 1e-10 (nvcc may fuse a multiply-add where the host does
// not; the pools follow ref::'s summation order, so they are expected to match far closer than
// that). Needs a device: every test skips without one.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "base/check.h"
#include "kernels/elementwise.h"
#include "kernels/pool.h"
#include "tests/cuda_testing.h"
#include "tests/kernel_testing.h"


namespace kd {
namespace {

using namespace kernel_testing;
using cuda_testing::DeviceArray;

template <class T>
void check_elementwise(double tol) {
  uint64_t seed = 1000;
  for (int64_t n : {int64_t(1), int64_t(1000), int64_t(257) * 1024 + 3}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    auto a = uniform<T>(n, seed++, -1, 1), b = uniform<T>(n, seed++, -1, 1);
    auto dx0 = uniform<T>(n, seed++, -1, 1);
    a[0] = T(0);  // relu at exactly zero: forward 0, backward passes nothing
    DeviceArray<T> d_a(a), d_b(b), d_y(n), d_dx(dx0), d_acc(dx0), d_fill(n), d_scale(a);

    std::vector<T> y(n), dx = dx0, acc = dx0, filled(n), scaled = a;
    ref::relu_forward<T>(n, a.data(), y.data());
    cuda_testing::gpu_kernels<T>().relu_forward(n, d_a.get(), d_y.get());
    expect_close(d_y.host(), y, tol, "relu_forward");
    // relu_backward takes the forward OUTPUT; b stands in for dy.
    ref::relu_backward<T>(n, y.data(), b.data(), dx.data(), true);
    cuda_testing::gpu_kernels<T>().relu_backward(n, d_y.get(), d_b.get(), d_dx.get(), true);
    expect_close(d_dx.host(), dx, tol, "relu_backward");
    // Assigning: whatever dx held (NaN here) is overwritten, never read.
    std::vector<T> assigned(n);
    ref::relu_backward<T>(n, y.data(), b.data(), assigned.data(), false);
    DeviceArray<T> d_assigned(std::vector<T>(n, T(NAN)));
    cuda_testing::gpu_kernels<T>().relu_backward(n, d_y.get(), d_b.get(), d_assigned.get(), false);
    expect_close(d_assigned.host(), assigned, 0, "relu_backward assign");

    ref::add_forward<T>(n, a.data(), b.data(), y.data());
    cuda_testing::gpu_kernels<T>().add_forward(n, d_a.get(), d_b.get(), d_y.get());
    expect_close(d_y.host(), y, tol, "add_forward");

    ref::accumulate<T>(n, T(-0.75), a.data(), acc.data());
    cuda_testing::gpu_kernels<T>().accumulate(n, T(-0.75), d_a.get(), d_acc.get());
    expect_close(d_acc.host(), acc, tol, "accumulate");

    ref::fill<T>(n, T(2.5), filled.data());
    cuda_testing::gpu_kernels<T>().fill(n, T(2.5), d_fill.get());
    expect_close(d_fill.host(), filled, 0.0, "fill");

    ref::scale<T>(n, T(-3), scaled.data());
    cuda_testing::gpu_kernels<T>().scale(n, T(-3), d_scale.get());
    expect_close(d_scale.host(), scaled, tol, "scale");
  }
}

TEST(CudaElementwiseKernels, MatchRefFloat) {
  KD_REQUIRE_CUDA();
  check_elementwise<float>(1e-4);
}

TEST(CudaElementwiseKernels, MatchRefDouble) {
  KD_REQUIRE_CUDA();
  check_elementwise<double>(1e-10);
}

TEST(CudaElementwiseKernels, ReluKeepsNaNAndZeroLengthIsANoOp) {
  KD_REQUIRE_CUDA();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  DeviceArray<float> x(std::vector<float>{nan, -1.0f, 2.0f}), y(3);
  cuda_testing::gpu_kernels<float>().relu_forward(3, x.get(), y.get());
  const std::vector<float> got = y.host();
  EXPECT_TRUE(std::isnan(got[0]));
  EXPECT_EQ(got[1], 0.0f);
  EXPECT_EQ(got[2], 2.0f);
  cuda_testing::gpu_kernels<float>().fill(0, 1.0f, y.get());  // no launch, no error
  cuda_testing::gpu_kernels<float>().scale(0, 2.0f, y.get());
  EXPECT_EQ(y.host()[2], 2.0f);
}

// More elements than grid_for's capped grid has threads (kGridStrideBlockCap blocks * 256): the
// tail is reached only by the grid-stride loop.
TEST(CudaElementwiseKernels, GridStrideLoopCoversArraysBeyondTheGrid) {
  KD_REQUIRE_CUDA();
  const int64_t n = cuda_testing::gpu().grid_stride_block_cap * 256 + 4097;
  DeviceArray<float> d(n);
  cuda_testing::gpu_kernels<float>().fill(n, 1.5f, d.get());
  cuda_testing::gpu_kernels<float>().scale(n, 2.0f, d.get());
  const std::vector<float> got = d.host();
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) wrong += got[i] != 3.0f;
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(got[n - 1], 3.0f);
}

// {n, c, h, w, kh, kw, stride, pad}
const PoolGeom kGeoms[] = {
    {2, 3, 7, 9, 3, 3, 2, 1},   // overlapping windows, odd sizes, non-square input
    {1, 2, 8, 8, 2, 2, 2, 0},   // the common case, batch 1
    {1, 3, 5, 6, 3, 3, 1, 1},   // stride 1: up to 9 windows per input
    {2, 1, 6, 7, 3, 2, 2, 1},   // non-square window
    {1, 2, 7, 8, 2, 2, 3, 0},   // stride > kernel: inputs under no window
    {1, 1, 1, 7, 1, 3, 2, 0},   // a single row
    {3, 1, 4, 4, 4, 4, 1, 2},   // window = input, maximal padding
    {8, 5, 33, 31, 3, 3, 2, 1}, // many planes: several blocks
};

std::string describe(const PoolGeom& g) {
  return "n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) + " " + std::to_string(g.h) +
         "x" + std::to_string(g.w) + " k=" + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
         " s=" + std::to_string(g.stride) + " pad=" + std::to_string(g.pad);
}

template <class T>
void check_pools(double tol) {
  uint64_t seed = 2000;
  for (const PoolGeom& g : kGeoms) {
    SCOPED_TRACE(describe(g));
    const size_t in = size_t(g.n) * g.c * g.h * g.w, out = size_t(g.n) * g.c * g.p() * g.q();
    auto x = uniform<T>(in, seed++, 0, 4);
    for (T& v : x) v = std::floor(v);  // few levels: windows hold ties
    x[in / 2] = std::numeric_limits<T>::quiet_NaN();
    auto dy = uniform<T>(out, seed++, -1, 1), dx0 = uniform<T>(in, seed++, -1, 1);
    DeviceArray<T> d_x(x), d_dy(dy), d_y(out), d_m(out), d_dxa(dx0), d_dxm(dx0);
    DeviceArray<int32_t> d_arg(out);

    std::vector<T> y(out), m(out), dxa = dx0, dxm = dx0;
    std::vector<int32_t> arg(out);
    ref::avg_pool2d_forward<T>(g, x.data(), y.data());
    ref::max_pool2d_forward<T>(g, x.data(), m.data(), arg.data());
    ref::avg_pool2d_backward<T>(g, dy.data(), dxa.data());
    ref::max_pool2d_backward<T>(g, dy.data(), arg.data(), dxm.data());
    cuda_testing::gpu_kernels<T>().max_pool2d_forward(g, d_x.get(), d_m.get(), d_arg.get());
    cuda_testing::gpu_kernels<T>().avg_pool2d_backward(g, d_dy.get(), d_dxa.get());
    cuda_testing::gpu_kernels<T>().max_pool2d_backward(g, d_dy.get(), d_arg.get(), d_dxm.get());
    EXPECT_EQ(d_arg.host(), arg) << "argmax";
    expect_close(d_dxa.host(), dxa, tol, "avg backward");
    expect_close(d_dxm.host(), dxm, tol, "max backward");
    // The NaN poisons its windows' values: compare those by NaN-ness, the rest by value.
    std::vector<T> got_m = d_m.host(), got_y;
    for (size_t i = 0; i < out; ++i) {
      ASSERT_EQ(std::isnan(got_m[i]), std::isnan(m[i])) << "max y at " << i;
      if (std::isnan(m[i])) got_m[i] = m[i] = T(0);
    }
    expect_close(got_m, m, tol, "max forward");
    x[in / 2] = T(1);
    ref::avg_pool2d_forward<T>(g, x.data(), y.data());
    DeviceArray<T> d_x_clean(x);
    cuda_testing::gpu_kernels<T>().avg_pool2d_forward(g, d_x_clean.get(), d_y.get());
    expect_close(d_y.host(), y, tol, "avg forward");
  }
}

TEST(CudaPoolKernels, MatchRefFloat) {
  KD_REQUIRE_CUDA();
  check_pools<float>(1e-4);
}

TEST(CudaPoolKernels, MatchRefDouble) {
  KD_REQUIRE_CUDA();
  check_pools<double>(1e-10);
}

template <class T>
void check_global_pool(double tol) {
  uint64_t seed = 3000;
  const int shapes[][3] = {{1, 3, 1}, {2, 5, 49}, {3, 7, 1000}, {1, 1, 31}};
  for (const auto& s : shapes) {
    const int n = s[0], c = s[1], hw = s[2];
    SCOPED_TRACE("n=" + std::to_string(n) + " c=" + std::to_string(c) +
                 " hw=" + std::to_string(hw));
    const size_t in = size_t(n) * c * hw, planes = size_t(n) * c;
    auto x = uniform<T>(in, seed++, -2, 3), dy = uniform<T>(planes, seed++, -1, 1);
    auto dx0 = uniform<T>(in, seed++, -1, 1);
    std::vector<T> y(planes), dx = dx0;
    ref::global_avg_pool_forward<T>(n, c, hw, x.data(), y.data());
    ref::global_avg_pool_backward<T>(n, c, hw, dy.data(), dx.data());
    DeviceArray<T> d_x(x), d_y(planes), d_dy(dy), d_dx(dx0);
    cuda_testing::gpu_kernels<T>().global_avg_pool_forward(n, c, hw, d_x.get(), d_y.get());
    cuda_testing::gpu_kernels<T>().global_avg_pool_backward(n, c, hw, d_dy.get(), d_dx.get());
    expect_close(d_y.host(), y, tol, "global avg forward");
    expect_close(d_dx.host(), dx, tol, "global avg backward");
  }
}

TEST(CudaPoolKernels, GlobalAvgPoolMatchesRefFloat) {
  KD_REQUIRE_CUDA();
  check_global_pool<float>(1e-4);
}

TEST(CudaPoolKernels, GlobalAvgPoolMatchesRefDouble) {
  KD_REQUIRE_CUDA();
  check_global_pool<double>(1e-10);
}

TEST(CudaPoolKernels, RejectsPaddingOverHalfTheWindow) {
  KD_REQUIRE_CUDA();
  const PoolGeom g{1, 1, 4, 4, 2, 2, 2, 2};
  DeviceArray<float> x(16), y(16);
  EXPECT_THROW(cuda_testing::gpu_kernels<float>().avg_pool2d_forward(g, x.get(), y.get()), Error);
}

// BatchNorm's num_batches_tracked counts on the device: the GPU increment equals the CPU's.
TEST(CudaElementwiseKernels, CounterAddMatchesCpu) {
  KD_REQUIRE_CUDA();
  int64_t host = int64_t(1) << 40;
  DeviceArray<int64_t> counter(std::vector<int64_t>{host});
  for (int64_t delta : {1, 1, 7, -3}) {
    cuda_testing::gpu().counter_add(counter.get(), delta);
    cpu::counter_add(&host, delta);
  }
  EXPECT_EQ(counter.host()[0], host);
  EXPECT_EQ(host, (int64_t(1) << 40) + 6);
}

}  // namespace
}  // namespace kd

