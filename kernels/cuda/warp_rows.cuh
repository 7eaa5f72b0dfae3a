// Warp-per-row building blocks for the row-wise CUDA kernels (loss.cu, metrics.cu): a block of
// kRowThreads threads handles kRowsPerBlock rows, one warp each; lane l visits columns l, l+32, ...
// (coalesced). Row reductions are xor-butterfly shuffles in double: fixed order, no atomics, and
// every lane ends with the same value (each pairwise step is a commutative a+b or max; the argmax
// broadcasts lane 0's result, see warp_first_argmax). A warp's row index is warp-uniform, so
// whole warps return together and the full-mask shuffles are safe.
// CUDA-only; the per-element maths lives in kernels/cuda/row_math.h (host-testable).
#pragma once
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "base/check.h"
#include "kernels/cuda/row_math.h"

namespace kd {
namespace cuda {
namespace warp_rows {

constexpr int kWarp = 32;
constexpr int kRowThreads = 256;
constexpr int kRowsPerBlock = kRowThreads / kWarp;
constexpr unsigned kFullMask = 0xffffffffu;

// Blocks for `units` warp-sized work items (rows, or member-rows).
inline unsigned blocks_for_rows(int64_t units) {
  const int64_t blocks = (units + kRowsPerBlock - 1) / kRowsPerBlock;
  KD_CHECK(blocks <= int64_t(INT_MAX), "warp_rows: " << units << " rows exceed the grid");
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

__device__ inline int64_t warp_unit() {
  return int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x / kWarp);
}
__device__ inline int lane_id() { return int(threadIdx.x % kWarp); }

__device__ inline double warp_sum(double v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ inline double warp_max(double v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v = fmax(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// logsumexp_j(z_j * scale) of one row, max-subtracted, in double.
template <class T>
__device__ double warp_row_logsumexp(const T* z, int cols, double scale, int lane) {
  double mx = -INFINITY;
  for (int j = lane; j < cols; j += kWarp) mx = fmax(mx, double(z[j]) * scale);
  mx = warp_max(mx);
  double sum = 0;
  for (int j = lane; j < cols; j += kWarp) sum += exp(double(z[j]) * scale - mx);
  sum = warp_sum(sum);
  return mx + log(sum);
}

// Index of the row's first maximum (ref:: first_argmax), on every lane. With a NaN in the row
// the (value, index) order is no longer total and butterfly lanes could end on different indices
// (callers then index z[top] and compare j == top per lane), so lane 0's answer is broadcast.
template <class T>
__device__ int warp_first_argmax(const T* z, int cols, int lane) {
  row_math::ArgMax best = row_math::lane_argmax(z, cols, lane, kWarp);
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    row_math::ArgMax other;
    other.value = __shfl_xor_sync(kFullMask, best.value, offset);
    other.index = __shfl_xor_sync(kFullMask, best.index, offset);
    best = row_math::argmax_combine(best, other);
  }
  return __shfl_sync(kFullMask, best.index, 0);
}

}  // namespace warp_rows
}  // namespace cuda
}  // namespace kd
