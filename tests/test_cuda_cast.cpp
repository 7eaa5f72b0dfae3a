// The CUDA casts (kernels/cuda/cast.cu) against their CPU twin, bitwise: f32 and f64 to bf16
// (assign and accumulate) and back (assign and accumulate), on lengths around the 256-thread
// block and past the capped grid, with zeros, subnormals, infinities, NaNs and values at the top
// of the bf16 range among the inputs. Raw arrays only (this file is also in the ThreadSanitizer
// kernel binary). Needs a device (skips without one); ctest's grid label runs it on the CPU grid
// emulator.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cast.h"
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

}  // namespace
}  // namespace kd
