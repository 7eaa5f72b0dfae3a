// Contract: elementwise maps over flat arrays of length n.
//   relu_forward: y = max(x, 0) (ASSIGN). relu_backward: dx (+)= dy * (y > 0) (ACCUMULATE, or ASSIGN when !accumulate; y is the
//   forward output). add_forward: y = a + b (ASSIGN). accumulate: dst += alpha * src.
//   fill: dst = value. scale: dst *= alpha.
//   dropout_forward: y = x * (keep(i) ? scale : 0) (ASSIGN). dropout_backward:
//   dx += dy * (keep(i) ? scale : 0) (ACCUMULATE). keep(i) is dropout_keeps(mask, i) below: a pure
//   function of the key and the element index, so the backward regenerates the forward's mask
//   instead of storing it, and every device draws the same one. A product, not a select, as
//   PyTorch's `x * mask`: a NaN or inf that is dropped still gives NaN.
// cpu:: versions split the range into fixed chunks over threads; results never depend on the
// thread count because no element is reduced across chunks.
#pragma once
#include <cstdint>

#include "base/philox.h"
#include "kernels/kernel_list.h"

namespace kd {

// Which dropout draw: the model's seed, the training step, the dropout layer inside the model.
struct DropoutKey {
  uint64_t seed = 0;
  uint64_t step = 0;
  uint32_t layer = 0;
};

// A key and the drop probability as an integer threshold: element i is kept when its 32-bit
// Philox word is >= keep_threshold (probability 1 - keep_threshold / 2^32). Comparing integers
// makes the decision exact and identical on every device (no float rounding of p).
struct DropoutMask {
  DropoutKey key;
  uint32_t keep_threshold = 0;
};

// Philox layout: key = seed; stream = kStreamDropout | layer << 32; counter = step << 32 | i / 4,
// and element i takes word i % 4 of that block, so one block serves four elements. Distinct for
// step < 2^32 and n <= 2^34 (ops::dropout checks both).
constexpr int64_t kDropoutMaxElements = int64_t(1) << 34;
constexpr uint64_t kDropoutMaxStep = uint64_t(1) << 32;

KD_HOST_DEVICE inline Philox4 dropout_block(const DropoutMask& m, int64_t group) {
  return philox4x32(m.key.seed, uint64_t(kStreamDropout) | (uint64_t(m.key.layer) << 32),
                    (m.key.step << 32) | uint64_t(group));
}

// The specification of keep(i); fast paths take whole blocks from dropout_block instead.
KD_HOST_DEVICE inline bool dropout_keeps(const DropoutMask& m, int64_t i) {
  return dropout_block(m, i >> 2).v[i & 3] >= m.keep_threshold;
}

// p in [0, 1) -> the threshold round(p * 2^32), at most 2^32 - 1 (so something is always kept).
inline uint32_t dropout_threshold(double p) {
  const double t = p * 4294967296.0 + 0.5;
  return t >= 4294967295.0 ? 4294967295u : t <= 0 ? 0u : static_cast<uint32_t>(t);
}

#define KD_ELEMENTWISE_KERNELS(X)                                                            \
  X(relu_forward, (int64_t n, const T* x, T* y))                                             \
  X(relu_backward, (int64_t n, const T* y, const T* dy, T* dx, bool accumulate))             \
  X(add_forward, (int64_t n, const T* a, const T* b, T* y))                                  \
  X(accumulate, (int64_t n, T alpha, const T* src, T* dst))                                  \
  X(fill, (int64_t n, T value, T* dst))                                                      \
  X(scale, (int64_t n, T alpha, T* dst))                                                     \
  X(dropout_forward, (int64_t n, const DropoutMask& mask, T scale, const T* x, T* y))        \
  X(dropout_backward, (int64_t n, const DropoutMask& mask, T scale, const T* dy, T* dx))

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

// relu_forward (ASSIGN; x may be y) and, when counter is not null, *counter += 1, in one launch:
// what cuDNN's batch norm has neither of, issued after it (kernels/cudnn/batchnorm.cu). Its CPU
// twin is relu_forward then counter_add; tests/test_cuda_cudnn.cpp holds the cuDNN batch norm
// that runs it to ref:: and the count.
namespace cuda {
template <class T>
void relu_forward_and_count(int64_t n, const T* x, T* y, int64_t* counter);
}

}  // namespace kd
