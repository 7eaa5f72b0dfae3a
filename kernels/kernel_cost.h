// The cost model of every kernel contract: for one call, the floating-point operations it does
// and the bytes it must read and write, from its arguments alone (the same on every backend).
// `kdlab bench` sums these per training step (engine/cost_model.h) and turns them into the ideal
// time at a GPU's peak compute and bandwidth.
//
// Counting rules, kept the same for every kernel so that changes can be compared:
// - bytes: each operand the contract reads is read once and each one it writes is written once,
//   at its element size; an operand the contract ACCUMULATES into (+=) is read and written. A
//   kernel whose algorithm needs a second pass over an operand (batchnorm's statistics before
//   the normalisation) counts that pass, since no implementation can avoid it once the operand
//   is larger than the caches. Null optional operands cost nothing.
// - flops: multiply-adds count 2; elementwise arithmetic counts its operations per element,
//   transcendentals (exp, log, sqrt) count 1. Convolutions count 2*n*k*p*q*c*r*s per pass, as
//   cuDNN and PyTorch's profiler do.
// Every kernel in a KD_*_KERNELS list needs an overload here: a missing one fails to compile
// where engine/cost_model.cpp wraps the table.
#pragma once
#include <cstdint>

#include "kernels/cast.h"
#include "kernels/conv2d.h"
#include "kernels/elementwise.h"
#include "kernels/linear.h"
#include "kernels/loss.h"
#include "kernels/metrics.h"
#include "kernels/normalization.h"
#include "kernels/optimizer.h"
#include "kernels/pool.h"

namespace kd {

struct KernelCost {
  double flops = 0, bytes_read = 0, bytes_written = 0;
  KernelCost& operator+=(const KernelCost& o) {  // the cost of two calls, or of two parts
    flops += o.flops, bytes_read += o.bytes_read, bytes_written += o.bytes_written;
    return *this;
  }
};

// One empty tag type per kernel, named as the kernel, with its name as a string.
namespace kernel_tag {
#define KD_KERNEL_TAG_(kernel, params) \
  struct kernel {                      \
    static constexpr const char* name = #kernel; \
  };
KD_ELEMENTWISE_KERNELS(KD_KERNEL_TAG_)
KD_CAST_KERNELS(KD_KERNEL_TAG_)
KD_CONV2D_ALL_KERNELS(KD_KERNEL_TAG_)
KD_LINEAR_KERNELS(KD_KERNEL_TAG_)
KD_POOL_KERNELS(KD_KERNEL_TAG_)
KD_NORM_KERNELS(KD_KERNEL_TAG_)
KD_LOSS_KERNELS(KD_KERNEL_TAG_)
KD_METRICS_KERNELS(KD_KERNEL_TAG_)
KD_OPTIM_KERNELS(KD_KERNEL_TAG_)
KD_OPTIM_MULTI_KERNELS(KD_KERNEL_TAG_)
#undef KD_KERNEL_TAG_
}  // namespace kernel_tag

namespace cost_detail {
// n elements of T when the pointer is set, else nothing.
template <class P>
double bytes_if(const P* p, double n) {
  return p ? n * double(sizeof(P)) : 0.0;
}
inline KernelCost make(double flops, double read, double written) {
  KernelCost c;
  c.flops = flops, c.bytes_read = read, c.bytes_written = written;
  return c;
}
}  // namespace cost_detail

// ---- casts (an accumulating cast reads its output too and adds once per element)
template <class T>
KernelCost kernel_cost(kernel_tag::to_bf16, int64_t n, const T*, bf16*, bool accumulate) {
  return cost_detail::make(accumulate ? double(n) : 0.0,
                           n * (double(sizeof(T)) + (accumulate ? 2.0 : 0.0)), 2.0 * n);
}
template <class T>
KernelCost kernel_cost(kernel_tag::from_bf16, int64_t n, const bf16*, T*, bool accumulate) {
  return cost_detail::make(accumulate ? double(n) : 0.0,
                           n * (2.0 + (accumulate ? double(sizeof(T)) : 0.0)),
                           n * double(sizeof(T)));
}

template <class T>
KernelCost kernel_cost(kernel_tag::to_bf16_multi, int count, const int64_t* sizes, const T* const*,
                       bf16* const*) {
  KernelCost total;
  for (int i = 0; i < count; ++i)
    total += kernel_cost(kernel_tag::to_bf16{}, sizes[i], (const T*)nullptr, (bf16*)nullptr, false);
  return total;
}
template <class T>
KernelCost kernel_cost(kernel_tag::from_bf16_multi, int count, const int64_t* sizes,
                       const bf16* const*, T* const*, bool accumulate) {
  KernelCost total;
  for (int i = 0; i < count; ++i)
    total += kernel_cost(kernel_tag::from_bf16{}, sizes[i], (const bf16*)nullptr, (T*)nullptr,
                         accumulate);
  return total;
}

// ---- elementwise
template <class T>
KernelCost kernel_cost(kernel_tag::relu_forward, int64_t n, const T*, T*) {
  return cost_detail::make(double(n), n * double(sizeof(T)), n * double(sizeof(T)));
}
template <class T>
KernelCost kernel_cost(kernel_tag::relu_backward, int64_t n, const T*, const T*, T*,
                       bool accumulate) {
  return cost_detail::make(2.0 * n, (accumulate ? 3.0 : 2.0) * n * sizeof(T), n * double(sizeof(T)));
}
template <class T>
KernelCost kernel_cost(kernel_tag::add_forward, int64_t n, const T*, const T*, T*) {
  return cost_detail::make(double(n), 2.0 * n * sizeof(T), n * double(sizeof(T)));
}
template <class T>
KernelCost kernel_cost(kernel_tag::accumulate, int64_t n, T, const T*, T*) {
  return cost_detail::make(2.0 * n, 2.0 * n * sizeof(T), n * double(sizeof(T)));
}
template <class T>
KernelCost kernel_cost(kernel_tag::fill, int64_t n, T, T*) {
  return cost_detail::make(0, 0, n * double(sizeof(T)));
}
template <class T>
KernelCost kernel_cost(kernel_tag::scale, int64_t n, T, T*) {
  return cost_detail::make(double(n), n * double(sizeof(T)), n * double(sizeof(T)));
}
template <class T>
KernelCost kernel_cost(kernel_tag::dropout_forward, int64_t n, const DropoutMask&, T, const T*,
                       T*) {
  return cost_detail::make(2.0 * n, n * double(sizeof(T)), n * double(sizeof(T)));
}
template <class T>
KernelCost kernel_cost(kernel_tag::dropout_backward, int64_t n, const DropoutMask&, T, const T*,
                       T*) {
  return cost_detail::make(3.0 * n, 2.0 * n * sizeof(T), n * double(sizeof(T)));
}

// ---- convolution: one pass of 2*n*k*p*q*c*r*s for each of forward, data and weight gradients
inline double conv_macs(const ConvGeom& g) {
  return double(g.n) * g.k * g.p() * g.q() * double(g.c) * g.r * g.s;
}
// The passes' costs for operands of `a` bytes per element (x, w, y, dy, dx, dw: T's, or bf16's
// for the _bf16 entries) and a bias of `bias` bytes in all (T's; 0 when there is none).
struct ConvCounts {
  double x, w, y;
  explicit ConvCounts(const ConvGeom& g)
      : x(double(g.n) * g.c * g.h * g.w), w(double(g.k) * g.c * g.r * g.s),
        y(double(g.n) * g.k * g.p() * g.q()) {}
};
inline KernelCost conv_forward_cost(const ConvGeom& g, double a, double bias) {
  const ConvCounts n(g);
  return cost_detail::make(2 * conv_macs(g) + (bias > 0 ? n.y : 0), (n.x + n.w) * a + bias,
                           n.y * a);
}
inline KernelCost conv_forward_residual_cost(const ConvGeom& g, double a) {
  const ConvCounts n(g);
  return cost_detail::make(2 * conv_macs(g) + n.y, (n.x + n.w + n.y) * a, n.y * a);
}
inline KernelCost conv_backward_data_cost(const ConvGeom& g, double a, bool accumulate) {
  const ConvCounts n(g);
  return cost_detail::make(2 * conv_macs(g), (n.y + n.w + (accumulate ? n.x : 0)) * a, n.x * a);
}
// dw is accumulated (read and written); dbias likewise when there is one.
inline KernelCost conv_backward_weight_cost(const ConvGeom& g, double a, double bias) {
  const ConvCounts n(g);
  return cost_detail::make(2 * conv_macs(g) + (bias > 0 ? n.y : 0),
                           (n.x + n.y + n.w) * a + bias, n.w * a + bias);
}
// Both passes (conv2d_backward): the weight pass, and the data pass when dx is given.
inline KernelCost conv_backward_cost(const ConvGeom& g, double a, double bias, bool dx,
                                     bool accumulate) {
  KernelCost c = conv_backward_weight_cost(g, a, bias);
  if (dx) c += conv_backward_data_cost(g, a, accumulate);
  return c;
}
template <class T>
KernelCost kernel_cost(kernel_tag::conv2d_forward, const ConvGeom& g, const T*, const T*,
                       const T* bias, T*) {
  return conv_forward_cost(g, sizeof(T), cost_detail::bytes_if(bias, g.k));
}
template <class T>
KernelCost kernel_cost(kernel_tag::conv2d_forward_residual, const ConvGeom& g, const T*, const T*,
                       const T*, T*) {
  return conv_forward_residual_cost(g, sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::conv2d_backward_data, const ConvGeom& g, const T*, const T*,
                       T*, bool accumulate) {
  return conv_backward_data_cost(g, sizeof(T), accumulate);
}
template <class T>
KernelCost kernel_cost(kernel_tag::conv2d_backward_weight, const ConvGeom& g, const T*,
                       const T*, T*, T* dbias) {
  return conv_backward_weight_cost(g, sizeof(T), cost_detail::bytes_if(dbias, g.k));
}
template <class T>
KernelCost kernel_cost(kernel_tag::conv2d_backward, const ConvGeom& g, const T*, const T*,
                       const T*, T* dx, bool accumulate, T*, T* dbias) {
  return conv_backward_cost(g, sizeof(T), cost_detail::bytes_if(dbias, g.k), dx, accumulate);
}
// The _bf16 entries: the same passes over 2-byte operands, the bias T.
template <class T>
KernelCost kernel_cost(kernel_tag::conv2d_forward_bf16, const ConvGeom& g, const bf16*,
                       const bf16*, const T* bias, bf16*) {
  return conv_forward_cost(g, sizeof(bf16), cost_detail::bytes_if(bias, g.k));
}
inline KernelCost kernel_cost(kernel_tag::conv2d_forward_residual_bf16, const ConvGeom& g,
                              const bf16*, const bf16*, const bf16*, bf16*) {
  return conv_forward_residual_cost(g, sizeof(bf16));
}
template <class T>
KernelCost kernel_cost(kernel_tag::conv2d_backward_bf16, const ConvGeom& g, const bf16*,
                       const bf16*, const bf16*, bf16* dx, bool accumulate, bf16*, T* dbias) {
  return conv_backward_cost(g, sizeof(bf16), cost_detail::bytes_if(dbias, g.k), dx, accumulate);
}

// ---- linear
template <class T>
KernelCost kernel_cost(kernel_tag::linear_forward, const LinearGeom& g, const T*, const T*,
                       const T* bias, T*) {
  const double s = sizeof(T), y = double(g.batch) * g.out;
  return cost_detail::make(2.0 * g.batch * g.in * double(g.out) + (bias ? y : 0),
                           (double(g.batch) * g.in + double(g.out) * g.in) * s +
                               cost_detail::bytes_if(bias, g.out),
                           y * s);
}
template <class T>
KernelCost kernel_cost(kernel_tag::linear_backward_data, const LinearGeom& g, const T*, const T*,
                       T*) {
  const double s = sizeof(T), x = double(g.batch) * g.in;
  return cost_detail::make(2.0 * g.batch * g.in * double(g.out),
                           (double(g.batch) * g.out + double(g.out) * g.in + x) * s, x * s);
}
template <class T>
KernelCost kernel_cost(kernel_tag::linear_backward_weight, const LinearGeom& g, const T*,
                       const T*, T*, T* dbias) {
  const double s = sizeof(T), w = double(g.out) * g.in, bias = dbias ? double(g.out) : 0;
  return cost_detail::make(2.0 * g.batch * g.in * double(g.out) + (dbias ? double(g.batch) * g.out : 0),
                           (double(g.batch) * (g.in + g.out) + w + bias) * s, (w + bias) * s);
}

// ---- pooling
template <class T>
KernelCost kernel_cost(kernel_tag::avg_pool2d_forward, const PoolGeom& g, const T*, T*) {
  const double x = double(g.n) * g.c * g.h * g.w, y = double(g.n) * g.c * g.p() * g.q();
  return cost_detail::make(y * g.kh * g.kw, x * sizeof(T), y * sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::avg_pool2d_backward, const PoolGeom& g, const T*, T*) {
  const double x = double(g.n) * g.c * g.h * g.w, y = double(g.n) * g.c * g.p() * g.q();
  return cost_detail::make(y * g.kh * g.kw, (y + x) * sizeof(T), x * sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::max_pool2d_forward, const PoolGeom& g, const T*, T*,
                       int32_t*) {
  const double x = double(g.n) * g.c * g.h * g.w, y = double(g.n) * g.c * g.p() * g.q();
  return cost_detail::make(y * g.kh * g.kw, x * sizeof(T), y * (sizeof(T) + sizeof(int32_t)));
}
template <class T>
KernelCost kernel_cost(kernel_tag::max_pool2d_backward, const PoolGeom& g, const T*,
                       const int32_t*, T*) {
  const double x = double(g.n) * g.c * g.h * g.w, y = double(g.n) * g.c * g.p() * g.q();
  return cost_detail::make(y, y * (sizeof(T) + sizeof(int32_t)) + x * sizeof(T), x * sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::global_avg_pool_forward, int n, int c, int hw, const T*, T*) {
  const double x = double(n) * c * hw;
  return cost_detail::make(x, x * sizeof(T), double(n) * c * sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::global_avg_pool_backward, int n, int c, int hw, const T*, T*) {
  const double x = double(n) * c * hw;
  return cost_detail::make(x, (double(n) * c + x) * sizeof(T), x * sizeof(T));
}

// ---- normalization: training statistics need a pass over x before the pass that normalises
// a = the activations' element size (T, or bf16's 2 bytes), s = the parameters' (T).
inline KernelCost batchnorm_forward_train_cost(const NormGeom& g, double a, double s) {
  const double x = double(g.n) * g.c * g.hw, c = g.c;
  return cost_detail::make(5 * x, 2 * x * a + 4 * c * s, x * a + 4 * c * s);
}
template <class T>
KernelCost kernel_cost(kernel_tag::batchnorm_forward_train, const NormGeom& g, const T*,
                       const T*, const T*, T, T, T*, T*, T*, T*, T*, int64_t*, bool) {
  return batchnorm_forward_train_cost(g, sizeof(T), sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::batchnorm_forward_train_bf16, const NormGeom& g, const bf16*,
                       const T*, const T*, T, T, bf16*, T*, T*, T*, T*, int64_t*, bool) {
  return batchnorm_forward_train_cost(g, sizeof(bf16), sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::batchnorm_forward_eval, const NormGeom& g, const T*, const T*,
                       const T*, const T*, const T*, T, T*) {
  const double x = double(g.n) * g.c * g.hw, c = g.c, s = sizeof(T);
  return cost_detail::make(2 * x, (x + 4 * c) * s, x * s);
}
// x and dy twice (the sums, then dx), the fused ReLU's output twice for its mask; dx read too
// when accumulated; dgamma, dbeta accumulated. a, s as above; params: dgamma's and dbeta's bytes.
inline KernelCost batchnorm_backward_train_cost(const NormGeom& g, double a, double s, bool dx,
                                                bool accumulate, bool relu, double params) {
  const double x = double(g.n) * g.c * g.hw, c = g.c;
  const double dx_read = dx && accumulate ? x * a : 0, dx_written = dx ? x * a : 0;
  const double mask = relu ? 2 * x * a : 0;
  return cost_detail::make(8 * x, 4 * x * a + mask + 3 * c * s + dx_read + params,
                           dx_written + params);
}
template <class T>
KernelCost kernel_cost(kernel_tag::batchnorm_backward_train, const NormGeom& g, const T*,
                       const T*, const T*, const T*, const T*, T* dx, T* dgamma, T* dbeta,
                       bool accumulate, const T* relu_out) {
  return batchnorm_backward_train_cost(
      g, sizeof(T), sizeof(T), dx, accumulate, relu_out,
      cost_detail::bytes_if(dgamma, g.c) + cost_detail::bytes_if(dbeta, g.c));
}
template <class T>
KernelCost kernel_cost(kernel_tag::batchnorm_backward_train_bf16, const NormGeom& g, const bf16*,
                       const bf16*, const T*, const T*, const T*, bf16* dx, T* dgamma, T* dbeta,
                       bool accumulate, const bf16* relu_out) {
  return batchnorm_backward_train_cost(
      g, sizeof(bf16), sizeof(T), dx, accumulate, relu_out,
      cost_detail::bytes_if(dgamma, g.c) + cost_detail::bytes_if(dbeta, g.c));
}
template <class T>
KernelCost kernel_cost(kernel_tag::batchnorm_backward_eval, const NormGeom& g, const T*, const T*,
                       const T*, const T*, const T*, T, T* dx, T* dgamma, T* dbeta) {
  const double x = double(g.n) * g.c * g.hw, c = g.c, s = sizeof(T);
  const double d = dx ? x * s : 0;
  return cost_detail::make(6 * x, 2 * x * s + 3 * c * s + d + cost_detail::bytes_if(dgamma, c) +
                                      cost_detail::bytes_if(dbeta, c),
                           d + cost_detail::bytes_if(dgamma, c) + cost_detail::bytes_if(dbeta, c));
}
template <class T>
KernelCost kernel_cost(kernel_tag::groupnorm_forward, const NormGeom& g, const T*, const T*,
                       const T*, T, T*, T*, T*) {
  const double x = double(g.n) * g.c * g.hw, c = g.c, s = sizeof(T), stats = double(g.n) * g.groups;
  return cost_detail::make(5 * x, (2 * x + 2 * c) * s, (x + 2 * stats) * s);
}
template <class T>
KernelCost kernel_cost(kernel_tag::groupnorm_backward, const NormGeom& g, const T*, const T*,
                       const T*, const T*, const T*, T*, T* dgamma, T* dbeta) {
  const double x = double(g.n) * g.c * g.hw, c = g.c, s = sizeof(T), stats = double(g.n) * g.groups;
  return cost_detail::make(10 * x, (5 * x + c + 2 * stats) * s + cost_detail::bytes_if(dgamma, c) +
                                       cost_detail::bytes_if(dbeta, c),
                           x * s + cost_detail::bytes_if(dgamma, c) + cost_detail::bytes_if(dbeta, c));
}

// ---- losses (rows x cols logits)
template <class T>
KernelCost kernel_cost(kernel_tag::log_softmax_forward, int rows, int cols, const T*, T*) {
  const double e = double(rows) * cols;
  return cost_detail::make(4 * e, e * sizeof(T), e * sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::log_softmax_backward, int rows, int cols, const T*, const T*,
                       T*) {
  const double e = double(rows) * cols;
  return cost_detail::make(5 * e, 3 * e * sizeof(T), e * sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::cross_entropy_forward, int rows, int cols, const T*,
                       const int32_t*, T*) {
  const double e = double(rows) * cols;
  return cost_detail::make(4 * e, e * sizeof(T) + rows * 4.0, sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::cross_entropy_backward, int rows, int cols, const T*,
                       const int32_t*, const T*, T*) {
  const double e = double(rows) * cols;
  return cost_detail::make(5 * e, 2 * e * sizeof(T) + rows * 4.0 + sizeof(T), e * sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::distill_loss_forward, DistillKind, int rows, int cols,
                       const T*, const T*, T, T*) {
  const double e = double(rows) * cols;
  return cost_detail::make(10 * e, 2 * e * sizeof(T), sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::distill_loss_backward, DistillKind, int rows, int cols,
                       const T*, const T*, T, const T*, T*) {
  const double e = double(rows) * cols;
  return cost_detail::make(10 * e, 3 * e * sizeof(T) + sizeof(T), e * sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::ensemble_reduce_forward, int members, int rows, int cols,
                       const T*, T*) {
  const double e = double(rows) * cols;
  return cost_detail::make(4 * e * members, e * members * sizeof(T), e * sizeof(T));
}
template <class T>
KernelCost kernel_cost(kernel_tag::ensemble_reduce_backward, int members, int rows, int cols,
                       const T*, const T*, const T*, T*) {
  const double e = double(rows) * cols;
  return cost_detail::make(4 * e * members, (2 * e * members + 2 * e) * sizeof(T),
                           e * members * sizeof(T));
}

// ---- metrics
template <class T>
KernelCost kernel_cost(kernel_tag::classifier_row_stats, int rows, int cols, const T*,
                       const int32_t*, const T* teacher, double*) {
  const double e = double(rows) * cols;
  return cost_detail::make((teacher ? 12 : 6) * e,
                           e * sizeof(T) + rows * 4.0 + cost_detail::bytes_if(teacher, e),
                           rows * 8.0 * 8);
}

// ---- optimizers: SGD reads param, grad, momentum and writes param, momentum; Adam two moments
template <class T>
KernelCost kernel_cost(kernel_tag::sgd_update, int64_t n, const SgdParams& h, bool, T*, const T*,
                       T* momentum) {
  const double s = sizeof(T), m = momentum && h.momentum != 0 ? 1 : 0;
  return cost_detail::make(6.0 * n, (2 + m) * n * s, (1 + m) * n * s);
}
template <class T>
KernelCost kernel_cost(kernel_tag::adam_update, int64_t n, const AdamParams&, int64_t, T*,
                       const T*, T*, T*) {
  const double s = sizeof(T);
  return cost_detail::make(12.0 * n, 4.0 * n * s, 3.0 * n * s);
}
template <class T>
KernelCost kernel_cost(kernel_tag::sgd_update_multi, int count, const int64_t* sizes, T* const*,
                       const T* const*, T* const* momentum, const SgdParams& h, bool first) {
  KernelCost total;
  for (int i = 0; i < count; ++i)
    total += kernel_cost(kernel_tag::sgd_update{}, sizes[i], h, first, (T*)nullptr,
                         (const T*)nullptr, momentum ? momentum[i] : (T*)nullptr);
  return total;
}
template <class T>
KernelCost kernel_cost(kernel_tag::adam_update_multi, int count, const int64_t* sizes, T* const*,
                       const T* const*, T* const*, T* const*, const AdamParams& h, int64_t step) {
  KernelCost total;
  for (int i = 0; i < count; ++i)
    total += kernel_cost(kernel_tag::adam_update{}, sizes[i], h, step, (T*)nullptr,
                         (const T*)nullptr, (T*)nullptr, (T*)nullptr);
  return total;
}

}  // namespace kd
