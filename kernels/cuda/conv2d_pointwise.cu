// The cuBLAS route of 1x1 stride-1 convolutions (contract and layouts: conv2d_pointwise.h,
// kernels/cuda/pointwise_gemm.h). TF32 follows cuda::math_mode() through cublas_handle(), which
// also forbids atomics. Each cuBLAS call counts one launch.
#include <cublas_v2.h>

#include <cstdint>

#include "base/check.h"
#include "kernels/cuda/conv2d_pointwise.h"
#include "kernels/cuda/cublas_handle.h"
#include "kernels/cuda/env_switch.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/pointwise_gemm.h"
#include "kernels/elementwise.h"

namespace kd {
namespace cuda {
namespace {

cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

cublasStatus_t gemm(const pointwise_gemm::StridedGemm& p, const float* alpha, const float* a,
                    const float* b, const float* beta, float* c) {
  return cublasSgemmStridedBatched(cublas_handle(), op(p.trans_a), op(p.trans_b), p.m, p.n, p.k,
                                   alpha, a, p.lda, p.stride_a, b, p.ldb, p.stride_b, beta, c,
                                   p.ldc, p.stride_c, p.batch);
}
cublasStatus_t gemm(const pointwise_gemm::StridedGemm& p, const double* alpha, const double* a,
                    const double* b, const double* beta, double* c) {
  return cublasDgemmStridedBatched(cublas_handle(), op(p.trans_a), op(p.trans_b), p.m, p.n, p.k,
                                   alpha, a, p.lda, p.stride_a, b, p.ldb, p.stride_b, beta, c,
                                   p.ldc, p.stride_c, p.batch);
}

// C_i = A_i B_i (+ C_i when accumulate) for every image; one launch.
template <class T>
void run_pointwise(const pointwise_gemm::StridedGemm& p, const T* a, const T* b, T* c,
                   bool accumulate) {
  if (p.m == 0 || p.n == 0 || p.batch == 0) return;
  const T one = T(1), zero = T(0);
  CUBLAS_CHECK(gemm(p, &one, a, b, accumulate ? &one : &zero, c));
  count_launch();
}

// y[i, ch, j] += bias[ch] over the flat [n, k, pq] array.
template <class T>
__global__ void add_channel_bias_kernel(int64_t total, int k, int pq, const T* __restrict__ bias,
                                        T* __restrict__ y) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step)
    y[i] += bias[(i / pq) % k];
}

template <class T>
void forward(const ConvGeom& g, const T* x, const T* w, const T* bias, const T* residual, T* y) {
  KD_CHECK(!(bias && residual), "conv2d pointwise forward: a bias or a residual, not both");
  run_pointwise(pointwise_gemm::forward(g), x, w, y, false);
  const int pq = g.p() * g.q();
  const int64_t total = int64_t(g.n) * g.k * pq;
  if (bias)
    KD_LAUNCH(add_channel_bias_kernel<T>, grid_for(total, 256), 256, 0, total, g.k, pq, bias, y);
  if (residual) accumulate(total, T(1), residual, y);
}

}  // namespace

// Default native: no second launch for a residual, and the bits of the other shapes' kernel.
bool pointwise_on_cublas(const ConvGeom& g) {
  return pointwise_gemm::applies(g) && env_switch("KDLAB_CONV_1X1", "native", "cublas", false);
}

void pointwise_forward(const ConvGeom& g, const float* x, const float* w, const float* bias,
                       const float* residual, float* y) {
  forward(g, x, w, bias, residual, y);
}
void pointwise_forward(const ConvGeom& g, const double* x, const double* w, const double* bias,
                       const double* residual, double* y) {
  forward(g, x, w, bias, residual, y);
}

void pointwise_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx,
                             bool accumulate) {
  run_pointwise(pointwise_gemm::backward_data(g), dy, w, dx, accumulate);
}
void pointwise_backward_data(const ConvGeom& g, const double* dy, const double* w, double* dx,
                             bool accumulate) {
  run_pointwise(pointwise_gemm::backward_data(g), dy, w, dx, accumulate);
}

}  // namespace cuda
}  // namespace kd
