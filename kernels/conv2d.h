// Contract: 2-D convolution (cross-correlation, as PyTorch), NCHW activations, OIHW weights.
//   x  [n, c, h, w]   w [k, c, r, s]   bias [k] or null   y [n, k, p, q]
//   p = (h + 2*pad - r) / stride + 1,  q = (w + 2*pad - s) / stride + 1
// Forward ASSIGNS y. conv2d_forward_residual ASSIGNS y = conv(x, w) + residual (no bias; residual
// [n, k, p, q], never y itself), rounded exactly as conv2d_forward then add_forward: a residual
// block's last convolution and its shortcut add in one pass, where a backend can fuse them.
// Backward kernels ACCUMULATE (+=) into dx, dw and dbias (dbias may be null),
// except that backward data ASSIGNS every element of dx when `accumulate` is false (dx may then
// hold anything, NaN included, and is never read).
// conv2d_backward is both backward passes in one call, exactly as conv2d_backward_data (skipped
// when dx is null) then conv2d_backward_weight, bit for bit: the form a backend can issue as one
// launch (ours on the GPU); the others run the two passes (KD_CONV2D_BACKWARD_AS_TWO_PASSES).
// ref:: is the plain loop, kept as the specification; cpu:: is im2col + BLAS GEMM.
// The _bf16 entries (--precision bf16): x, w, residual, y, dy, dx and dw stored in bf16, bias
// and dbias in T. Each is bit for bit its T entry of the same table on the widened operands,
// each output rounded once: y = bf16(T result); an accumulated dx or dw = bf16(T(old) + the T
// kernel's contribution), dx assigned when !accumulate as above. Not cuDNN's; on our GPU kernels
// they are the FMA form (TF32 applies to T only) on the implicit GEMM for every shape (no cuBLAS
// route for 1x1): the op takes them where those are the T kernels it would run.
#pragma once
#include "kernels/bf16.h"
#include "kernels/kernel_list.h"
#include <cstdint>

#include "base/check.h"

namespace kd {

struct ConvGeom {
  int n = 0, c = 0, h = 0, w = 0;  // input
  int k = 0, r = 0, s = 0;         // k filters of r x s
  int stride = 1, pad = 0;
  int p() const { return (h + 2 * pad - r) / stride + 1; }
  int q() const { return (w + 2 * pad - s) / stride + 1; }
};

namespace detail {
// The geometry every convolution kernel accepts (ref, cpu, cuda, cudnn).
inline void check_conv_geom(const ConvGeom& g) {
  KD_CHECK(g.n >= 0 && g.c > 0 && g.k > 0 && g.r > 0 && g.s > 0 && g.stride > 0 && g.pad >= 0,
           "conv2d: bad geometry n=" << g.n << " c=" << g.c << " k=" << g.k << " r=" << g.r
                                     << " s=" << g.s << " stride=" << g.stride << " pad=" << g.pad);
  KD_CHECK(g.h + 2 * g.pad >= g.r && g.w + 2 * g.pad >= g.s,
           "conv2d: filter " << g.r << "x" << g.s << " larger than padded input " << g.h << "x"
                             << g.w << " (pad " << g.pad << ")");
}
}  // namespace detail

#define KD_CONV2D_KERNELS(X)                                                     \
  X(conv2d_forward, (const ConvGeom& g, const T* x, const T* w, const T* bias, T* y)) \
  X(conv2d_forward_residual, (const ConvGeom& g, const T* x, const T* w, const T* residual, T* y)) \
  X(conv2d_backward_data, (const ConvGeom& g, const T* dy, const T* w, T* dx, bool accumulate)) \
  X(conv2d_backward_weight, (const ConvGeom& g, const T* x, const T* dy, T* dw, T* dbias)) \
  X(conv2d_backward, (const ConvGeom& g, const T* x, const T* w, const T* dy, T* dx,           \
                      bool accumulate, T* dw, T* dbias))

#define KD_CONV2D_BF16_KERNELS(X)                                                               \
  X(conv2d_forward_bf16, (const ConvGeom& g, const bf16* x, const bf16* w, const T* bias,       \
                          bf16* y))                                                             \
  X(conv2d_forward_residual_bf16, (const ConvGeom& g, const bf16* x, const bf16* w,             \
                                   const bf16* residual, bf16* y))                              \
  X(conv2d_backward_bf16, (const ConvGeom& g, const bf16* x, const bf16* w, const bf16* dy,     \
                           bf16* dx, bool accumulate, bf16* dw, T* dbias))
// Every convolution entry of our own backends (cuDNN's table has KD_CONV2D_KERNELS only).
#define KD_CONV2D_ALL_KERNELS(X) KD_CONV2D_KERNELS(X) KD_CONV2D_BF16_KERNELS(X)

// Defines conv2d_backward in the enclosing kernel namespace as its two passes, for the backends
// whose passes are separate launches (or no launches) anyway.
#define KD_CONV2D_BACKWARD_AS_TWO_PASSES                                                   \
  template <class T>                                                                       \
  void conv2d_backward(const ConvGeom& g, const T* x, const T* w, const T* dy, T* dx,      \
                       bool accumulate, T* dw, T* dbias) {                                 \
    if (dx) conv2d_backward_data<T>(g, dy, w, dx, accumulate);                             \
    conv2d_backward_weight<T>(g, x, dy, dw, dbias);                                        \
  }

namespace ref {
KD_DECLARE_KERNELS(KD_CONV2D_ALL_KERNELS)
}
namespace cpu {
KD_DECLARE_KERNELS(KD_CONV2D_ALL_KERNELS)

// The algorithm of cpu:: float convolutions. Auto: 3x3 stride-1 pad-1 ones whose channel counts are
// multiples of 8 by Winograd F(4x4, 3x3) (kernels/cpu/conv2d_winograd.h), stride-1 ones with at
// most 16 filters by a direct convolution (kernels/cpu/conv2d_direct.h), the rest by im2col + GEMM.
// Gemm: im2col + GEMM always, as double. Process-wide; the engine sets it from --cpu-conv.
enum class ConvAlgorithm { Auto, Gemm };
void set_conv_algorithm(ConvAlgorithm algorithm);
ConvAlgorithm conv_algorithm();
}
namespace cuda {
KD_DECLARE_KERNELS(KD_CONV2D_ALL_KERNELS)

// dbias[k] += the sum over images and positions of dy[img, k, :] (ACCUMULATE; one block per
// channel, a fixed order per thread and a fixed tree): the bias gradient of our convolution and
// of the cuDNN path, which has no such call of its own (kernels/cudnn/conv2d.cu).
template <class T>
void conv2d_bias_grad(const ConvGeom& g, const T* dy, T* dbias);
}
namespace cudnn {
KD_DECLARE_KERNELS(KD_CONV2D_KERNELS)
}

}  // namespace kd
