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
#include <cstdint>

namespace kd {

enum class DistillKind { kForwardCE, kKL, kReverseCE, kSymmetricKL, kBrier, kHardCE };

#define KD_LOSS_DECLS                                                                          \
  template <class T>                                                                           \
  void log_softmax_forward(int rows, int cols, const T* x, T* y);                              \
  template <class T>                                                                           \
  void log_softmax_backward(int rows, int cols, const T* y, const T* dy, T* dx);               \
  template <class T>                                                                           \
  T cross_entropy_forward(int rows, int cols, const T* x, const int32_t* labels);              \
  template <class T>                                                                           \
  void cross_entropy_backward(int rows, int cols, const T* x, const int32_t* labels, T dloss,  \
                              T* dx);                                                          \
  template <class T>                                                                           \
  T distill_loss_forward(DistillKind kind, int rows, int cols, const T* teacher,               \
                         const T* student, T tau);                                             \
  template <class T>                                                                           \
  void distill_loss_backward(DistillKind kind, int rows, int cols, const T* teacher,           \
                             const T* student, T tau, T dloss, T* dstudent);                   \
  template <class T>                                                                           \
  void ensemble_reduce_forward(int members, int rows, int cols, const T* x, T* y);             \
  template <class T>                                                                           \
  void ensemble_reduce_backward(int members, int rows, int cols, const T* x, const T* y,       \
                                const T* dy, T* dx);

namespace ref {
KD_LOSS_DECLS
}
namespace cpu {
KD_LOSS_DECLS
}
#undef KD_LOSS_DECLS

// Device pointers on the compute stream. The loss value stays on the device (`loss`, a one-element
// array, ASSIGNED) and the backward reads the upstream scalar from the device (`dloss`), so a
// training step never waits for the host. Means over rows are reduced in one block in a fixed
// order: bitwise reproducible, no atomics.
namespace cuda {
template <class T>
void log_softmax_forward(int rows, int cols, const T* x, T* y);
template <class T>
void log_softmax_backward(int rows, int cols, const T* y, const T* dy, T* dx);
template <class T>
void cross_entropy_forward(int rows, int cols, const T* x, const int32_t* labels, T* loss);
template <class T>
void cross_entropy_backward(int rows, int cols, const T* x, const int32_t* labels,
                            const T* dloss, T* dx);
template <class T>
void distill_loss_forward(DistillKind kind, int rows, int cols, const T* teacher,
                          const T* student, T tau, T* loss);
template <class T>
void distill_loss_backward(DistillKind kind, int rows, int cols, const T* teacher,
                           const T* student, T tau, const T* dloss, T* dstudent);
template <class T>
void ensemble_reduce_forward(int members, int rows, int cols, const T* x, T* y);
template <class T>
void ensemble_reduce_backward(int members, int rows, int cols, const T* x, const T* y,
                              const T* dy, T* dx);
}  // namespace cuda

}  // namespace kd
