// The grid emulator's sm_80 instructions (kernels/cuda_grid/tensor_core.h) through the kernels'
// front door (kernels/cuda/tensor_core.cuh), on test kernels compiled like a .cu file:
//  - TF32 rounding: round to nearest, ties away from zero, on hand-picked values;
//  - mma.sync m16n8k8: lanes load A, B and C in the PTX ISA's fragment layout (written out here),
//    and D must be C + A*B of the TF32-rounded operands; a partial warp is an error;
//  - cp.async: a copy lands only at the wait that covers its group (the bytes read before it are
//    the old ones), zero-fill, the group count, and a thread exiting with copies queued is an
//    error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "base/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_core.cuh"
#include "kernels/tf32.h"
#include "tests/cuda_testing.h"

namespace {

using kd::cuda_testing::DeviceArray;
namespace tc = kd::cuda::tc;

TEST(GridTensorCore, Tf32RoundsToNearestWithTiesAwayFromZero) {
  const float one = 1.f, ulp = std::ldexp(1.f, -10);  // TF32 keeps 10 mantissa bits
  EXPECT_EQ(kd::tf32_round(one + std::ldexp(1.f, -11)), one + ulp);  // a tie: away from zero
  EXPECT_EQ(kd::tf32_round(-(one + std::ldexp(1.f, -11))), -(one + ulp));
  EXPECT_EQ(kd::tf32_round(one + std::ldexp(1.f, -12)), one);  // below half: down
  EXPECT_EQ(kd::tf32_round(one + std::ldexp(1.f, -11) + std::ldexp(1.f, -20)), one + ulp);
  EXPECT_EQ(kd::tf32_round(one + ulp + std::ldexp(1.f, -11)), one + 2 * ulp);  // tie, away
  EXPECT_EQ(kd::tf32_round_bits(0.1f) & 0x1fffu, 0u);
  EXPECT_TRUE(std::isinf(kd::tf32_round(std::numeric_limits<float>::max())));
  EXPECT_TRUE(std::isinf(kd::tf32_round(-std::numeric_limits<float>::infinity())));
  EXPECT_TRUE(std::isnan(kd::tf32_round(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(kd::tf32_round(0.f), 0.f);
  const float tiny = std::numeric_limits<float>::denorm_min();
  EXPECT_EQ(kd::tf32_round(tiny), 0.f);
}

// a: 16x8 row-major, b: 8x8 row-major (B[k][n]), c/d: 16x8 row-major. One warp.
__global__ void mma_kernel(const float* a, const float* b, const float* c, float* d) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  const uint32_t fa[4] = {tc::tf32_bits(a[g * 8 + t]), tc::tf32_bits(a[(g + 8) * 8 + t]),
                          tc::tf32_bits(a[g * 8 + t + 4]), tc::tf32_bits(a[(g + 8) * 8 + t + 4])};
  const uint32_t fb[2] = {tc::tf32_bits(b[t * 8 + g]), tc::tf32_bits(b[(t + 4) * 8 + g])};
  float acc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t],
                  c[(g + 8) * 8 + 2 * t + 1]};
  tc::mma_tf32(acc, fa, fb);
  d[g * 8 + 2 * t] = acc[0], d[g * 8 + 2 * t + 1] = acc[1];
  d[(g + 8) * 8 + 2 * t] = acc[2], d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  for (float& f : v) {
    seed = seed * 1664525u + 1013904223u;
    f = float(int(seed >> 9) % 20001 - 10000) / 3333.f;  // not TF32-exact
  }
  return v;
}

TEST(GridTensorCore, MmaIsCPlusTheProductOfTf32Operands) {
  const std::vector<float> a = random_floats(16 * 8, 1), b = random_floats(8 * 8, 2),
                           c = random_floats(16 * 8, 3);
  DeviceArray<float> da(a), db(b), dc(c), dd(std::vector<float>(16 * 8, -1.f));
  KD_LAUNCH(mma_kernel, 1, 32, 0, da.get(), db.get(), dc.get(), dd.get());
  const std::vector<float> d = dd.host();
  double worst_unrounded = 0;
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      double want = c[i * 8 + j], unrounded = c[i * 8 + j];
      for (int k = 0; k < 8; ++k) {
        want += double(kd::tf32_round(a[i * 8 + k])) * double(kd::tf32_round(b[k * 8 + j]));
        unrounded += double(a[i * 8 + k]) * double(b[k * 8 + j]);
      }
      EXPECT_EQ(d[i * 8 + j], float(want)) << "D[" << i << "][" << j << "]";
      worst_unrounded = std::max(worst_unrounded, std::abs(double(d[i * 8 + j]) - unrounded));
    }
  EXPECT_GT(worst_unrounded, 1e-4) << "the operands were not rounded to TF32";
}

__global__ void partial_warp_mma_kernel(float* d) {
  const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float acc[4] = {0, 0, 0, 0};
  tc::mma_tf32(acc, a, b);
  d[threadIdx.x] = acc[0];
}

TEST(GridTensorCore, MmaNeedsTheWholeWarp) {
  DeviceArray<float> d(48);
  try {
    KD_LAUNCH(partial_warp_mma_kernel, 1, 48, 0, d.get());
    ADD_FAILURE() << "no error for mma.sync in a 16-lane warp";
  } catch (const kd::CudaError& e) {
    EXPECT_NE(std::string(e.what()).find("__syncwarp"), std::string::npos) << e.what();
  }
}

// Thread i copies src[i] into slot i (zero-fill for every third), in two groups: even threads'
// copies first, odd ones' second... per thread: group 0 = slot i, group 1 = slot 32 + i.
// before[i]: slot i read right after issuing (the old value), mid[i]: slot 32 + i read after
// wait<1> (still old), after[i]: another thread's slot after wait<0> and a barrier.
__global__ void cp_async_kernel(const float* src, float* before, float* mid, float* after) {
  __shared__ float slots[64];
  const int i = threadIdx.x;
  slots[i] = -5.f, slots[32 + i] = -6.f;
  __syncthreads();
  tc::cp_async_zfill4(&slots[i], &src[i], i % 3 != 0);
  tc::cp_async_commit();
  tc::cp_async_zfill4(&slots[32 + i], &src[32 + i], true);
  tc::cp_async_commit();
  before[i] = slots[i];
  tc::cp_async_wait<1>();
  mid[i] = slots[32 + i] + slots[i];
  tc::cp_async_wait<0>();
  __syncthreads();
  after[i] = slots[(i + 1) % 32] + slots[32 + (i + 1) % 32];
}

TEST(GridTensorCore, CpAsyncLandsAtTheWaitThatCoversItsGroup) {
  std::vector<float> src(64);
  for (int i = 0; i < 64; ++i) src[size_t(i)] = float(i + 1);
  DeviceArray<float> d_src(src), before(32), mid(32), after(32);
  KD_LAUNCH(cp_async_kernel, 1, 32, 0, d_src.get(), before.get(), mid.get(), after.get());
  const std::vector<float> b = before.host(), m = mid.host(), a = after.host();
  for (int i = 0; i < 32; ++i) {
    const float first = i % 3 != 0 ? src[size_t(i)] : 0.f;  // zero-filled when not valid
    EXPECT_EQ(b[size_t(i)], -5.f) << "copy landed before its wait, thread " << i;
    EXPECT_EQ(m[size_t(i)], -6.f + first) << "wait<1> must land group 0 only, thread " << i;
    const int n = (i + 1) % 32;
    const float next_first = n % 3 != 0 ? src[size_t(n)] : 0.f;
    EXPECT_EQ(a[size_t(i)], next_first + src[size_t(32 + n)]) << "thread " << i;
  }
}

__global__ void cp_async_unwaited_kernel(const float* src, float* out) {
  __shared__ float slot[32];
  tc::cp_async_zfill4(&slot[threadIdx.x], &src[threadIdx.x], true);
  tc::cp_async_commit();
  out[threadIdx.x] = 1.f;
}

TEST(GridTensorCore, ExitingWithCopiesQueuedIsAnError) {
  DeviceArray<float> src(std::vector<float>(32, 2.f)), out(32);
  try {
    KD_LAUNCH(cp_async_unwaited_kernel, 1, 32, 0, src.get(), out.get());
    ADD_FAILURE() << "no error for a thread that exits with cp.async copies queued";
  } catch (const kd::CudaError& e) {
    EXPECT_NE(std::string(e.what()).find("cp.async"), std::string::npos) << e.what();
  }
}

}  // namespace
