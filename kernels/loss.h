// Contract: softmax-family ops and losses on row-major [rows, cols] logits.
// Forward ASSIGNS; backward ACCUMULATES into the gradient array, scaled by the upstream scalar
// `dloss` (the gradient of the final objective with respect to the returned mean loss).
//
// log_softmax_forward: y = x - logsumexp(x) per row.
// log_softmax_backward: dx += dy - exp(y) * sum_j dy_j  (y is the forward output).
// cross_entropy: mean over rows of -log softmax(x)[label]; labels in [0, cols).
//   backward: dx += dloss / rows * (softmax(x) - onehot(label)).
//
// Distillation losses (paper-notes §1), p = softmax(teacher / tau), q = softmax(student / tau),
// means over rows:
//   kForwardCE   -tau^2 * sum_j p_j log q_j              (Hinton soft cross-entropy; the default)
//   kKL          sum_j p_j (log p_j - log q_j)           (no tau^2)
//   kReverseCE   -tau^2 * sum_j q_j log p_j
//   kSymmetricKL KL(p||q) + KL(q||p)                     (no tau^2)
//   kBrier       mean over rows AND classes of (q_j - p_j)^2   (no tau^2)
//   kHardCE      -tau^2 * log q_yhat, yhat = argmax teacher (first maximum)
// Gradients flow to the student logits only; the teacher is a constant.
//
// ensemble_reduce: members holds m blocks of [rows, cols] logits (member-major);
//   y = log( (1/m) sum_i softmax(members_i) ), the log of the mean of member probabilities.
//   backward: dmembers += d y / d members applied to dy.
#pragma once
#include "kernels/kernel_list.h"
#include <cstdint>

namespace kd {

enum class DistillKind { kForwardCE, kKL, kReverseCE, kSymmetricKL, kBrier, kHardCE };

// The host implementations compute a loss as a returned double-accumulated value
// (`cross_entropy_value`, `distill_loss_value`, in their own namespace); this defines the
// contract's one-element form around them, in the namespace where it is expanded.
#define KD_LOSS_FORWARDS_FROM_VALUES                                                           \
  template <class T>                                                                           \
  void cross_entropy_forward(int rows, int cols, const T* x, const int32_t* labels, T* loss) { \
    *loss = cross_entropy_value(rows, cols, x, labels);                                        \
  }                                                                                            \
  template <class T>                                                                           \
  void distill_loss_forward(DistillKind kind, int rows, int cols, const T* teacher,            \
                            const T* student, T tau, T* loss) {                                \
    *loss = distill_loss_value(kind, rows, cols, teacher, student, tau);                       \
  }

// The loss value is ASSIGNED to `loss` (one element) and the backward reads the upstream scalar
// from `dloss` (one element), on every device alike: on the GPU both stay in device memory, so a
// training step never waits for the host. Means over rows are reduced in a fixed order (on the
// GPU in one block): bitwise reproducible, no atomics.
#define KD_LOSS_KERNELS(X)                                                                    \
  X(log_softmax_forward, (int rows, int cols, const T* x, T* y))                              \
  X(log_softmax_backward, (int rows, int cols, const T* y, const T* dy, T* dx))               \
  X(cross_entropy_forward, (int rows, int cols, const T* x, const int32_t* labels, T* loss))  \
  X(cross_entropy_backward, (int rows, int cols, const T* x, const int32_t* labels,           \
                             const T* dloss, T* dx))                                          \
  X(distill_loss_forward, (DistillKind kind, int rows, int cols, const T* teacher,            \
                           const T* student, T tau, T* loss))                                 \
  X(distill_loss_backward, (DistillKind kind, int rows, int cols, const T* teacher,           \
                            const T* student, T tau, const T* dloss, T* dstudent))            \
  X(ensemble_reduce_forward, (int members, int rows, int cols, const T* x, T* y))             \
  X(ensemble_reduce_backward, (int members, int rows, int cols, const T* x, const T* y,       \
                               const T* dy, T* dx))

namespace ref {
KD_DECLARE_KERNELS(KD_LOSS_KERNELS)
}
namespace cpu {
KD_DECLARE_KERNELS(KD_LOSS_KERNELS)
}
namespace cuda {  // device pointers, compute stream
KD_DECLARE_KERNELS(KD_LOSS_KERNELS)
}

}  // namespace kd
