// Contract: elementwise maps over flat arrays of length n.
//   relu_forward: y = max(x, 0) (ASSIGN). relu_backward: dx += dy * (y > 0) (ACCUMULATE; y is the
//   forward output). add_forward: y = a + b (ASSIGN). accumulate: dst += alpha * src.
//   fill: dst = value. scale: dst *= alpha.
// cpu:: versions split the range into fixed chunks over threads; results never depend on the
// thread count because no element is reduced across chunks.
#pragma once
#include <cstdint>

#include "kernels/kernel_list.h"

namespace kd {

#define KD_ELEMENTWISE_KERNELS(X)                         \
  X(relu_forward, (int64_t n, const T* x, T* y))          \
  X(relu_backward, (int64_t n, const T* y, const T* dy, T* dx)) \
  X(add_forward, (int64_t n, const T* a, const T* b, T* y)) \
  X(accumulate, (int64_t n, T alpha, const T* src, T* dst)) \
  X(fill, (int64_t n, T value, T* dst))                   \
  X(scale, (int64_t n, T alpha, T* dst))

namespace ref {
KD_DECLARE_KERNELS(KD_ELEMENTWISE_KERNELS)
}
namespace cpu {
KD_DECLARE_KERNELS(KD_ELEMENTWISE_KERNELS)
}
namespace cuda {  // device pointers, compute stream
KD_DECLARE_KERNELS(KD_ELEMENTWISE_KERNELS)
}

// *counter += delta on one int64 (BatchNorm's num_batches_tracked): a device-side increment, so
// a training step on the GPU does not copy the counter to the host and back.
namespace cpu {
void counter_add(int64_t* counter, int64_t delta);
}
namespace cuda {
void counter_add(int64_t* counter, int64_t delta);
}

}  // namespace kd
