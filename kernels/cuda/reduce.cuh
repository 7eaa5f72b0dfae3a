// Fixed-order sums for the CUDA norm and pool kernels: a warp shuffle tree, a block reduction
// built on it, and a sum across the blocks of one launch (last_block_sum2). The order depends
// only on the block size (a compile-time constant) and the number of blocks, never on
// scheduling, so results are bitwise reproducible run to run. No float atomics: the cross-block
// sum takes one integer ticket per block. CUDA-only.
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

// The ticket of last_block_sum2: how many blocks of the group took one before this one. CUDA:
// the fence before the atomic publishes the block's pair, the one after it lets the last block
// read everyone's (the programming guide's threadFenceReduction pattern). On the grid emulator
// __threadfence is a no-op and atomics are relaxed (builtins.h) while blocks run on several OS
// threads, so there the ticket is one acquire-release read-modify-write, which orders the same
// accesses in C++'s memory model.
__device__ __forceinline__ unsigned take_ticket(unsigned* counter) {
#if KDLAB_GRID_EMULATOR
  return __atomic_fetch_add(counter, 1u, __ATOMIC_ACQ_REL);
#else
  __threadfence();
  const unsigned before = atomicAdd(counter, 1u);
  __threadfence();
  return before;
#endif
}

// Sum of (a, b) over the `parts` blocks of one group (a batchnorm channel), in part order, in
// the same launch: every thread of every block of the group calls it with its block's totals
// (block_sum2's result; blocks of whole warps); it holds __syncthreads, so never from a
// divergent branch. Thread 0 of block `part` writes its pair to pairs[2 * part], pairs[2 * part
// + 1] and takes a ticket from *counter, which must be 0 at the launch; in the block that takes
// the last one, lane p of warp 0 adds pairs p, p + 32, ... in order, a warp tree adds the
// lanes, the counter goes back to 0 (ready for the next launch), and thread 0 returns true with
// (a, b) = the group's sums. Every other thread returns false. parts == 1: thread 0 returns
// true, (a, b) untouched, no ticket. Launches sharing a counter must not run concurrently.
__device__ inline bool last_block_sum2(unsigned* counter, int part, int parts, double* pairs,
                                       double& a, double& b) {
  if (parts == 1) return threadIdx.x == 0;
  __shared__ bool last;
  if (threadIdx.x == 0) {
    pairs[2 * part] = a;
    pairs[2 * part + 1] = b;
    last = take_ticket(counter) == unsigned(parts - 1);
    if (last) atomicExch(counter, 0u);  // every block of the group has taken its ticket
  }
  __syncthreads();
  if (!last || threadIdx.x >= 32) return false;  // warp 0 of the last block goes on, whole
  const volatile double* all = pairs;  // volatile: read through to L2, never a stale L1 line
  double ta = 0.0, tb = 0.0;
  for (int p = int(threadIdx.x); p < parts; p += 32) {
    ta += all[2 * p];
    tb += all[2 * p + 1];
  }
  a = warp_sum(ta);
  b = warp_sum(tb);
  return threadIdx.x == 0;
}

}  // namespace fixed_order
}  // namespace cuda
}  // namespace kd
