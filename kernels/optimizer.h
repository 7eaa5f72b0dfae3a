// Contract: in-place optimizer updates on flat parameter arrays (exactly PyTorch's formulas).
// sgd_update (torch.optim.SGD, dampening 0):
//   g = grad + weight_decay * param
//   if momentum != 0: buf = first_step ? g : momentum * buf + g
//                     g = nesterov ? g + momentum * buf : buf
//   param -= lr * g
// adam_update (torch.optim.Adam, L2 weight decay, not AdamW), step counts from 1:
//   g = grad + weight_decay * param
//   m = beta1 * m + (1 - beta1) * g ; v = beta2 * v + (1 - beta2) * g^2
//   param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// grad is read only. Elementwise: no cross-element reduction, thread count never matters.
#pragma once
#include <cstdint>

namespace kd {

struct SgdParams {
  double lr = 0.1, momentum = 0.0, weight_decay = 0.0;
  bool nesterov = false;
};
struct AdamParams {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

#define KD_OPTIM_DECLS                                                                     \
  template <class T>                                                                       \
  void sgd_update(int64_t n, const SgdParams& h, bool first_step, T* param, const T* grad, \
                  T* momentum_buf);                                                        \
  template <class T>                                                                       \
  void adam_update(int64_t n, const AdamParams& h, int64_t step, T* param, const T* grad,  \
                   T* m, T* v);

namespace ref {
KD_OPTIM_DECLS
}
namespace cpu {
KD_OPTIM_DECLS
}
namespace cuda {  // device pointers, compute stream
KD_OPTIM_DECLS
}
#undef KD_OPTIM_DECLS

namespace cuda {
// Fused multi-tensor updates: every tensor of the list in a few launches (tensors are packed
// into launches of up to kMultiTensorChunk). Host arrays of `count` device pointers and sizes;
// same formulas as above, element for element.
constexpr int kMultiTensorChunk = 32;
template <class T>
void sgd_update_multi(int count, const int64_t* sizes, T* const* params, const T* const* grads,
                      T* const* momentum_bufs, const SgdParams& h, bool first_step);
template <class T>
void adam_update_multi(int count, const int64_t* sizes, T* const* params, const T* const* grads,
                       T* const* m, T* const* v, const AdamParams& h, int64_t step);
}  // namespace cuda

}  // namespace kd
