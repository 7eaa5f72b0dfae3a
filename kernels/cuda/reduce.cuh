// Fixed-order sums for the CUDA norm and pool kernels: a warp shuffle tree and a block reduction
// built on it. The order depends only on the block size (a compile-time constant), never on
// scheduling, so results are bitwise reproducible run to run. No atomics. CUDA-only.
#pragma once
#include <cuda_runtime.h>

namespace kd {
namespace cuda {
namespace fixed_order {  // own namespace: kernels/cuda/warp_rows.cuh has a warp_sum too

// Lane 0 receives the sum over the warp's 32 lanes. All 32 lanes must call it together.
__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Every thread of the block receives the block totals of a and b. kThreads == blockDim.x, a
// multiple of 32. It holds __syncthreads, so every thread must call it (never from a divergent
// branch). Safe to call repeatedly in one kernel: a call's writes to the shared slots come after
// its first barrier, which no thread reaches before it has read the previous call's totals.
template <int kThreads>
__device__ void block_sum2(double& a, double& b) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "block size must be whole warps");
  constexpr int kWarps = kThreads / 32;
  __shared__ double part_a[kWarps], part_b[kWarps], total[2];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  a = warp_sum(a);
  b = warp_sum(b);
  if (lane == 0) {
    part_a[warp] = a;
    part_b[warp] = b;
  }
  __syncthreads();
  if (warp == 0) {  // warp-uniform: all 32 lanes of warp 0 take part in the shuffles
    double ta = lane < kWarps ? part_a[lane] : 0.0;
    double tb = lane < kWarps ? part_b[lane] : 0.0;
    ta = warp_sum(ta);
    tb = warp_sum(tb);
    if (lane == 0) {
      total[0] = ta;
      total[1] = tb;
    }
  }
  __syncthreads();
  a = total[0];
  b = total[1];
}

}  // namespace fixed_order
}  // namespace cuda
}  // namespace kd
