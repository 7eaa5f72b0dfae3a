// Contract: casts between the element type T (float or double) and bf16 storage (kernels/bf16.h),
// over flat arrays of length n; the bf16 precision's weight copies, activations and gradients.
//   to_bf16: y = bf16(x) (ASSIGN), or y = bf16(float(y) + x) with the sum formed in T when
//     accumulate (a second gradient into a bf16 gradient).
//   from_bf16: y = T(x) (ASSIGN, exact), or y += T(x) when accumulate.
//   to_bf16_multi / from_bf16_multi: tensor i (sizes[i] elements, any size 0 skipped) gets
//     to_bf16(sizes[i], xs[i], ys[i], false) / from_bf16(sizes[i], xs[i], ys[i], accumulate), for
//     a whole model's weight copies in one call: one launch on the GPU per kMultiTensorChunk
//     tensors (kernels/optimizer.h), where a call per tensor is a launch per tensor. The tensors
//     must not overlap.
// Every rounding is kernels/bf16.h's, so ref::, cpu:: and cuda:: give the same bytes.
#pragma once
#include <cstdint>

#include "kernels/bf16.h"
#include "kernels/kernel_list.h"

#define KD_CAST_KERNELS(X)                                                 \
  X(to_bf16, (int64_t n, const T* x, bf16* y, bool accumulate))            \
  X(from_bf16, (int64_t n, const bf16* x, T* y, bool accumulate))          \
  X(to_bf16_multi, (int count, const int64_t* sizes, const T* const* xs, bf16* const* ys)) \
  X(from_bf16_multi,                                                       \
    (int count, const int64_t* sizes, const bf16* const* xs, T* const* ys, bool accumulate))

namespace kd {
namespace ref {
KD_DECLARE_KERNELS(KD_CAST_KERNELS)
}
namespace cpu {
KD_DECLARE_KERNELS(KD_CAST_KERNELS)
}
namespace cuda {
KD_DECLARE_KERNELS(KD_CAST_KERNELS)
}
}  // namespace kd
