// Contract: batch normalization and group normalization over NCHW (hw = h*w).
// batchnorm_forward_train: per channel c, mean and biased variance over (n, hw);
//   y = (x - mean) * invstd * gamma + beta, invstd = 1/sqrt(var + eps). Writes save_mean[c] and
//   save_invstd[c] for the backward. If running_mean/running_var are non-null they are updated as
//   PyTorch does: r = (1 - momentum) * r + momentum * stat, using the UNBIASED variance
//   (var * m / (m - 1), m = n*hw) for running_var. A non-null batches_tracked (the layer's
//   num_batches_tracked, device memory on a GPU) is incremented by one in the same call, so a
//   training step spends no launch of its own per layer on that count.
//   With relu, y = max(that, 0) (NaN kept, as relu_forward): batchnorm and ReLU in one pass.
// batchnorm_forward_eval: uses running statistics.
// batchnorm_backward_train: the full batch-statistics gradient; dx is ASSIGNED when !accumulate.
//   With relu_out (the fused forward's y), dy is first masked by relu_out > 0: the ReLU's
//   backward in the same passes. cuDNN's takes no relu_out (the op masks dy for it).
//   batchnorm_backward_eval: the
//   gradient through fixed running statistics.
// group norm: channels split into `groups` groups; statistics per (sample, group) over
//   (c/groups, hw); affine gamma/beta per channel. save_mean/save_invstd have n*groups entries.
// batchnorm_{forward,backward}_train_bf16: the same two kernels with the activations (x, y, dy,
//   relu_out, dx) stored in bf16 (kernels/bf16.h) and everything else in T: bit for bit the T
//   kernel of the same table on the widened activations, each output rounded once (a bf16 dx
//   accumulated: bf16(T(dx) + the T kernel's dx)). --precision bf16's batch norm, one pass over
//   bf16 memory on the GPU; the CPU tables compose widen, T kernel, round.
// Forward ASSIGNS y and the saved statistics; backward ACCUMULATES into dx, dgamma, dbeta.
// Statistics are accumulated in double on the CPU, per channel in a fixed order.
#pragma once
#include <cstdint>

#include "kernels/bf16.h"
#include "kernels/kernel_list.h"

namespace kd {

struct NormGeom {
  int n = 0, c = 0, hw = 0;
  int groups = 1;  // group norm only
};

// The three batchnorm kernels cuDNN also provides (kernels/cudnn/batchnorm.cu).
#define KD_BATCHNORM_KERNELS(X)                                                                 \
  X(batchnorm_forward_train, (const NormGeom& g, const T* x, const T* gamma, const T* beta,      \
                              T eps, T momentum, T* y, T* save_mean, T* save_invstd,             \
                              T* running_mean, T* running_var, int64_t* batches_tracked,        \
                              bool relu))                                                        \
  X(batchnorm_forward_eval, (const NormGeom& g, const T* x, const T* gamma, const T* beta,       \
                             const T* running_mean, const T* running_var, T eps, T* y))          \
  X(batchnorm_backward_train, (const NormGeom& g, const T* x, const T* dy, const T* gamma,      \
                               const T* save_mean, const T* save_invstd, T* dx, T* dgamma,       \
                               T* dbeta, bool accumulate, const T* relu_out))
#define KD_NORM_KERNELS(X)                                                                      \
  KD_BATCHNORM_KERNELS(X)                                                                       \
  X(batchnorm_forward_train_bf16, (const NormGeom& g, const bf16* x, const T* gamma,             \
                                   const T* beta, T eps, T momentum, bf16* y, T* save_mean,      \
                                   T* save_invstd, T* running_mean, T* running_var,              \
                                   int64_t* batches_tracked, bool relu))                         \
  X(batchnorm_backward_train_bf16, (const NormGeom& g, const bf16* x, const bf16* dy,            \
                                    const T* gamma, const T* save_mean, const T* save_invstd,    \
                                    bf16* dx, T* dgamma, T* dbeta, bool accumulate,              \
                                    const bf16* relu_out))                                       \
  X(batchnorm_backward_eval, (const NormGeom& g, const T* x, const T* dy, const T* gamma,       \
                              const T* running_mean, const T* running_var, T eps, T* dx,         \
                              T* dgamma, T* dbeta))                                              \
  X(groupnorm_forward, (const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps,    \
                        T* y, T* save_mean, T* save_invstd))                                     \
  X(groupnorm_backward, (const NormGeom& g, const T* x, const T* dy, const T* gamma,            \
                         const T* save_mean, const T* save_invstd, T* dx, T* dgamma, T* dbeta))

namespace ref {
KD_DECLARE_KERNELS(KD_NORM_KERNELS)
}
namespace cpu {
KD_DECLARE_KERNELS(KD_NORM_KERNELS)
}
namespace cuda {
KD_DECLARE_KERNELS(KD_NORM_KERNELS)
}
namespace cudnn {
KD_DECLARE_KERNELS(KD_BATCHNORM_KERNELS)
}

}  // namespace kd
