// Front door for the evaluation statistics (ops.h): the per-example kernel on the logits' device,
// one read-back, then the host fold shared by every device, so a GPU evaluation adds exactly
// what a CPU one adds.
#include <vector>

#include "engine/ops.h"
#include "engine/ops/dispatch.h"
#include "kernels/metrics.h"

namespace kd {
namespace ops {
using namespace detail;

void accumulate_classifier_stats(const Tensor& logits, const Tensor& labels,
                                 const Tensor& teacher, ClassifierStats* stats) {
  KD_CHECK(stats, "classifier_stats: null stats");
  check_operands("classifier_stats", {logits, teacher});
  KD_CHECK(logits.dim() == 2, "classifier_stats: expected logits [rows, cols], got "
                                  << describe(logits));
  const int rows = int(logits.size(0)), cols = int(logits.size(1));
  KD_CHECK(labels.dtype() == DType::I32 && labels.dim() == 1 && labels.size(0) == rows &&
               labels.device() == logits.device(),
           "classifier_stats: labels " << describe(labels) << " for logits " << describe(logits));
  KD_CHECK(!teacher.defined() || teacher.shape() == logits.shape(),
           "classifier_stats: teacher " << describe(teacher) << " for logits "
                                        << describe(logits));
  if (rows == 0) return;
  Tensor per_row = Tensor::empty({rows, kRowStatFields}, DType::F64, logits.device());
  dispatch_floating("classifier_stats", logits, [&](auto tag) {
    using T = decltype(tag);
    kernels<T>(logits).classifier_row_stats(rows, cols, logits.data<T>(),
                                            labels.data<int32_t>(), ptr_or_null<T>(teacher),
                                            per_row.data<double>());
  });
  std::vector<double> host(size_t(rows) * kRowStatFields);
  per_row.read_to_host(0, per_row.numel(), host.data());
  fold_row_stats(rows, host.data(), teacher.defined(), stats);
}

}  // namespace ops
}  // namespace kd
