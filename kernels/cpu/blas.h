// Thin templated wrappers over cblas_sgemm / cblas_dgemm (row-major only), so kernels templated on
// T in {float, double} call one name. C = alpha * op(A) op(B) + beta * C, with op = transpose
// when the flag is set; lda/ldb/ldc are row strides of the matrices as stored. Nothing else lives
// here besides the thread-count query below.
#pragma once
#include <cblas.h>

namespace kd::cpu {

inline void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

inline void gemm(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a,
                 int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// OpenBLAS's own thread count. When it is 1, the convolution and linear kernels run their GEMMs
// inside OpenMP regions (one GEMM per task); otherwise GEMMs run one at a time on OpenBLAS's
// threads.
inline int blas_threads() { return openblas_get_num_threads(); }

}  // namespace kd::cpu
