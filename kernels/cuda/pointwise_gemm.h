// How a 1x1, stride-1, unpadded convolution maps onto one strided-batched column-major GEMM per
// pass (cuBLAS's layout), one matrix product per image. Plain C++, no CUDA: kernels/cuda/conv2d.cu
// issues exactly these calls, and tests/test_cuda_conv.cpp replays them through a column-major
// GEMM loop against ref:: (besides running them on the grid emulator).
// Per image, row-major x [c, hw], w [k, c], y [k, hw]; read column-major each is its transpose:
// x^T [hw x c] (ld hw), w^T [c x k] (ld c), y^T [hw x k] (ld hw). Then
//   forward    y^T  = x^T w^T         -> C = A [hw x c] * B [c x k]            (beta = 0)
//   back data  dx^T = dy^T w          -> C = A [hw x k] * op(B)=T [k x c]      (beta 0 or 1)
// The weight gradient sums over images, which no single strided-batched GEMM does in order; it
// stays with the implicit GEMM's fixed split-K.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/conv2d.h"

namespace kd {
namespace pointwise_gemm {

// 1x1, stride 1, no padding: the input planes are the GEMM operand as they lie.
inline bool applies(const ConvGeom& g) {
  return g.r == 1 && g.s == 1 && g.stride == 1 && g.pad == 0;
}

// C_i[m x n] = op(A_i)[m x k] * op(B_i)[k x n] (+ C_i), X_i = X + i * stride_x, i < batch.
struct StridedGemm {
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  int lda = 1, ldb = 1, ldc = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  int batch = 0;
};

// A = x, B = w, C = y.
inline StridedGemm forward(const ConvGeom& g) {
  const int hw = g.h * g.w;
  return {false, false, hw, g.k, g.c, std::max(1, hw), std::max(1, g.c), std::max(1, hw),
          int64_t(g.c) * hw, 0, int64_t(g.k) * hw, g.n};
}
// A = dy, B = w, C = dx.
inline StridedGemm backward_data(const ConvGeom& g) {
  const int hw = g.h * g.w;
  return {false, true, hw, g.c, g.k, std::max(1, hw), std::max(1, g.c), std::max(1, hw),
          int64_t(g.k) * hw, 0, int64_t(g.c) * hw, g.n};
}

}  // namespace pointwise_gemm
}  // namespace kd
