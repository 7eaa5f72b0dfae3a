// Pooling over NCHW planes on the CPU, ref:: (plain loops) and cpu:: (OpenMP over the n*c planes).
// avg: window kh x kw, zero padding counted (divide by kh*kw, PyTorch's count_include_pad=True).
// max: padding ignored; argmax[n*c*p*q] = ih*w + iw of the winner inside its input plane; the
// first maximum in (ih, iw) order wins, and a NaN, once met, wins (propagates, as in PyTorch).
// global avg: x [n, c, h*w] -> y [n, c]. Forward ASSIGNS; backward ACCUMULATES into dx.
// Every plane belongs to one thread and is processed in a fixed order, so cpu:: results do not
// depend on the thread count. Windows must overlap the input: pad <= kernel/2 (PyTorch's rule).
#include "kernels/backend.h"
#include "kernels/pool.h"

#include <cmath>
#include <cstdint>

#include "base/check.h"

namespace kd {

namespace {


// True when v should replace the current best: larger, or the first NaN.
template <class T>
bool beats(T v, T best) {
  return v > best || (std::isnan(v) && !std::isnan(best));
}

}  // namespace

namespace ref {

template <class T>
void avg_pool2d_forward(const PoolGeom& g, const T* x, T* y) {
  kd::detail::check_pool_geom(g, "avg_pool2d");
  const int p = g.p(), q = g.q();
  for (int64_t plane = 0; plane < int64_t(g.n) * g.c; ++plane)
    for (int oh = 0; oh < p; ++oh)
      for (int ow = 0; ow < q; ++ow) {
        double acc = 0.0;
        for (int i = 0; i < g.kh; ++i)
          for (int j = 0; j < g.kw; ++j) {
            const int ih = oh * g.stride - g.pad + i, iw = ow * g.stride - g.pad + j;
            if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) acc += x[(plane * g.h + ih) * g.w + iw];
          }
        y[(plane * p + oh) * q + ow] = static_cast<T>(acc / (g.kh * g.kw));
      }
}

template <class T>
void avg_pool2d_backward(const PoolGeom& g, const T* dy, T* dx) {
  kd::detail::check_pool_geom(g, "avg_pool2d");
  const int p = g.p(), q = g.q();
  for (int64_t plane = 0; plane < int64_t(g.n) * g.c; ++plane)
    for (int oh = 0; oh < p; ++oh)
      for (int ow = 0; ow < q; ++ow) {
        const T share = dy[(plane * p + oh) * q + ow] / T(g.kh * g.kw);
        for (int i = 0; i < g.kh; ++i)
          for (int j = 0; j < g.kw; ++j) {
            const int ih = oh * g.stride - g.pad + i, iw = ow * g.stride - g.pad + j;
            if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
              dx[(plane * g.h + ih) * g.w + iw] += share;
          }
      }
}

template <class T>
void max_pool2d_forward(const PoolGeom& g, const T* x, T* y, int32_t* argmax) {
  kd::detail::check_pool_geom(g, "max_pool2d");
  const int p = g.p(), q = g.q();
  for (int64_t plane = 0; plane < int64_t(g.n) * g.c; ++plane)
    for (int oh = 0; oh < p; ++oh)
      for (int ow = 0; ow < q; ++ow) {
        int best = -1;
        for (int i = 0; i < g.kh; ++i)
          for (int j = 0; j < g.kw; ++j) {
            const int ih = oh * g.stride - g.pad + i, iw = ow * g.stride - g.pad + j;
            if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
            const int at = ih * g.w + iw;
            if (best < 0 || beats(x[plane * g.h * g.w + at], x[plane * g.h * g.w + best]))
              best = at;
          }
        y[(plane * p + oh) * q + ow] = x[plane * g.h * g.w + best];
        argmax[(plane * p + oh) * q + ow] = best;
      }
}

template <class T>
void max_pool2d_backward(const PoolGeom& g, const T* dy, const int32_t* argmax, T* dx) {
  kd::detail::check_pool_geom(g, "max_pool2d");
  const int64_t pq = int64_t(g.p()) * g.q();
  for (int64_t plane = 0; plane < int64_t(g.n) * g.c; ++plane)
    for (int64_t j = 0; j < pq; ++j)
      dx[plane * g.h * g.w + argmax[plane * pq + j]] += dy[plane * pq + j];
}

template <class T>
void global_avg_pool_forward(int n, int c, int hw, const T* x, T* y) {
  kd::detail::check_global_pool(n, c, hw);
  for (int64_t plane = 0; plane < int64_t(n) * c; ++plane) {
    double acc = 0.0;
    for (int j = 0; j < hw; ++j) acc += x[plane * hw + j];
    y[plane] = static_cast<T>(acc / hw);
  }
}

template <class T>
void global_avg_pool_backward(int n, int c, int hw, const T* dy, T* dx) {
  kd::detail::check_global_pool(n, c, hw);
  for (int64_t plane = 0; plane < int64_t(n) * c; ++plane)
    for (int j = 0; j < hw; ++j) dx[plane * hw + j] += dy[plane] / T(hw);
}

}  // namespace ref

namespace cpu {

namespace {
// Window rows (or columns) [lo, hi) of output index o, clipped to the input.
inline void clip(int o, int stride, int pad, int k, int extent, int& lo, int& hi) {
  lo = o * stride - pad;
  hi = lo + k;
  if (lo < 0) lo = 0;
  if (hi > extent) hi = extent;
}

// The common 2x2, stride-2, unpadded window (LeNet): no clipping, rows that vectorize. The sum runs
// in the general loop's order, ((top-left + top-right) + bottom-left) + bottom-right, so the
// result is the same bits.
bool is_plain_2x2(const PoolGeom& g) {
  return g.kh == 2 && g.kw == 2 && g.stride == 2 && g.pad == 0;
}

template <class T>
void avg_pool_2x2_plane(const T* in, int w, int p, int q, T inv, T* out) {
  for (int oh = 0; oh < p; ++oh) {
    const T* top = in + int64_t(2 * oh) * w;
    const T* bottom = top + w;
    T* o = out + int64_t(oh) * q;
#pragma omp simd
    for (int ow = 0; ow < q; ++ow)
      o[ow] = (((T(0) + top[2 * ow]) + top[2 * ow + 1]) + bottom[2 * ow] + bottom[2 * ow + 1]) * inv;
  }
}

template <class T>
void avg_pool_2x2_plane_backward(const T* grad, int w, int p, int q, T inv, T* out) {
  for (int oh = 0; oh < p; ++oh) {
    T* top = out + int64_t(2 * oh) * w;
    T* bottom = top + w;
    const T* gr = grad + int64_t(oh) * q;
#pragma omp simd
    for (int ow = 0; ow < q; ++ow) {
      const T share = gr[ow] * inv;
      top[2 * ow] += share;
      top[2 * ow + 1] += share;
      bottom[2 * ow] += share;
      bottom[2 * ow + 1] += share;
    }
  }
}
}  // namespace

template <class T>
void avg_pool2d_forward(const PoolGeom& g, const T* x, T* y) {
  kd::detail::check_pool_geom(g, "avg_pool2d");
  const int p = g.p(), q = g.q();
  const T inv = T(1) / T(g.kh * g.kw);
  const int64_t planes = int64_t(g.n) * g.c;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* in = x + plane * g.h * g.w;
    T* out = y + plane * p * q;
    if (is_plain_2x2(g)) {
      avg_pool_2x2_plane(in, g.w, p, q, inv, out);
      continue;
    }
    for (int oh = 0; oh < p; ++oh) {
      int h0, h1;
      clip(oh, g.stride, g.pad, g.kh, g.h, h0, h1);
      for (int ow = 0; ow < q; ++ow) {
        int w0, w1;
        clip(ow, g.stride, g.pad, g.kw, g.w, w0, w1);
        T acc = T(0);
        for (int ih = h0; ih < h1; ++ih)
          for (int iw = w0; iw < w1; ++iw) acc += in[ih * g.w + iw];
        out[oh * q + ow] = acc * inv;
      }
    }
  }
}

template <class T>
void avg_pool2d_backward(const PoolGeom& g, const T* dy, T* dx) {
  kd::detail::check_pool_geom(g, "avg_pool2d");
  const int p = g.p(), q = g.q();
  const T inv = T(1) / T(g.kh * g.kw);
  const int64_t planes = int64_t(g.n) * g.c;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* grad = dy + plane * p * q;
    T* out = dx + plane * g.h * g.w;
    if (is_plain_2x2(g)) {
      avg_pool_2x2_plane_backward(grad, g.w, p, q, inv, out);
      continue;
    }
    for (int oh = 0; oh < p; ++oh) {
      int h0, h1;
      clip(oh, g.stride, g.pad, g.kh, g.h, h0, h1);
      for (int ow = 0; ow < q; ++ow) {
        int w0, w1;
        clip(ow, g.stride, g.pad, g.kw, g.w, w0, w1);
        const T share = grad[oh * q + ow] * inv;
        for (int ih = h0; ih < h1; ++ih)
          for (int iw = w0; iw < w1; ++iw) out[ih * g.w + iw] += share;
      }
    }
  }
}

template <class T>
void max_pool2d_forward(const PoolGeom& g, const T* x, T* y, int32_t* argmax) {
  kd::detail::check_pool_geom(g, "max_pool2d");
  const int p = g.p(), q = g.q();
  const int64_t planes = int64_t(g.n) * g.c;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* in = x + plane * g.h * g.w;
    T* out = y + plane * p * q;
    int32_t* arg = argmax + plane * p * q;
    for (int oh = 0; oh < p; ++oh) {
      int h0, h1;
      clip(oh, g.stride, g.pad, g.kh, g.h, h0, h1);
      for (int ow = 0; ow < q; ++ow) {
        int w0, w1;
        clip(ow, g.stride, g.pad, g.kw, g.w, w0, w1);
        int best = h0 * g.w + w0;
        T best_v = in[best];
        for (int ih = h0; ih < h1; ++ih)
          for (int iw = w0; iw < w1; ++iw) {
            const T v = in[ih * g.w + iw];
            if (beats(v, best_v)) best_v = v, best = ih * g.w + iw;
          }
        out[oh * q + ow] = best_v;
        arg[oh * q + ow] = best;
      }
    }
  }
}

template <class T>
void max_pool2d_backward(const PoolGeom& g, const T* dy, const int32_t* argmax, T* dx) {
  kd::detail::check_pool_geom(g, "max_pool2d");
  const int64_t pq = int64_t(g.p()) * g.q(), hw = int64_t(g.h) * g.w, planes = int64_t(g.n) * g.c;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    T* out = dx + plane * hw;
    for (int64_t j = 0; j < pq; ++j) out[argmax[plane * pq + j]] += dy[plane * pq + j];
  }
}

template <class T>
void global_avg_pool_forward(int n, int c, int hw, const T* x, T* y) {
  kd::detail::check_global_pool(n, c, hw);
  const int64_t planes = int64_t(n) * c;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* in = x + plane * hw;
    double lane[4] = {0, 0, 0, 0};  // fixed interleaving: pipelined adds, fixed order
    int j = 0;
    for (; j + 4 <= hw; j += 4)
      for (int l = 0; l < 4; ++l) lane[l] += in[j + l];
    for (int l = 0; j < hw; ++j, ++l) lane[l] += in[j];
    y[plane] = static_cast<T>((lane[0] + lane[1] + lane[2] + lane[3]) / hw);
  }
}

template <class T>
void global_avg_pool_backward(int n, int c, int hw, const T* dy, T* dx) {
  kd::detail::check_global_pool(n, c, hw);
  const int64_t planes = int64_t(n) * c;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T share = dy[plane] / T(hw);
    T* out = dx + plane * hw;
    for (int j = 0; j < hw; ++j) out[j] += share;
  }
}

}  // namespace cpu

namespace ref {
KD_DEFINE_REGISTRAR(register_pool, KD_POOL_KERNELS)
}
namespace cpu {
KD_DEFINE_REGISTRAR(register_pool, KD_POOL_KERNELS)
}

}  // namespace kd
