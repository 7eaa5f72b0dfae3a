// Contract: pooling over NCHW.
//   avg_pool2d / max_pool2d: window kh x kw, stride, zero padding `pad` (average counts the padded
//   zeros, PyTorch's count_include_pad=True; max ignores padding). y [n, c, p, q] with
//   p = (h + 2*pad - kh) / stride + 1.
//   max_pool2d_forward also writes argmax[n*c*p*q]: the flat index (ih*w + iw) inside the input
//   plane of the winning element (first maximum wins), used by the backward.
//   global_avg_pool: x [n, c, h, w] -> y [n, c].
// Forward ASSIGNS; backward ACCUMULATES into dx.
#pragma once
#include "kernels/kernel_list.h"
#include <cstdint>

#include "base/check.h"

namespace kd {

struct PoolGeom {
  int n = 0, c = 0, h = 0, w = 0;
  int kh = 2, kw = 2, stride = 2, pad = 0;
  int p() const { return (h + 2 * pad - kh) / stride + 1; }
  int q() const { return (w + 2 * pad - kw) / stride + 1; }
};

namespace detail {
// The geometry every pool kernel (CPU and CUDA) accepts: windows always overlap the input.
inline void check_pool_geom(const PoolGeom& g, const char* op) {
  KD_CHECK(g.n >= 0 && g.c >= 0 && g.h > 0 && g.w > 0 && g.kh > 0 && g.kw > 0 && g.stride > 0,
           op << ": bad geometry n=" << g.n << " c=" << g.c << " " << g.h << "x" << g.w
              << " window " << g.kh << "x" << g.kw << " stride " << g.stride);
  KD_CHECK(
      g.pad >= 0 && 2 * g.pad <= g.kh && 2 * g.pad <= g.kw,
      op << ": padding " << g.pad << " must be at most half the window " << g.kh << "x" << g.kw);
  KD_CHECK(g.h + 2 * g.pad >= g.kh && g.w + 2 * g.pad >= g.kw,
           op << ": window " << g.kh << "x" << g.kw << " larger than padded input " << g.h << "x"
              << g.w << " (pad " << g.pad << ")");
}
inline void check_global_pool(int n, int c, int hw) {
  KD_CHECK(n >= 0 && c >= 0 && hw > 0,
           "global_avg_pool: bad shape n=" << n << " c=" << c << " hw=" << hw);
}
}  // namespace detail

#define KD_POOL_KERNELS(X)                                                            \
  X(avg_pool2d_forward, (const PoolGeom& g, const T* x, T* y))                            \
  X(avg_pool2d_backward, (const PoolGeom& g, const T* dy, T* dx))                         \
  X(max_pool2d_forward, (const PoolGeom& g, const T* x, T* y, int32_t* argmax))           \
  X(max_pool2d_backward, (const PoolGeom& g, const T* dy, const int32_t* argmax, T* dx))  \
  X(global_avg_pool_forward, (int n, int c, int hw, const T* x, T* y))                    \
  X(global_avg_pool_backward, (int n, int c, int hw, const T* dy, T* dx))

namespace ref {
KD_DECLARE_KERNELS(KD_POOL_KERNELS)
}
namespace cpu {
KD_DECLARE_KERNELS(KD_POOL_KERNELS)
}
namespace cuda {  // device pointers, compute stream
KD_DECLARE_KERNELS(KD_POOL_KERNELS)
}

}  // namespace kd
