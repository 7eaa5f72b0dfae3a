// Thin templated wrappers over cblas_?gemm and cblas_?gemv (row-major only), so kernels templated
// on T in {float, double} call one name. C = alpha * op(A) op(B) + beta * C, with op = transpose
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

// y = alpha * A x + beta * y, A [m, n] row-major (lda its row stride), x and y contiguous.
inline void gemv(int m, int n, float alpha, const float* a, int lda, const float* x, float beta,
                 float* y) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, m, n, alpha, a, lda, x, 1, beta, y, 1);
}
inline void gemv(int m, int n, double alpha, const double* a, int lda, const double* x,
                 double beta, double* y) {
  cblas_dgemv(CblasRowMajor, CblasNoTrans, m, n, alpha, a, lda, x, 1, beta, y, 1);
}

// OpenBLAS's own thread count. When it is 1, the convolution and linear kernels run their GEMMs
// inside OpenMP regions (one GEMM per task); otherwise GEMMs run one at a time on OpenBLAS's
// threads.
inline int blas_threads() { return openblas_get_num_threads(); }

}  // namespace kd::cpu
