// Contract: elementwise maps over flat arrays of length n.
//   relu_forward: y = max(x, 0) (ASSIGN). relu_backward: dx += dy * (y > 0) (ACCUMULATE; y is the
//   forward output). add_forward: y = a + b (ASSIGN). accumulate: dst += alpha * src.
//   fill: dst = value. scale: dst *= alpha.
// cpu:: versions split the range into fixed chunks over threads; results never depend on the
// thread count because no element is reduced across chunks.
#pragma once
#include <cstdint>

namespace kd {

#define KD_ELEMENTWISE_DECLS                                                  \
  template <class T>                                                          \
  void relu_forward(int64_t n, const T* x, T* y);                             \
  template <class T>                                                          \
  void relu_backward(int64_t n, const T* y, const T* dy, T* dx);              \
  template <class T>                                                          \
  void add_forward(int64_t n, const T* a, const T* b, T* y);                  \
  template <class T>                                                          \
  void accumulate(int64_t n, T alpha, const T* src, T* dst);                  \
  template <class T>                                                          \
  void fill(int64_t n, T value, T* dst);                                      \
  template <class T>                                                          \
  void scale(int64_t n, T alpha, T* dst);

namespace ref {
KD_ELEMENTWISE_DECLS
}
namespace cpu {
KD_ELEMENTWISE_DECLS
}
namespace cuda {  // device pointers, compute stream
KD_ELEMENTWISE_DECLS
}
#undef KD_ELEMENTWISE_DECLS

// *counter += delta on one int64 (BatchNorm's num_batches_tracked): a device-side increment, so
// a training step on the GPU does not copy the counter to the host and back.
namespace cpu {
void counter_add(int64_t* counter, int64_t delta);
}
namespace cuda {
void counter_add(int64_t* counter, int64_t delta);
}

}  // namespace kd
