// How each product of the linear layer maps onto one column-major BLAS GEMM (cuBLAS's layout).
// Plain C++, no CUDA: kernels/cuda/linear.cu issues exactly these calls, and a host test replays
// them through a column-major GEMM loop against ref:: (the only check of the mapping possible
// without a GPU).
// A row-major [r, c] array is, read column-major, its transpose [c, r] with leading dimension c.
// With x [b, in], w [out, in], y [b, out] row-major, so x^T [in, b], w^T [in, out], y^T [out, b]:
//   forward   y^T  = w x^T     -> C = op(w^T)=T  [out x in]  * x^T [in x b]      (beta = 0)
//   back data dx^T = w^T dy^T  -> C = w^T [in x out]         * dy^T [out x b]     (beta = 1)
//   back wt   dw^T = x^T dy    -> C = x^T [in x b]           * op(dy^T)=T [b x out] (beta = 1)
#pragma once
#include <algorithm>

#include "kernels/linear.h"

namespace kd {
namespace linear_gemm {

// C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C, all column-major.
struct ColumnMajorGemm {
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  int lda = 1, ldb = 1, ldc = 1;  // >= 1 even for empty operands, as BLAS requires
};

// A = w, B = x, C = y.
inline ColumnMajorGemm forward(const LinearGeom& g) {
  return {true, false, g.out, g.batch, g.in, std::max(1, g.in), std::max(1, g.in),
          std::max(1, g.out)};
}
// A = w, B = dy, C = dx.
inline ColumnMajorGemm backward_data(const LinearGeom& g) {
  return {false, false, g.in, g.batch, g.out, std::max(1, g.in), std::max(1, g.out),
          std::max(1, g.in)};
}
// A = x, B = dy, C = dw.
inline ColumnMajorGemm backward_weight(const LinearGeom& g) {
  return {false, true, g.in, g.out, g.batch, std::max(1, g.in), std::max(1, g.out),
          std::max(1, g.in)};
}

}  // namespace linear_gemm
}  // namespace kd
