// CUDA elementwise maps over flat arrays of length n (contract: kernels/elementwise.h), device
// pointers, on the compute stream. relu_forward, add_forward, fill and dropout_forward ASSIGN;
// relu_backward (unless told to assign) and dropout_backward ACCUMULATE into dx; accumulate and scale update dst in
// place. One grid-stride loop per op with int64 indices (arrays past 2^31 elements); no element
// depends on another, so results never depend on the launch shape. Same expressions as ref::
// (relu keeps NaN); nvcc may fuse `dst + alpha * src` into one FMA, so float results can differ
// from ref:: by an ulp.
// Dropout: one thread per group of four elements, which share one Philox block (dropout_block);
// the mask is therefore bitwise ref::'s and so is dropout_forward's output (a single product).
// dropout_backward's `dx + dy * m` may become an FMA: equal to ref:: when dx held zeros.
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

// counter, when given: *counter += 1 once (relu_forward_and_count).
template <class T>
__global__ void relu_forward_kernel(int64_t n, const T* x, T* y, int64_t* counter) {
  if (counter && blockIdx.x == 0 && threadIdx.x == 0) *counter += 1;
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = x[i] < T(0) ? T(0) : x[i];
}

template <class T>
__global__ void relu_backward_kernel(int64_t n, const T* y, const T* dy, T* dx, bool accumulate) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const T g = y[i] > T(0) ? dy[i] : T(0);
    dx[i] = accumulate ? dx[i] + g : g;  // assign never reads dx: no pass over it
  }
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

// Group g = elements 4g .. 4g+3 (the tail group of an n that is not a multiple of 4 stops at n),
// one group per thread of the grid-stride loop; m[k] is element 4g+k's factor, scale or 0.
template <class T>
__device__ __forceinline__ int64_t dropout_group(int64_t n, const DropoutMask& mask, T scale,
                                                 int64_t g, T m[4]) {
  const Philox4 r = dropout_block(mask, g);
  for (int k = 0; k < 4; ++k) m[k] = r.v[k] >= mask.keep_threshold ? scale : T(0);
  return g * 4 + 4 < n ? g * 4 + 4 : n;
}

template <class T>
__global__ void dropout_forward_kernel(int64_t n, DropoutMask mask, T scale, const T* x, T* y) {
  T m[4];
  for (int64_t g = first_index(); g < (n + 3) / 4; g += grid_stride()) {
    const int64_t end = dropout_group(n, mask, scale, g, m);
    for (int64_t i = g * 4; i < end; ++i) y[i] = x[i] * m[i & 3];
  }
}

template <class T>
__global__ void dropout_backward_kernel(int64_t n, DropoutMask mask, T scale, const T* dy, T* dx) {
  T m[4];
  for (int64_t g = first_index(); g < (n + 3) / 4; g += grid_stride()) {
    const int64_t end = dropout_group(n, mask, scale, g, m);
    for (int64_t i = g * 4; i < end; ++i) dx[i] += dy[i] * m[i & 3];
  }
}

}  // namespace

// n <= 0 launches nothing (a zero-block grid is a launch error).
template <class T>
void relu_forward(int64_t n, const T* x, T* y) {
  if (n <= 0) return;
  KD_LAUNCH(relu_forward_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, x, y,
            static_cast<int64_t*>(nullptr));
}

template <class T>
void relu_backward(int64_t n, const T* y, const T* dy, T* dx, bool accumulate) {
  if (n <= 0) return;
  KD_LAUNCH(relu_backward_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, y, dy, dx, accumulate);
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

template <class T>
void dropout_forward(int64_t n, const DropoutMask& mask, T scale, const T* x, T* y) {
  if (n <= 0) return;
  KD_LAUNCH(dropout_forward_kernel<T>, grid_for((n + 3) / 4, kThreads), kThreads, 0, n, mask,
            scale, x, y);
}

template <class T>
void dropout_backward(int64_t n, const DropoutMask& mask, T scale, const T* dy, T* dx) {
  if (n <= 0) return;
  KD_LAUNCH(dropout_backward_kernel<T>, grid_for((n + 3) / 4, kThreads), kThreads, 0, n, mask,
            scale, dy, dx);
}

KD_DEFINE_REGISTRAR(register_elementwise, KD_ELEMENTWISE_KERNELS)

namespace {
__global__ void counter_add_kernel(int64_t* counter, int64_t delta) { *counter += delta; }

}  // namespace

void counter_add(int64_t* counter, int64_t delta) {
  KD_LAUNCH(counter_add_kernel, 1, 1, 0, counter, delta);
}

// One launch even for n == 0 when there is a count to add.
template <class T>
void relu_forward_and_count(int64_t n, const T* x, T* y, int64_t* counter) {
  if (n <= 0 && !counter) return;
  KD_LAUNCH(relu_forward_kernel<T>, n > 0 ? grid_for(n, kThreads) : 1u, kThreads, 0, n, x, y,
            counter);
}
template void relu_forward_and_count<float>(int64_t, const float*, float*, int64_t*);
template void relu_forward_and_count<double>(int64_t, const double*, double*, int64_t*);

}  // namespace cuda
}  // namespace kd
