// CUDA pooling over NCHW (contract: kernels/pool.h), device pointers, compute stream.
// avg / max forward: one thread per output element; the window maths is in
// kernels/cuda/pool_index.h, shared with a host test that holds it to ref:: bit for bit.
// avg / max backward: one thread per INPUT element gathering from the outputs whose windows
// cover it, in ref::'s order, so overlapping windows (stride < kernel) need no atomics and dx is
// ACCUMULATED by exactly one thread per element. max writes argmax (ih*w + iw in the input plane,
// first maximum wins, NaN propagates). global avg: one warp per plane, double lanes summed by a
// fixed shuffle tree (bitwise reproducible). Forward ASSIGNS; backward ACCUMULATES into dx.
#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/pool_index.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/pool.h"

namespace kd {
namespace cuda {

namespace {

using fixed_order::warp_sum;

constexpr int kThreads = 256;


__device__ __forceinline__ int64_t first_index() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return int64_t(blockDim.x) * gridDim.x; }

// Flat output index o = (plane * p + oh) * q + ow.
template <class T>
__global__ void avg_pool_forward_kernel(int64_t outputs, PoolDims d, const T* x, T* y) {
  const int64_t pq = int64_t(d.p) * d.q, hw = int64_t(d.h) * d.w;
  for (int64_t o = first_index(); o < outputs; o += grid_stride()) {
    const int64_t plane = o / pq;
    const int r = int(o - plane * pq);
    y[o] = avg_pool_at(d, x + plane * hw, r / d.q, r % d.q);
  }
}

template <class T>
__global__ void max_pool_forward_kernel(int64_t outputs, PoolDims d, const T* x, T* y,
                                        int32_t* argmax) {
  const int64_t pq = int64_t(d.p) * d.q, hw = int64_t(d.h) * d.w;
  for (int64_t o = first_index(); o < outputs; o += grid_stride()) {
    const int64_t plane = o / pq;
    const int r = int(o - plane * pq);
    const T* x_plane = x + plane * hw;
    const int best = max_pool_argmax_at(d, x_plane, r / d.q, r % d.q);
    y[o] = x_plane[best];
    argmax[o] = best;
  }
}

// Flat input index k = (plane * h + ih) * w + iw.
template <class T>
__global__ void avg_pool_backward_kernel(int64_t inputs, PoolDims d, const T* dy, T* dx) {
  const int64_t pq = int64_t(d.p) * d.q, hw = int64_t(d.h) * d.w;
  for (int64_t k = first_index(); k < inputs; k += grid_stride()) {
    const int64_t plane = k / hw;
    const int r = int(k - plane * hw);
    dx[k] = avg_pool_grad_at(d, dy + plane * pq, r / d.w, r % d.w, dx[k]);
  }
}

template <class T>
__global__ void max_pool_backward_kernel(int64_t inputs, PoolDims d, const T* dy,
                                         const int32_t* argmax, T* dx) {
  const int64_t pq = int64_t(d.p) * d.q, hw = int64_t(d.h) * d.w;
  for (int64_t k = first_index(); k < inputs; k += grid_stride()) {
    const int64_t plane = k / hw;
    const int r = int(k - plane * hw);
    dx[k] = max_pool_grad_at(d, dy + plane * pq, argmax + plane * pq, r / d.w, r % d.w, dx[k]);
  }
}

// One warp per plane (warps stride over planes); lanes read consecutive elements (coalesced).
template <class T>
__global__ void global_avg_pool_forward_kernel(int64_t planes, int hw, const T* x, T* y) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = grid_stride() / 32;
  for (int64_t plane = first_index() / 32; plane < planes; plane += warps) {  // warp-uniform
    const T* in = x + plane * hw;
    double acc = 0.0;
    for (int j = lane; j < hw; j += 32) acc += in[j];
    acc = warp_sum(acc);
    if (lane == 0) y[plane] = static_cast<T>(acc / hw);
  }
}

template <class T>
__global__ void global_avg_pool_backward_kernel(int64_t total, int hw, const T* dy, T* dx) {
  for (int64_t k = first_index(); k < total; k += grid_stride()) dx[k] += dy[k / hw] / T(hw);
}

}  // namespace

template <class T>
void avg_pool2d_forward(const PoolGeom& g, const T* x, T* y) {
  kd::detail::check_pool_geom(g, "avg_pool2d");
  const int64_t outputs = int64_t(g.n) * g.c * g.p() * g.q();
  if (outputs == 0) return;
  KD_LAUNCH(avg_pool_forward_kernel<T>, grid_for(outputs, kThreads), kThreads, 0, outputs,
            pool_dims(g), x, y);
}

template <class T>
void avg_pool2d_backward(const PoolGeom& g, const T* dy, T* dx) {
  kd::detail::check_pool_geom(g, "avg_pool2d");
  const int64_t inputs = int64_t(g.n) * g.c * g.h * g.w;
  if (inputs == 0) return;
  KD_LAUNCH(avg_pool_backward_kernel<T>, grid_for(inputs, kThreads), kThreads, 0, inputs,
            pool_dims(g), dy, dx);
}

template <class T>
void max_pool2d_forward(const PoolGeom& g, const T* x, T* y, int32_t* argmax) {
  kd::detail::check_pool_geom(g, "max_pool2d");
  const int64_t outputs = int64_t(g.n) * g.c * g.p() * g.q();
  if (outputs == 0) return;
  KD_LAUNCH(max_pool_forward_kernel<T>, grid_for(outputs, kThreads), kThreads, 0, outputs,
            pool_dims(g), x, y, argmax);
}

template <class T>
void max_pool2d_backward(const PoolGeom& g, const T* dy, const int32_t* argmax, T* dx) {
  kd::detail::check_pool_geom(g, "max_pool2d");
  const int64_t inputs = int64_t(g.n) * g.c * g.h * g.w;
  if (inputs == 0) return;
  KD_LAUNCH(max_pool_backward_kernel<T>, grid_for(inputs, kThreads), kThreads, 0, inputs,
            pool_dims(g), dy, argmax, dx);
}

template <class T>
void global_avg_pool_forward(int n, int c, int hw, const T* x, T* y) {
  kd::detail::check_global_pool(n, c, hw);
  const int64_t planes = int64_t(n) * c;
  if (planes == 0) return;
  KD_LAUNCH(global_avg_pool_forward_kernel<T>, grid_for(planes * 32, kThreads), kThreads, 0,
            planes, hw, x, y);
}

template <class T>
void global_avg_pool_backward(int n, int c, int hw, const T* dy, T* dx) {
  kd::detail::check_global_pool(n, c, hw);
  const int64_t total = int64_t(n) * c * hw;
  if (total == 0) return;
  KD_LAUNCH(global_avg_pool_backward_kernel<T>, grid_for(total, kThreads), kThreads, 0, total,
            hw, dy, dx);
}

KD_DEFINE_REGISTRAR(register_pool, KD_POOL_KERNELS)

}  // namespace cuda
}  // namespace kd
