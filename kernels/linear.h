// Contract: fully connected layer, PyTorch layout.
//   x [b, in]   w [out, in]   bias [out] or null   y [b, out] = x w^T + bias
// Forward ASSIGNS y. Backward ACCUMULATES: dx += dy w ; dw += dy^T x ; dbias += sum_b dy.
#pragma once
#include "kernels/kernel_list.h"

namespace kd {

struct LinearGeom {
  int batch = 0, in = 0, out = 0;
};

#define KD_LINEAR_KERNELS(X)                                                      \
  X(linear_forward, (const LinearGeom& g, const T* x, const T* w, const T* bias, T* y)) \
  X(linear_backward_data, (const LinearGeom& g, const T* dy, const T* w, T* dx))       \
  X(linear_backward_weight, (const LinearGeom& g, const T* x, const T* dy, T* dw, T* dbias))

namespace ref {
KD_DECLARE_KERNELS(KD_LINEAR_KERNELS)
}
namespace cpu {
KD_DECLARE_KERNELS(KD_LINEAR_KERNELS)
}
namespace cuda {
KD_DECLARE_KERNELS(KD_LINEAR_KERNELS)
}

}  // namespace kd
