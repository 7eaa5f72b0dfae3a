// The differentiable ops: the single front door for each (check shapes and dtypes, allocate
// outputs, dispatch on the device, record the backward). Definitions in engine/ops/<group>.cpp;
// kernels in kernels/{cpu,cuda}/. All ops take f32 or f64 tensors on one device. The layers' ops
// (conv2d, linear, relu, add, reshape, the pools, dropout, batch_norm, group_norm) also take
// bf16 activations (--precision bf16): they compute in fp32, beside f32 parameters, and their
// bf16 outputs and input gradients are the fp32 results rounded once (ops/bf16_operands.h).
// cast converts between them; the losses and metrics take f32 or f64 only.
#pragma once
#include <vector>

#include "engine/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/loss.h"
#include "kernels/metrics.h"

namespace kd {
namespace ops {

// x [n,c,h,w], w [k,c,r,s], bias [k] or undefined -> [n,k,p,q]. With a residual [n,k,p,q]
// (and no bias): conv + residual, the same values as add(conv2d(...), residual), in one kernel
// call where the backend fuses them (a residual block's last convolution and its shortcut).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int stride, int pad,
              const Tensor& residual = Tensor());
// x [b,in], w [out,in], bias [out] or undefined -> [b,out]
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias);

Tensor relu(const Tensor& x);

// x converted to `dtype`: F32 or F64 to BF16 (rounded to nearest even, kernels/bf16.h) and BF16
// to F32 or F64 (exact). Its gradient is the reverse cast of the output's (straight-through).
// x itself when it already has that dtype.
Tensor cast(const Tensor& x, DType dtype);
// The bf16 copies of several F32 (or F64) tensors of one device, as cast(x, BF16) each, in one
// kernel call (kernels/cast.h's multi-tensor casts): pieces of one buffer, each a multiple of 256
// bytes into it (aligned as the buffer is). When recorded, the copies' gradients are pieces of
// one zeroed buffer (one memset) and one call casts them back into the inputs' gradients. For a
// model's weights (nn::Bf16WeightCopies), where a cast per weight is three launches per weight.
std::vector<Tensor> cast_to_bf16(const std::vector<Tensor>& xs);
Tensor add(const Tensor& a, const Tensor& b);  // same shapes
Tensor scale(const Tensor& x, double alpha);
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x);  // [n, ...] -> [n, rest]

// Inverted dropout, as PyTorch's: in training each element is kept with probability 1 - p and
// scaled by 1 / (1 - p), else zeroed. The mask is a pure function of (key, element index)
// (kernels/elementwise.h), the same on every device; the backward regenerates it. Not training,
// or p == 0: returns x itself and records nothing. p must be in [0, 1) (p = 1 is refused: it
// would zero every activation and the scale would be infinite).
Tensor dropout(const Tensor& x, double p, const DropoutKey& key, bool training = true);

Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int pad = 0);
Tensor max_pool2d(const Tensor& x, int kernel, int stride, int pad = 0);
Tensor global_avg_pool(const Tensor& x);  // [n,c,h,w] -> [n,c]

// Train mode: batch statistics, and running statistics updated in place (momentum as PyTorch).
// Eval mode: running statistics. running_* may be undefined in train mode (no tracking).
// relu: relu(batch_norm(...)) as one op: in training on our kernels one pass forward and the
// ReLU's backward inside batchnorm's (cuDNN and eval mode run the ReLU beside it).
// batches_tracked (an i64 scalar beside x, PyTorch's num_batches_tracked): in train mode, +1 in
// the same launch as the statistics.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean,
                  Tensor running_var, bool training, double momentum, double eps,
                  bool relu = false, Tensor batches_tracked = Tensor());
Tensor group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, double eps);

Tensor log_softmax(const Tensor& x);                          // over the last dim of [rows, cols]
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);  // labels i32 [rows]; mean; 0-d
// The distillation losses of paper-notes §1 (kernels/loss.h), temperature applied inside, to the
// teacher's (already ensembled) logits and the student's. Gradients flow to the student only.
Tensor distill_loss(DistillKind kind, const Tensor& teacher_logits, const Tensor& student_logits,
                    double tau);
// Teacher logits of an ensemble: log of the mean of member probabilities; members [b, c] each.
Tensor ensemble_logits(const std::vector<Tensor>& members);

// Evaluation statistics of a batch, on any device and dtype, no autograd: logits [rows, cols],
// labels i32 [rows], teacher logits like logits or undefined. The per-example values
// (correct, nll, confidence, agree, kl) are computed on the logits' device, read back in one
// copy and folded into *stats in row order (kernels/metrics.h).
void accumulate_classifier_stats(const Tensor& logits, const Tensor& labels,
                                 const Tensor& teacher, ClassifierStats* stats);

}  // namespace ops
}  // namespace kd
