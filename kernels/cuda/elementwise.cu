// CUDA elementwise maps over flat arrays of length n (contract: kernels/elementwise.h), device
// pointers, on the compute stream. relu_forward, add_forward and fill ASSIGN; relu_backward
// ACCUMULATES into dx; accumulate and scale update dst in place. One grid-stride loop per op with
// int64 indices (arrays past 2^31 elements); no element depends on another, so results never
// depend on the launch shape. Same expressions as ref:: (relu keeps NaN); nvcc may fuse
// `dst + alpha * src` into one FMA, so float results can differ from ref:: by an ulp.
#include "kernels/backend.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/elementwise.h"

namespace kd {
namespace cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t first_index() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return int64_t(blockDim.x) * gridDim.x; }

template <class T>
__global__ void relu_forward_kernel(int64_t n, const T* x, T* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = x[i] < T(0) ? T(0) : x[i];
}

template <class T>
__global__ void relu_backward_kernel(int64_t n, const T* y, const T* dy, T* dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dx[i] += y[i] > T(0) ? dy[i] : T(0);
}

template <class T>
__global__ void add_forward_kernel(int64_t n, const T* a, const T* b, T* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = a[i] + b[i];
}

template <class T>
__global__ void accumulate_kernel(int64_t n, T alpha, const T* src, T* dst) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dst[i] += alpha * src[i];
}

template <class T>
__global__ void fill_kernel(int64_t n, T value, T* dst) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dst[i] = value;
}

template <class T>
__global__ void scale_kernel(int64_t n, T alpha, T* dst) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dst[i] *= alpha;
}

}  // namespace

// n <= 0 launches nothing (a zero-block grid is a launch error).
template <class T>
void relu_forward(int64_t n, const T* x, T* y) {
  if (n <= 0) return;
  KD_LAUNCH(relu_forward_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, x, y);
}

template <class T>
void relu_backward(int64_t n, const T* y, const T* dy, T* dx) {
  if (n <= 0) return;
  KD_LAUNCH(relu_backward_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, y, dy, dx);
}

template <class T>
void add_forward(int64_t n, const T* a, const T* b, T* y) {
  if (n <= 0) return;
  KD_LAUNCH(add_forward_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, a, b, y);
}

template <class T>
void accumulate(int64_t n, T alpha, const T* src, T* dst) {
  if (n <= 0) return;
  KD_LAUNCH(accumulate_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, alpha, src, dst);
}

template <class T>
void fill(int64_t n, T value, T* dst) {
  if (n <= 0) return;
  KD_LAUNCH(fill_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, value, dst);
}

template <class T>
void scale(int64_t n, T alpha, T* dst) {
  if (n <= 0) return;
  KD_LAUNCH(scale_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, alpha, dst);
}

KD_DEFINE_REGISTRAR(register_elementwise, KD_ELEMENTWISE_KERNELS)

namespace {
__global__ void counter_add_kernel(int64_t* counter, int64_t delta) { *counter += delta; }
}  // namespace

void counter_add(int64_t* counter, int64_t delta) {
  KD_LAUNCH(counter_add_kernel, 1, 1, 0, counter, delta);
}

}  // namespace cuda
}  // namespace kd
