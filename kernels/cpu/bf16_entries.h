// The _bf16 entries of the CPU tables (ref:: and cpu::; contracts: kernels/normalization.h,
// kernels/conv2d.h): the bf16 operands widened (exact), the table's own T kernel, each output
// rounded once, an accumulated one as bf16(T(old) + new), by the namespace's own cast kernels.
// The CPU gains nothing from bf16 arithmetic; this is the definition the GPU's one-pass bf16
// kernels meet bit for bit against their T kernels. KD_BF16_BATCHNORM_ENTRIES and
// KD_BF16_CONV2D_ENTRIES define the entries in the including namespace, after its T kernels and
// beside its cast kernels (normalization*.cpp, conv2d*.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/cast.h"
#include "kernels/conv2d.h"
#include "kernels/normalization.h"

namespace kd {
namespace bf16_entries {

// The including namespace's cast kernels (kernels/cast.h): widening, and rounding into bf16
// (assigned, or bf16(T(y) + v) when accumulating).
template <class T>
struct Casts {
  void (*from)(int64_t n, const bf16* x, T* y, bool accumulate);
  void (*to)(int64_t n, const T* x, bf16* y, bool accumulate);

  std::vector<T> widened(const bf16* p, int64_t n) const {
    std::vector<T> out(static_cast<size_t>(p ? n : 0));
    if (p) from(n, p, out.data(), false);
    return out;
  }
  void round_into(const std::vector<T>& v, bf16* y, bool accumulate) const {
    to(int64_t(v.size()), v.data(), y, accumulate);
  }
};

inline int64_t numel(const NormGeom& g) { return int64_t(g.n) * g.c * g.hw; }
inline int64_t input_numel(const ConvGeom& g) { return int64_t(g.n) * g.c * g.h * g.w; }
inline int64_t weight_numel(const ConvGeom& g) { return int64_t(g.k) * g.c * g.r * g.s; }
inline int64_t output_numel(const ConvGeom& g) { return int64_t(g.n) * g.k * g.p() * g.q(); }

template <class T, class Forward>
void conv_forward(const Casts<T>& cast, Forward forward, const ConvGeom& g, const bf16* x,
                  const bf16* w, const T* bias_or_residual_t, const bf16* residual, bf16* y) {
  const std::vector<T> wx = cast.widened(x, input_numel(g));
  const std::vector<T> ww = cast.widened(w, weight_numel(g));
  const std::vector<T> wr = cast.widened(residual, output_numel(g));
  std::vector<T> wy(static_cast<size_t>(output_numel(g)));
  forward(g, wx.data(), ww.data(), residual ? wr.data() : bias_or_residual_t, wy.data());
  cast.round_into(wy, y, false);
}

template <class T, class Backward>
void conv_backward(const Casts<T>& cast, Backward backward, const ConvGeom& g, const bf16* x,
                   const bf16* w, const bf16* dy, bf16* dx, bool accumulate, bf16* dw, T* dbias) {
  const std::vector<T> wx = cast.widened(x, input_numel(g));
  const std::vector<T> ww = cast.widened(w, weight_numel(g));
  const std::vector<T> wdy = cast.widened(dy, output_numel(g));
  std::vector<T> wdx(static_cast<size_t>(dx ? input_numel(g) : 0));
  std::vector<T> wdw(static_cast<size_t>(weight_numel(g)), T(0));  // the weight pass adds
  backward(g, wx.data(), ww.data(), wdy.data(), dx ? wdx.data() : nullptr, false, wdw.data(),
           dbias);
  if (dx) cast.round_into(wdx, dx, accumulate);
  cast.round_into(wdw, dw, true);
}

template <class T, class Forward>
void forward_train(const Casts<T>& cast, Forward forward, const NormGeom& g, const bf16* x,
                   const T* gamma, const T* beta, T eps, T momentum, bf16* y, T* save_mean,
                   T* save_invstd, T* running_mean, T* running_var, int64_t* batches_tracked,
                   bool relu) {
  const std::vector<T> wx = cast.widened(x, numel(g));
  std::vector<T> wy(wx.size());
  forward(g, wx.data(), gamma, beta, eps, momentum, wy.data(), save_mean, save_invstd,
          running_mean, running_var, batches_tracked, relu);
  cast.round_into(wy, y, false);
}

template <class T, class Backward>
void backward_train(const Casts<T>& cast, Backward backward, const NormGeom& g, const bf16* x,
                    const bf16* dy, const T* gamma, const T* save_mean, const T* save_invstd,
                    bf16* dx, T* dgamma, T* dbeta, bool accumulate, const bf16* relu_out) {
  const int64_t n = numel(g);
  const std::vector<T> wx = cast.widened(x, n), wdy = cast.widened(dy, n);
  const std::vector<T> wout = cast.widened(relu_out, n);
  std::vector<T> wdx(static_cast<size_t>(n));
  backward(g, wx.data(), wdy.data(), gamma, save_mean, save_invstd, wdx.data(), dgamma, dbeta,
           false, relu_out ? wout.data() : nullptr);
  cast.round_into(wdx, dx, accumulate);
}

}  // namespace bf16_entries
}  // namespace kd

// The including namespace's casts, for the entries below.
#define KD_BF16_CASTS_ ::kd::bf16_entries::Casts<T>{&from_bf16<T>, &to_bf16<T>}

// The two table entries, in the including namespace, over its batchnorm_*_train<T>.
#define KD_BF16_BATCHNORM_ENTRIES                                                               \
  template <class T>                                                                            \
  void batchnorm_forward_train_bf16(const NormGeom& g, const bf16* x, const T* gamma,           \
                                    const T* beta, T eps, T momentum, bf16* y, T* save_mean,    \
                                    T* save_invstd, T* running_mean, T* running_var,            \
                                    int64_t* batches_tracked, bool relu) {                      \
    ::kd::bf16_entries::forward_train<T>(KD_BF16_CASTS_, &batchnorm_forward_train<T>, g, x,     \
                                         gamma, beta, eps, momentum, y, save_mean, save_invstd, \
                                         running_mean, running_var, batches_tracked, relu);     \
  }                                                                                             \
  template <class T>                                                                            \
  void batchnorm_backward_train_bf16(const NormGeom& g, const bf16* x, const bf16* dy,          \
                                     const T* gamma, const T* save_mean, const T* save_invstd,  \
                                     bf16* dx, T* dgamma, T* dbeta, bool accumulate,            \
                                     const bf16* relu_out) {                                    \
    ::kd::bf16_entries::backward_train<T>(KD_BF16_CASTS_, &batchnorm_backward_train<T>, g, x,   \
                                          dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, \
                                          accumulate, relu_out);                                \
  }

#define KD_BF16_CONV2D_ENTRIES                                                                  \
  template <class T>                                                                            \
  void conv2d_forward_bf16(const ConvGeom& g, const bf16* x, const bf16* w, const T* bias,      \
                           bf16* y) {                                                           \
    ::kd::bf16_entries::conv_forward<T>(KD_BF16_CASTS_, &conv2d_forward<T>, g, x, w, bias,      \
                                        nullptr, y);                                            \
  }                                                                                             \
  template <class T>                                                                            \
  void conv2d_forward_residual_bf16(const ConvGeom& g, const bf16* x, const bf16* w,            \
                                    const bf16* residual, bf16* y) {                            \
    ::kd::bf16_entries::conv_forward<T>(KD_BF16_CASTS_, &conv2d_forward_residual<T>, g, x, w,   \
                                        static_cast<const T*>(nullptr), residual, y);           \
  }                                                                                             \
  template <class T>                                                                            \
  void conv2d_backward_bf16(const ConvGeom& g, const bf16* x, const bf16* w, const bf16* dy,    \
                            bf16* dx, bool accumulate, bf16* dw, T* dbias) {                    \
    ::kd::bf16_entries::conv_backward<T>(KD_BF16_CASTS_, &conv2d_backward<T>, g, x, w, dy, dx,  \
                                         accumulate, dw, dbias);                                \
  }
