// Reference 2-D convolution: the specification every faster convolution is tested against.
// Layouts: x NCHW [n,c,h,w], w OIHW [k,c,r,s], y [n,k,p,q]. Forward ASSIGNS y; the backward kernels
// ACCUMULATE into dx, dw, dbias. Plain loops, single-threaded; every output element is one sum
// accumulated in double (so ref:: is also the most accurate version) and then added to its target.
#include <cstdint>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/conv2d.h"
#include "kernels/cpu/bf16_entries.h"

namespace kd::ref {

namespace {
void check_geom(const ConvGeom& g) { kd::detail::check_conv_geom(g); }
}  // namespace

template <class T>
void conv2d_forward(const ConvGeom& g, const T* x, const T* w, const T* bias, T* y) {
  check_geom(g);
  const int p = g.p(), q = g.q();
  for (int n = 0; n < g.n; ++n)
    for (int k = 0; k < g.k; ++k)
      for (int oh = 0; oh < p; ++oh)
        for (int ow = 0; ow < q; ++ow) {
          double acc = bias ? static_cast<double>(bias[k]) : 0.0;
          for (int c = 0; c < g.c; ++c)
            for (int r = 0; r < g.r; ++r)
              for (int s = 0; s < g.s; ++s) {
                const int ih = oh * g.stride - g.pad + r, iw = ow * g.stride - g.pad + s;
                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                acc += static_cast<double>(x[((int64_t(n) * g.c + c) * g.h + ih) * g.w + iw]) *
                       static_cast<double>(w[((int64_t(k) * g.c + c) * g.r + r) * g.s + s]);
              }
          y[((int64_t(n) * g.k + k) * p + oh) * q + ow] = static_cast<T>(acc);
        }
}

template <class T>
void conv2d_forward_residual(const ConvGeom& g, const T* x, const T* w, const T* residual, T* y) {
  conv2d_forward(g, x, w, static_cast<const T*>(nullptr), y);
  const int64_t n = int64_t(g.n) * g.k * g.p() * g.q();
  for (int64_t i = 0; i < n; ++i) y[i] = y[i] + residual[i];
}

// dx[n,c,ih,iw] += sum over (k, r, s) with oh = (ih + pad - r) / stride an exact, in-range
// division.
template <class T>
void conv2d_backward_data(const ConvGeom& g, const T* dy, const T* w, T* dx, bool accumulate) {
  check_geom(g);
  const int p = g.p(), q = g.q();
  for (int n = 0; n < g.n; ++n)
    for (int c = 0; c < g.c; ++c)
      for (int ih = 0; ih < g.h; ++ih)
        for (int iw = 0; iw < g.w; ++iw) {
          double acc = 0.0;
          for (int k = 0; k < g.k; ++k)
            for (int r = 0; r < g.r; ++r)
              for (int s = 0; s < g.s; ++s) {
                const int th = ih + g.pad - r, tw = iw + g.pad - s;
                if (th < 0 || tw < 0 || th % g.stride != 0 || tw % g.stride != 0) continue;
                const int oh = th / g.stride, ow = tw / g.stride;
                if (oh >= p || ow >= q) continue;
                acc += static_cast<double>(dy[((int64_t(n) * g.k + k) * p + oh) * q + ow]) *
                       static_cast<double>(w[((int64_t(k) * g.c + c) * g.r + r) * g.s + s]);
              }
          T& out = dx[((int64_t(n) * g.c + c) * g.h + ih) * g.w + iw];
          out = accumulate ? static_cast<T>(out + acc) : static_cast<T>(acc);
        }
}

template <class T>
void conv2d_backward_weight(const ConvGeom& g, const T* x, const T* dy, T* dw, T* dbias) {
  check_geom(g);
  const int p = g.p(), q = g.q();
  for (int k = 0; k < g.k; ++k)
    for (int c = 0; c < g.c; ++c)
      for (int r = 0; r < g.r; ++r)
        for (int s = 0; s < g.s; ++s) {
          double acc = 0.0;
          for (int n = 0; n < g.n; ++n)
            for (int oh = 0; oh < p; ++oh)
              for (int ow = 0; ow < q; ++ow) {
                const int ih = oh * g.stride - g.pad + r, iw = ow * g.stride - g.pad + s;
                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                acc += static_cast<double>(x[((int64_t(n) * g.c + c) * g.h + ih) * g.w + iw]) *
                       static_cast<double>(dy[((int64_t(n) * g.k + k) * p + oh) * q + ow]);
              }
          T& out = dw[((int64_t(k) * g.c + c) * g.r + r) * g.s + s];
          out = static_cast<T>(out + acc);
        }
  if (!dbias) return;
  for (int k = 0; k < g.k; ++k) {
    double acc = 0.0;
    for (int n = 0; n < g.n; ++n)
      for (int i = 0; i < p * q; ++i) acc += dy[(int64_t(n) * g.k + k) * p * q + i];
    dbias[k] = static_cast<T>(dbias[k] + acc);
  }
}

KD_CONV2D_BACKWARD_AS_TWO_PASSES

KD_BF16_CONV2D_ENTRIES

KD_DEFINE_REGISTRAR(register_conv2d, KD_CONV2D_ALL_KERNELS)

}  // namespace kd::ref
