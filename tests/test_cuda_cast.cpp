// The CUDA casts (kernels/cuda/cast.cu) against their CPU twin, bitwise: f32 and f64 to bf16
// (assign and accumulate) and back (assign and accumulate), on lengths around the 256-thread
// block and past the capped grid, with zeros, subnormals, infinities, NaNs and values at the top
// of the bf16 range among the inputs. Raw arrays only (this file is also in the ThreadSanitizer
// kernel binary). Needs a device (skips without one); ctest's grid label runs it on the CPU grid
// emulator. Then the multi-tensor casts against the per-tensor CPU casts, and their launches.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cast.h"
#include "kernels/optimizer.h"  // kMultiTensorChunk
#include "tests/cuda_testing.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using cuda_testing::DeviceArray;
using kernel_testing::same_bits;

template <class T>
std::vector<T> inputs(int64_t n) {
  std::vector<T> v = kernel_testing::uniform<T>(size_t(n), 41, -70000, 70000);
  const T specials[] = {T(0), -T(0), std::numeric_limits<T>::infinity(),
                        std::numeric_limits<T>::quiet_NaN(), T(std::numeric_limits<float>::max()),
                        T(std::numeric_limits<float>::denorm_min()), T(1.00390625), T(-3.3961e38)};
  for (size_t i = 0; i < sizeof specials / sizeof specials[0] && i < v.size(); ++i)
    v[(i * 131) % v.size()] = specials[i];
  return v;
}

template <class T>
void check_against_cpu() {
  const auto& k = cuda_testing::gpu_kernels<T>();
  for (int64_t n : {int64_t(1), int64_t(255), int64_t(257), int64_t(300 * 1024 + 7)}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    const std::vector<T> x = inputs<T>(n);
    std::vector<bf16> start(static_cast<size_t>(n));
    for (size_t i = 0; i < start.size(); ++i) start[i] = to_bf16_rn(T(x[(i + 1) % x.size()] / 3));
    std::vector<bf16> y = start, acc = start;
    cpu::to_bf16<T>(n, x.data(), y.data(), false);
    cpu::to_bf16<T>(n, x.data(), acc.data(), true);
    std::vector<T> wide(static_cast<size_t>(n)), wide_acc = x;
    cpu::from_bf16<T>(n, y.data(), wide.data(), false);
    cpu::from_bf16<T>(n, start.data(), wide_acc.data(), true);

    DeviceArray<T> d_x(x), d_wide{size_t(n)}, d_wide_acc(x);
    DeviceArray<bf16> d_y(start), d_acc(start);
    k.to_bf16(n, d_x.get(), d_y.get(), false);
    k.to_bf16(n, d_x.get(), d_acc.get(), true);
    EXPECT_TRUE(same_bits(d_y.host(), y)) << "to_bf16 differs from the CPU";
    EXPECT_TRUE(same_bits(d_acc.host(), acc)) << "accumulating to_bf16 differs from the CPU";
    k.from_bf16(n, d_y.get(), d_wide.get(), false);
    DeviceArray<bf16> d_start(start);
    k.from_bf16(n, d_start.get(), d_wide_acc.get(), true);
    EXPECT_TRUE(same_bits(d_wide.host(), wide)) << "from_bf16 differs from the CPU";
    EXPECT_TRUE(same_bits(d_wide_acc.host(), wide_acc)) << "accumulating from_bf16 differs";
  }
}

TEST(CudaCastKernels, MatchTheCpuBitwiseFloat) {
  KD_REQUIRE_CUDA();
  check_against_cpu<float>();
}

TEST(CudaCastKernels, MatchTheCpuBitwiseDouble) {
  KD_REQUIRE_CUDA();
  check_against_cpu<double>();
}

// The multi-tensor casts: each tensor gets the per-tensor cast's bits (the CPU's), in one launch
// for up to kMultiTensorChunk tensors (both kernel-argument sizes: at most 4 tensors, and more),
// empty tensors skipped, and a list longer than a launch holds split into launches.
template <class T>
void check_multi_against_cpu() {
  const auto& k = cuda_testing::gpu_kernels<T>();
  const Backend& gpu = cuda_testing::gpu();
  for (const std::vector<int64_t>& sizes :
       {std::vector<int64_t>{5, 0, 2049}, std::vector<int64_t>{1, 2048, 0, 257, 70001, 3, 4097}}) {
    SCOPED_TRACE(std::to_string(sizes.size()) + " tensors");
    const int count = static_cast<int>(sizes.size());
    std::vector<std::vector<T>> x, wide;
    std::vector<std::vector<bf16>> want_y;
    std::vector<std::unique_ptr<DeviceArray<T>>> d_x, d_wide;
    std::vector<std::unique_ptr<DeviceArray<bf16>>> d_y;
    std::vector<const T*> xs;
    std::vector<bf16*> ys;
    std::vector<T*> wides;
    for (int i = 0; i < count; ++i) {
      x.push_back(inputs<T>(sizes[i]));
      want_y.emplace_back(size_t(sizes[i]));
      cpu::to_bf16<T>(sizes[i], x[i].data(), want_y[i].data(), false);
      wide.push_back(kernel_testing::uniform<T>(size_t(sizes[i]), 50 + i, -9, 9));
      d_x.push_back(std::make_unique<DeviceArray<T>>(x[i]));
      d_y.push_back(std::make_unique<DeviceArray<bf16>>(size_t(sizes[i])));
      d_wide.push_back(std::make_unique<DeviceArray<T>>(wide[i]));
      xs.push_back(d_x[i]->get()), ys.push_back(d_y[i]->get()), wides.push_back(d_wide[i]->get());
    }
    uint64_t before = gpu.launch_count();
    k.to_bf16_multi(count, sizes.data(), xs.data(), ys.data());
    EXPECT_EQ(gpu.launch_count() - before, 1u);
    for (int i = 0; i < count; ++i)
      EXPECT_TRUE(same_bits(d_y[i]->host(), want_y[i])) << "to_bf16_multi, tensor " << i;
    // Accumulated back into `wide`, then assigned over it.
    for (bool accumulate : {true, false}) {
      std::vector<const bf16*> from(ys.begin(), ys.end());
      before = gpu.launch_count();
      k.from_bf16_multi(count, sizes.data(), from.data(), wides.data(), accumulate);
      EXPECT_EQ(gpu.launch_count() - before, 1u);
      for (int i = 0; i < count; ++i) {
        cpu::from_bf16<T>(sizes[i], want_y[i].data(), wide[i].data(), accumulate);
        EXPECT_TRUE(same_bits(d_wide[i]->host(), wide[i]))
            << "from_bf16_multi, accumulate " << accumulate << ", tensor " << i;
      }
    }
  }
}

TEST(CudaCastKernels, MultiTensorCastsAreThePerTensorBitsInOneLaunch) {
  KD_REQUIRE_CUDA();
  check_multi_against_cpu<float>();
  check_multi_against_cpu<double>();
}

TEST(CudaCastKernels, MultiTensorCastOfMoreTensorsThanALaunchHoldsIsSplit) {
  KD_REQUIRE_CUDA();
  const int count = cuda::kMultiTensorChunk + 3;
  std::vector<float> x(count);
  for (int i = 0; i < count; ++i) x[i] = 1.0f + float(i) / 1024;
  DeviceArray<float> d_x(x);
  DeviceArray<bf16> d_y{size_t(count)};
  std::vector<int64_t> sizes(count, 1);
  std::vector<const float*> xs;
  std::vector<bf16*> ys;
  for (int i = 0; i < count; ++i) xs.push_back(d_x.get() + i), ys.push_back(d_y.get() + i);
  const Backend& gpu = cuda_testing::gpu();
  const uint64_t before = gpu.launch_count();
  cuda_testing::gpu_kernels<float>().to_bf16_multi(count, sizes.data(), xs.data(), ys.data());
  EXPECT_EQ(gpu.launch_count() - before, 2u);
  const std::vector<bf16> y = d_y.host();
  for (int i = 0; i < count; ++i) ASSERT_EQ(y[i].bits, to_bf16_rn(x[i]).bits) << i;
}

}  // namespace
}  // namespace kd
