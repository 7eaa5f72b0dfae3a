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
#include "kernels/kernel_list.h"
#include <cstdint>

namespace kd {

struct SgdParams {
  double lr = 0.1, momentum = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  // When set, the learning rate is read from here (memory of the update's device) when the update
  // runs, and lr is ignored: a CUDA graph that captured the update replays it with each new value.
  const double* lr_device = nullptr;
};
struct AdamParams {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  // Memory of the update's device, for a CUDA graph that captured the update (as lr_device above).
  // lr_device: lr is read from here when the update runs. step_device: the step is read from
  // here (the step argument is ignored); the caller advances it on the device (Backend::
  // counter_add) before each update, so each replay reads its own count.
  const double* lr_device = nullptr;
  const int64_t* step_device = nullptr;
};

#define KD_OPTIM_KERNELS(X)                                                            \
  X(sgd_update, (int64_t n, const SgdParams& h, bool first_step, T* param, const T* grad, \
                 T* momentum_buf))                                                      \
  X(adam_update, (int64_t n, const AdamParams& h, int64_t step, T* param, const T* grad,  \
                  T* m, T* v))

// Multi-tensor updates: `count` tensors in one call (host arrays of pointers and sizes), same
// formulas as above, element for element. The GPU packs them into launches of up to
// kMultiTensorChunk tensors; the CPU runs the single-tensor kernel on each in turn.
#define KD_OPTIM_MULTI_KERNELS(X)                                                           \
  X(sgd_update_multi, (int count, const int64_t* sizes, T* const* params,                   \
                       const T* const* grads, T* const* momentum_bufs, const SgdParams& h,  \
                       bool first_step))                                                    \
  X(adam_update_multi, (int count, const int64_t* sizes, T* const* params,                  \
                        const T* const* grads, T* const* m, T* const* v, const AdamParams& h, \
                        int64_t step))

namespace ref {
KD_DECLARE_KERNELS(KD_OPTIM_KERNELS)
}
namespace cpu {
KD_DECLARE_KERNELS(KD_OPTIM_KERNELS)
KD_DECLARE_KERNELS(KD_OPTIM_MULTI_KERNELS)
}
namespace cuda {  // device pointers, compute stream
KD_DECLARE_KERNELS(KD_OPTIM_KERNELS)
KD_DECLARE_KERNELS(KD_OPTIM_MULTI_KERNELS)
constexpr int kMultiTensorChunk = 512;  // tensors per launch (kernels/cuda/optimizer.cu)
}  // namespace cuda

}  // namespace kd
