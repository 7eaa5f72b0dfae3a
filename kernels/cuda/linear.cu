// Fully connected layer on the GPU (contract: kernels/linear.h). x [b, in], w [out, in],
// bias [out] or null, all row-major. Forward ASSIGNS y = x w^T + bias; backward ACCUMULATES
// dx += dy w, dw += dy^T x, dbias += sum_b dy.
// Each product is one cuBLAS GEMM (mapping to column-major in kernels/cuda/linear_gemm.h; beta = 1
// is the accumulation). The bias add and the bias gradient are small kernels of ours: the column
// sum gives each output column one thread that walks the batch in row order, in double, so it is
// run-to-run identical without atomics. TF32 follows cuda::math_mode() via cublas_handle().
#include <cublas_v2.h>

#include <cstdint>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/cuda/cublas_handle.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/linear_gemm.h"
#include "kernels/linear.h"

namespace kd {
namespace cuda {

namespace {

constexpr int kThreads = 256;

cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

cublasStatus_t gemm(const linear_gemm::ColumnMajorGemm& p, const float* alpha, const float* a,
                    const float* b, const float* beta, float* c) {
  return cublasSgemm(cublas_handle(), op(p.trans_a), op(p.trans_b), p.m, p.n, p.k, alpha, a,
                     p.lda, b, p.ldb, beta, c, p.ldc);
}
cublasStatus_t gemm(const linear_gemm::ColumnMajorGemm& p, const double* alpha, const double* a,
                    const double* b, const double* beta, double* c) {
  return cublasDgemm(cublas_handle(), op(p.trans_a), op(p.trans_b), p.m, p.n, p.k, alpha, a,
                     p.lda, b, p.ldb, beta, c, p.ldc);
}

// C = A B (+ C when accumulate); skipped when C is empty, and a k = 0 product adds nothing.
template <class T>
void run_gemm(const linear_gemm::ColumnMajorGemm& p, const T* a, const T* b, T* c,
              bool accumulate) {
  if (p.m == 0 || p.n == 0 || p.k == 0) return;
  const T one = T(1), zero = T(0);
  CUBLAS_CHECK(gemm(p, &one, a, b, accumulate ? &one : &zero, c));
  count_launch();
}

// y[row, o] += bias[o] over the flat [batch, out] array.
template <class T>
__global__ void add_bias_to_rows(int64_t total, int out, const T* __restrict__ bias,
                                 T* __restrict__ y) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step)
    y[i] += bias[i % out];
}

// dbias[o] += sum over rows b (in order) of dy[b, o]; neighbouring threads read neighbouring
// columns, so each row is one coalesced read.
template <class T>
__global__ void accumulate_column_sums(int batch, int out, const T* __restrict__ dy,
                                       T* __restrict__ dbias) {
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < out;
       o += int64_t(gridDim.x) * blockDim.x) {
    double acc = 0.0;
    for (int b = 0; b < batch; ++b) acc += static_cast<double>(dy[int64_t(b) * out + o]);
    dbias[o] = static_cast<T>(static_cast<double>(dbias[o]) + acc);
  }
}

void check_geom(const LinearGeom& g) {
  KD_CHECK(g.batch >= 0 && g.in >= 0 && g.out >= 0,
           "linear (cuda): bad geometry batch=" << g.batch << " in=" << g.in
                                                << " out=" << g.out);
}

}  // namespace

template <class T>
void linear_forward(const LinearGeom& g, const T* x, const T* w, const T* bias, T* y) {
  check_geom(g);
  const int64_t total = int64_t(g.batch) * g.out;
  if (total == 0) return;
  if (g.in == 0)  // y = bias (or 0): the empty product still assigns
    memset_device(y, 0, size_t(total) * sizeof(T));
  else
    run_gemm(linear_gemm::forward(g), w, x, y, /*accumulate=*/false);
  if (bias) KD_LAUNCH(add_bias_to_rows<T>, grid_for(total, kThreads), kThreads, 0, total, g.out,
                      bias, y);
}

template <class T>
void linear_backward_data(const LinearGeom& g, const T* dy, const T* w, T* dx) {
  check_geom(g);
  run_gemm(linear_gemm::backward_data(g), w, dy, dx, /*accumulate=*/true);
}

template <class T>
void linear_backward_weight(const LinearGeom& g, const T* x, const T* dy, T* dw, T* dbias) {
  check_geom(g);
  run_gemm(linear_gemm::backward_weight(g), x, dy, dw, /*accumulate=*/true);
  if (dbias && g.out > 0 && g.batch > 0)
    KD_LAUNCH(accumulate_column_sums<T>, grid_for(g.out, kThreads), kThreads, 0, g.batch, g.out,
              dy, dbias);
}

KD_DEFINE_REGISTRAR(register_linear, KD_LINEAR_KERNELS)

}  // namespace cuda
}  // namespace kd
