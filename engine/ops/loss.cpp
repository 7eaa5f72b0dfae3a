// Front doors for log_softmax, cross_entropy, the distillation losses and the ensemble
// reduction. Losses return 0-d tensors; their backward scales by the upstream gradient. On the GPU
// the loss and its upstream gradient stay in device memory: no step waits for the host.
#include <vector>

#include "engine/ops.h"
#include "engine/ops/dispatch.h"
#include "kernels/elementwise.h"
#include "kernels/loss.h"

namespace kd {
namespace ops {
using namespace detail;

namespace {
void check_logits(const char* op, const Tensor& t) {
  KD_CHECK(t.dim() == 2 && t.size(1) >= 1, op << ": expected logits [rows, classes], got "
                                              << describe(t));
}
}  // namespace

Tensor log_softmax(const Tensor& x) {
  check_operands("log_softmax", {x});
  check_logits("log_softmax", x);
  int rows = int(x.size(0)), cols = int(x.size(1));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_floating("log_softmax", x, [&](auto tag) {
    using T = decltype(tag);
    kernels<T>(x).log_softmax_forward(rows, cols, x.data<T>(), y.data<T>());
  });
  if (should_record({x})) {
    record_node("log_softmax", {x}, {y}, [x, y, rows, cols]() {
      dispatch_floating("log_softmax", x, [&](auto tag) {
        using T = decltype(tag);
        kernels<T>(x).log_softmax_backward(rows, cols, y.data<T>(), y.grad().data<T>(),
                                                    grad_ptr<T>(x));
      });
    });
  }
  return y;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  check_operands("cross_entropy", {logits});
  check_logits("cross_entropy", logits);
  KD_CHECK(labels.dtype() == DType::I32 && labels.dim() == 1 && labels.size(0) == logits.size(0),
           "cross_entropy: labels " << describe(labels) << " for logits " << describe(logits)
                                    << " (expected i32 [rows])");
  int rows = int(logits.size(0)), cols = int(logits.size(1));
  KD_CHECK(labels.device() == logits.device(),
           "cross_entropy: labels " << describe(labels) << " for logits " << describe(logits));
  const int32_t* lab = labels.data<int32_t>();
  // Device labels were range-checked when the dataset was read; reading them back here would
  // cost a synchronization every step.
  if (!logits.is_cuda())
    for (int i = 0; i < rows; ++i)
      KD_CHECK(lab[i] >= 0 && lab[i] < cols, "cross_entropy: label " << lab[i] << " at row " << i
                                                                     << " outside [0, " << cols
                                                                     << ")");
  Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());
  dispatch_floating("cross_entropy", logits, [&](auto tag) {
    using T = decltype(tag);
    kernels<T>(logits).cross_entropy_forward(rows, cols, logits.data<T>(), lab, loss.data<T>());
  });
  if (should_record({logits})) {
    record_node("cross_entropy", {logits}, {loss}, [logits, labels, loss, rows, cols]() {
      dispatch_floating("cross_entropy", logits, [&](auto tag) {
        using T = decltype(tag);
        kernels<T>(logits).cross_entropy_backward(rows, cols, logits.data<T>(),
                                                  labels.data<int32_t>(), loss.grad().data<T>(),
                                                  grad_ptr<T>(logits));
      });
    });
  }
  return loss;
}

Tensor distill_loss(DistillKind kind, const Tensor& teacher, const Tensor& student, double tau) {
  check_operands("distill_loss", {teacher, student});
  check_logits("distill_loss", student);
  KD_CHECK(teacher.shape() == student.shape(),
           "distill_loss: teacher " << describe(teacher) << " vs student " << describe(student));
  KD_CHECK(tau > 0, "distill_loss: temperature must be positive, got " << tau);
  int rows = int(student.size(0)), cols = int(student.size(1));
  Tensor loss = Tensor::empty({}, student.dtype(), student.device());
  dispatch_floating("distill_loss", student, [&](auto tag) {
    using T = decltype(tag);
    kernels<T>(student).distill_loss_forward(kind, rows, cols, teacher.data<T>(),
                                             student.data<T>(), T(tau), loss.data<T>());
  });
  if (should_record({student})) {
    record_node("distill_loss", {student}, {loss}, [kind, teacher, student, loss, rows, cols, tau]() {
      dispatch_floating("distill_loss", student, [&](auto tag) {
        using T = decltype(tag);
        kernels<T>(student).distill_loss_backward(kind, rows, cols, teacher.data<T>(),
                                                  student.data<T>(), T(tau),
                                                  loss.grad().data<T>(), grad_ptr<T>(student));
      });
    });
  }
  return loss;
}

Tensor ensemble_logits(const std::vector<Tensor>& members) {
  KD_CHECK(!members.empty(), "ensemble_logits: no members");
  const Tensor& first = members.front();
  check_logits("ensemble_logits", first);
  for (const Tensor& m : members) {
    check_operands("ensemble_logits", {first, m});
    KD_CHECK(m.shape() == first.shape(),
             "ensemble_logits: member " << describe(m) << " vs " << describe(first));
  }
  int count = int(members.size()), rows = int(first.size(0)), cols = int(first.size(1));
  int64_t block = int64_t(rows) * cols;
  // Member-major staging buffer: the kernel's layout.
  Tensor stacked = Tensor::empty({count, rows, cols}, first.dtype(), first.device());
  Tensor y = Tensor::empty({rows, cols}, first.dtype(), first.device());
  for (int i = 0; i < count; ++i)
    stacked.copy_range_from(int64_t(i) * block, members[i]);
  const bool on_gpu = first.is_cuda();
  dispatch_floating("ensemble_logits", first, [&](auto tag) {
    using T = decltype(tag);
    kernels<T>(y).ensemble_reduce_forward(count, rows, cols, stacked.data<T>(), y.data<T>());
  });
  bool any = false;
  for (const Tensor& m : members) any = any || should_record({m});
  if (any) {
    record_node("ensemble_logits", members, {y}, [members, stacked, y, count, rows, cols, block,
                                        on_gpu]() {
      dispatch_floating("ensemble_logits", y, [&](auto tag) {
        using T = decltype(tag);
        Tensor dstacked = Tensor::zeros(stacked.shape(), stacked.dtype(), stacked.device());
        kernels<T>(y).ensemble_reduce_backward(count, rows, cols, stacked.data<T>(),
                                                   y.data<T>(), y.grad().data<T>(),
                                                   dstacked.data<T>());
        for (int i = 0; i < count; ++i)
          if (T* dm = grad_ptr<T>(members[i]))
            kernels<T>(y).accumulate(block, T(1), dstacked.data<T>() + i * block, dm);
      });
    });
  }
  return y;
}

}  // namespace ops
}  // namespace kd
