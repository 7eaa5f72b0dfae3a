// Per-element pooling maths shared by the CUDA pool kernels (kernels/cuda/pool.cu) and a host test
// (tests/test_pool_index.cpp) that rebuilds every pool op from these helpers and compares it with
// ref:: bit for bit. Layout: one NCHW input plane (h x w) and its output plane (p x q).
// The backwards are GATHERS: each input element sums, in the order ref:: scatters them (output
// row-major), the gradients of the outputs whose windows cover it. No two threads write the same
// dx element, so overlapping windows (stride < kernel) need no atomics. The functions take the
// current dx value and return the updated one, so the summation order is exactly ref::'s.
#pragma once
#include <cstdint>

#include "base/philox.h"  // KD_HOST_DEVICE
#include "kernels/pool.h"

namespace kd {
namespace cuda {

// PoolGeom without its host-only member functions, for passing to kernels by value.
struct PoolDims {
  int h, w, kh, kw, stride, pad, p, q;
};

inline PoolDims pool_dims(const PoolGeom& g) {
  return PoolDims{g.h, g.w, g.kh, g.kw, g.stride, g.pad, g.p(), g.q()};
}

struct IndexRange {
  int lo, hi;  // [lo, hi), empty when lo >= hi
};

// Input rows (or columns) under output o's window, clipped to [0, extent).
KD_HOST_DEVICE inline IndexRange pool_window(int o, int stride, int pad, int k, int extent) {
  int lo = o * stride - pad, hi = lo + k;
  if (lo < 0) lo = 0;
  if (hi > extent) hi = extent;
  return {lo, hi};
}

// Output rows (or columns) o in [0, out_extent) whose window covers input i, i.e.
// o*stride - pad <= i < o*stride - pad + k. With t = i + pad >= 0:
// o <= t / stride, and o*stride >= t - k + 1, i.e. o >= (t - k) / stride + 1 when t >= k.
KD_HOST_DEVICE inline IndexRange pool_reach(int i, int stride, int pad, int k, int out_extent) {
  const int t = i + pad;
  const int lo = t < k ? 0 : (t - k) / stride + 1;
  int hi = t / stride + 1;
  if (hi > out_extent) hi = out_extent;
  return {lo, hi};
}

// Average of output (oh, ow): padded zeros count (divide by kh*kw); summed in double, as ref::.
template <class T>
KD_HOST_DEVICE inline T avg_pool_at(const PoolDims& d, const T* x_plane, int oh, int ow) {
  const IndexRange rows = pool_window(oh, d.stride, d.pad, d.kh, d.h);
  const IndexRange cols = pool_window(ow, d.stride, d.pad, d.kw, d.w);
  double acc = 0.0;
  for (int ih = rows.lo; ih < rows.hi; ++ih)
    for (int iw = cols.lo; iw < cols.hi; ++iw) acc += x_plane[ih * d.w + iw];
  return static_cast<T>(acc / (d.kh * d.kw));
}

// Flat in-plane index (ih*w + iw) of the maximum under output (oh, ow)'s window: the first
// maximum in (ih, iw) order, and the first NaN once met. The window is never empty for a
// geometry pool.cu accepts (pad <= kernel/2).
template <class T>
KD_HOST_DEVICE inline int max_pool_argmax_at(const PoolDims& d, const T* x_plane, int oh, int ow) {
  const IndexRange rows = pool_window(oh, d.stride, d.pad, d.kh, d.h);
  const IndexRange cols = pool_window(ow, d.stride, d.pad, d.kw, d.w);
  int best = rows.lo * d.w + cols.lo;
  T best_v = x_plane[best];
  for (int ih = rows.lo; ih < rows.hi; ++ih)
    for (int iw = cols.lo; iw < cols.hi; ++iw) {
      const T v = x_plane[ih * d.w + iw];
      const bool v_nan = v != v, best_nan = best_v != best_v;
      if (v > best_v || (v_nan && !best_nan)) {
        best_v = v;
        best = ih * d.w + iw;
      }
    }
  return best;
}

// dx (the current value at input (ih, iw)) plus every covering output's share dy / (kh*kw).
template <class T>
KD_HOST_DEVICE inline T avg_pool_grad_at(const PoolDims& d, const T* dy_plane, int ih, int iw,
                                         T dx) {
  const IndexRange rows = pool_reach(ih, d.stride, d.pad, d.kh, d.p);
  const IndexRange cols = pool_reach(iw, d.stride, d.pad, d.kw, d.q);
  const T count = T(d.kh * d.kw);
  for (int oh = rows.lo; oh < rows.hi; ++oh)
    for (int ow = cols.lo; ow < cols.hi; ++ow) dx += dy_plane[oh * d.q + ow] / count;
  return dx;
}

// dx plus the gradients of the covering outputs whose argmax is this input element. Only a
// covering output can have picked it, so the gather sees every contribution the scatter would.
template <class T>
KD_HOST_DEVICE inline T max_pool_grad_at(const PoolDims& d, const T* dy_plane,
                                         const int32_t* argmax_plane, int ih, int iw, T dx) {
  const IndexRange rows = pool_reach(ih, d.stride, d.pad, d.kh, d.p);
  const IndexRange cols = pool_reach(iw, d.stride, d.pad, d.kw, d.q);
  const int32_t self = ih * d.w + iw;
  for (int oh = rows.lo; oh < rows.hi; ++oh)
    for (int ow = cols.lo; ow < cols.hi; ++ow)
      if (argmax_plane[oh * d.q + ow] == self) dx += dy_plane[oh * d.q + ow];
  return dx;
}

}  // namespace cuda
}  // namespace kd
