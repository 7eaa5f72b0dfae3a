// What `#include <cublas_v2.h>` finds in the grid-emulated build: the cuBLAS calls of
// kernels/cuda/linear.cu and cublas_handle.cu, with GEMM computed on the emulated device's (host)
// memory in column-major order, one fixed-order sum per element (gemm_now), so linear.cu's
// argument mapping and its own kernels run unchanged. Handle settings are recorded and otherwise
// ignored (one stream, no atomics, no TF32 on a CPU).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cuda_emu/emu.h"
#include "kernels/cuda_grid/shim/cuda_runtime.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  int math = 0;
};
using cublasHandle_t = cublasContext*;
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasPointerMode_t { CUBLAS_POINTER_MODE_HOST = 0, CUBLAS_POINTER_MODE_DEVICE = 1 };
enum cublasAtomicsMode_t { CUBLAS_ATOMICS_NOT_ALLOWED = 0, CUBLAS_ATOMICS_ALLOWED = 1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 };

inline const char* cublasGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_INVALID_VALUE";
}
inline cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetPointerMode(cublasHandle_t, cublasPointerMode_t mode) {
  return mode == CUBLAS_POINTER_MODE_HOST ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}
inline cublasStatus_t cublasSetAtomicsMode(cublasHandle_t, cublasAtomicsMode_t) {
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
  h->math = int(m);
  return CUBLAS_STATUS_SUCCESS;
}

namespace kd {
namespace grid {
namespace detail {
// cuBLAS's argument rules (the ones cuBLAS reports as CUBLAS_STATUS_INVALID_VALUE).
inline bool valid_gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda,
                       int ldb, int ldc) {
  if (m < 0 || n < 0 || k < 0) return false;
  if (lda < (ta == CUBLAS_OP_N ? (m > 1 ? m : 1) : (k > 1 ? k : 1))) return false;
  if (ldb < (tb == CUBLAS_OP_N ? (k > 1 ? k : 1) : (n > 1 ? n : 1))) return false;
  return ldc >= (m > 1 ? m : 1);
}
}  // namespace detail
}  // namespace grid
}  // namespace kd

namespace kd {
namespace grid {
namespace detail {
// One GEMM on the emulated device's memory, now (the callers below make it a stream operation).
// Each element of C is its own sum over k in order, rounded in T at every step, as a GPU kernel
// that gives each output one accumulator does: an element's bits depend on its row of op(A) and
// its column of op(B) alone, never on m, n or where it sits. (OpenBLAS's AVX2 kernels do not
// promise that, and the logit cache's bitwise tests on the grid rely on it.) beta == 0 never
// reads C, as cuBLAS.
template <class T>
void gemm_now(const char* name, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
              T alpha, const T* a, int lda, const T* b, int ldb, T beta, T* c, int ldc) {
  kd::cuda::emu::DeviceAccess open(name, {a, b, c});
  std::vector<T> acc(size_t(m > 0 ? m : 0));
  auto b_at = [&](int l, int j) {
    return tb == CUBLAS_OP_N ? b[l + int64_t(j) * ldb] : b[j + int64_t(l) * ldb];
  };
  for (int j = 0; j < n; ++j) {
    if (ta == CUBLAS_OP_N) {  // A's columns are contiguous: every row's sum advances together
      std::fill(acc.begin(), acc.end(), T(0));
      for (int l = 0; l < k; ++l) {
        const T* a_col = a + int64_t(l) * lda;
        const T bv = b_at(l, j);
        for (int i = 0; i < m; ++i) acc[i] += a_col[i] * bv;
      }
    } else {  // op(A)'s rows are contiguous: one dot product per row
      for (int i = 0; i < m; ++i) {
        const T* a_row = a + int64_t(i) * lda;
        T sum = T(0);
        for (int l = 0; l < k; ++l) sum += a_row[l] * b_at(l, j);
        acc[i] = sum;
      }
    }
    T* c_col = c + int64_t(j) * ldc;
    for (int i = 0; i < m; ++i)
      c_col[i] = beta == T(0) ? alpha * acc[i] : alpha * acc[i] + beta * c_col[i];
  }
}

template <class T>
cublasStatus_t host_gemm(const char* name, cublasOperation_t ta, cublasOperation_t tb, int m,
                         int n, int k, const T* alpha, const T* a, int lda, const T* b, int ldb,
                         const T* beta, T* c, int ldc) {
  if (!valid_gemm(ta, tb, m, n, k, lda, ldb, ldc)) return CUBLAS_STATUS_INVALID_VALUE;
  // Host pointer mode: alpha and beta are read when the call is issued (or captured).
  const T al = *alpha, be = *beta;
  kd::cuda::emu::stream_op(
      [=] { gemm_now(name, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc); });
  return CUBLAS_STATUS_SUCCESS;
}
}  // namespace detail
}  // namespace grid
}  // namespace kd

inline cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb,
                                  int m, int n, int k, const float* alpha, const float* a,
                                  int lda, const float* b, int ldb, const float* beta, float* c,
                                  int ldc) {
  return kd::grid::detail::host_gemm("cublasSgemm", ta, tb, m, n, k, alpha, a, lda, b, ldb, beta,
                                     c, ldc);
}
inline cublasStatus_t cublasDgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb,
                                  int m, int n, int k, const double* alpha, const double* a,
                                  int lda, const double* b, int ldb, const double* beta,
                                  double* c, int ldc) {
  return kd::grid::detail::host_gemm("cublasDgemm", ta, tb, m, n, k, alpha, a, lda, b, ldb, beta,
                                     c, ldc);
}

// Strided-batched GEMMs as one host GEMM per matrix of the batch, in order.
namespace kd {
namespace grid {
namespace detail {
template <class T>
cublasStatus_t host_gemm_strided(const char* name, cublasOperation_t ta, cublasOperation_t tb,
                                 int m, int n, int k, const T* alpha, const T* a, int lda,
                                 long long stride_a, const T* b, int ldb, long long stride_b,
                                 const T* beta, T* c, int ldc, long long stride_c, int batch) {
  if (batch < 0 || !valid_gemm(ta, tb, m, n, k, lda, ldb, ldc)) return CUBLAS_STATUS_INVALID_VALUE;
  const T al = *alpha, be = *beta;
  kd::cuda::emu::stream_op([=] {  // one call, one stream operation
    for (int i = 0; i < batch; ++i)
      gemm_now(name, ta, tb, m, n, k, al, a + i * stride_a, lda, b + i * stride_b, ldb, be,
               c + i * stride_c, ldc);
  });
  return CUBLAS_STATUS_SUCCESS;
}
}  // namespace detail
}  // namespace grid
}  // namespace kd

inline cublasStatus_t cublasSgemmStridedBatched(
    cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    const float* alpha, const float* a, int lda, long long stride_a, const float* b, int ldb,
    long long stride_b, const float* beta, float* c, int ldc, long long stride_c, int batch) {
  return kd::grid::detail::host_gemm_strided("cublasSgemmStridedBatched", ta, tb, m, n, k, alpha,
                                             a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                                             stride_c, batch);
}
inline cublasStatus_t cublasDgemmStridedBatched(
    cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    const double* alpha, const double* a, int lda, long long stride_a, const double* b, int ldb,
    long long stride_b, const double* beta, double* c, int ldc, long long stride_c, int batch) {
  return kd::grid::detail::host_gemm_strided("cublasDgemmStridedBatched", ta, tb, m, n, k, alpha,
                                             a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                                             stride_c, batch);
}
