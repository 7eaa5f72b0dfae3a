// The CUDA dropout kernels (kernels/cuda/elementwise.cu) against ref:: on lengths that are not
// multiples of the 4-element Philox group nor of the 256-thread block: the mask (and so the
// forward output, one product per element) is bitwise ref::'s in float and double; the backward
// ACCUMULATES into a prefilled dx within an ulp (nvcc may fuse its multiply-add) and is bitwise
// when dx starts at zero. The grid-stride loop covers arrays past the capped grid. Raw arrays
// only (this file is also in the ThreadSanitizer kernel binary, which has no engine); the op on
// a GPU tensor is tests/test_dropout.cpp's CudaDropoutOp. Needs a device (skips without one);
// ctest's grid label runs it on the CPU grid emulator.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/elementwise.h"
#include "tests/cuda_testing.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using cuda_testing::DeviceArray;
using kernel_testing::same_bits;
using kernel_testing::uniform;

DropoutMask mask_for(double p, uint64_t step) {
  DropoutMask m;
  m.key.seed = 2021, m.key.step = step, m.key.layer = 1;
  m.keep_threshold = dropout_threshold(p);
  return m;
}

template <class T>
void check_against_ref(int64_t n, double p, double tol) {
  SCOPED_TRACE("n=" + std::to_string(n) + " p=" + std::to_string(p));
  const DropoutMask m = mask_for(p, uint64_t(n));
  const T scale = T(1.0 / (1.0 - p));
  auto x = uniform<T>(n, 300, -2, 2), dy = uniform<T>(n, 301, -1, 1);
  auto dx0 = uniform<T>(n, 302, -1, 1);
  std::vector<T> y(n), dx = dx0, dx_fresh(n, T(0));
  ref::dropout_forward<T>(n, m, scale, x.data(), y.data());
  ref::dropout_backward<T>(n, m, scale, dy.data(), dx.data());
  ref::dropout_backward<T>(n, m, scale, dy.data(), dx_fresh.data());

  const auto& k = cuda_testing::gpu_kernels<T>();
  DeviceArray<T> d_x(x), d_y(n), d_dy(dy), d_dx(dx0), d_fresh(n);
  k.dropout_forward(n, m, scale, d_x.get(), d_y.get());
  EXPECT_TRUE(same_bits(d_y.host(), y)) << "forward (the mask) differs from ref::";
  k.dropout_backward(n, m, scale, d_dy.get(), d_dx.get());
  kernel_testing::expect_close(d_dx.host(), dx, tol, "backward into a prefilled dx");
  k.dropout_backward(n, m, scale, d_dy.get(), d_fresh.get());
  EXPECT_TRUE(same_bits(d_fresh.host(), dx_fresh)) << "backward into zeros differs from ref::";
}

// 1, 3: less than one group; 255, 257: around one block of groups' elements; 1023 = 4 * 256 - 1:
// one element short of a full block of groups; 257 * 1024 + 3: many blocks and a ragged tail.
const int64_t kLengths[] = {1, 3, 255, 257, 1023, 257 * 1024 + 3};

TEST(CudaDropoutKernels, MaskAndForwardBitwiseEqualToRefFloat) {
  KD_REQUIRE_CUDA();
  for (int64_t n : kLengths)
    for (double p : {0.1, 0.5}) check_against_ref<float>(n, p, 1e-6);
}

TEST(CudaDropoutKernels, MaskAndForwardBitwiseEqualToRefDouble) {
  KD_REQUIRE_CUDA();
  for (int64_t n : kLengths)
    for (double p : {0.5, 0.8}) check_against_ref<double>(n, p, 1e-15);
}

// More groups than the capped grid has threads: only the grid-stride loop reaches the tail.
TEST(CudaDropoutKernels, GridStrideLoopCoversArraysBeyondTheGrid) {
  KD_REQUIRE_CUDA();
  const int64_t n = cuda_testing::gpu().grid_stride_block_cap * 256 * 4 + 4097;
  check_against_ref<float>(n, 0.5, 1e-6);
}

TEST(CudaDropoutKernels, ZeroLengthLaunchesNothing) {
  KD_REQUIRE_CUDA();
  DeviceArray<float> d(1);
  cuda_testing::gpu_kernels<float>().dropout_forward(0, mask_for(0.5, 0), 2.0f, d.get(), d.get());
  cuda_testing::gpu_kernels<float>().dropout_backward(0, mask_for(0.5, 0), 2.0f, d.get(), d.get());
  EXPECT_EQ(d.host()[0], 0.0f);
}

}  // namespace
}  // namespace kd
