// Contract: evaluation reductions, all at temperature 1, accumulated into ClassifierStats
// (so a test set is the sum of its batches; the final numbers are exact per-example means).
//   logits [rows, cols] (student or evaluated model); labels [rows] in [0, cols);
//   teacher [rows, cols] or null (teacher = ensemble log-mean-prob logits).
// Per example: correct = argmax(logits) == label; nll = -log softmax(logits)[label];
//   ECE: confidence = max softmax, bin k (0..9) covers ((k)/10, (k+1)/10] (confidence 0 goes to
//   bin 0); per bin count, sum of confidence, sum of correct.
//   With a teacher: agree = argmax(logits) == argmax(teacher);
//   kl = KL(softmax(teacher) || softmax(logits)); teacher_correct, teacher_nll likewise.
// First maximum wins in every argmax. Sums are in double.
#pragma once
#include <cstdint>

#include "kernels/kernel_list.h"
#include "base/philox.h"  // KD_HOST_DEVICE

namespace kd {

constexpr int kEceBins = 10;

// Bin k covers (k/10, (k+1)/10] with the boundaries taken as the doubles k/10.0, so a confidence
// of exactly 0.5 lands in bin 4; confidence 0 goes to bin 0. One definition for every backend:
// the CPU stats and fold_row_stats (which folds GPU rows) must bin a confidence identically.
KD_HOST_DEVICE inline int ece_bin(double confidence) {
  int k = 0;
  while (k < kEceBins - 1 && confidence > double(k + 1) / kEceBins) ++k;
  return k;
}

struct ClassifierStats {
  int64_t count = 0;
  int64_t correct = 0;
  double nll_sum = 0;
  int64_t bin_count[kEceBins] = {};
  double bin_conf_sum[kEceBins] = {};
  double bin_correct_sum[kEceBins] = {};
  // teacher-relative, only when a teacher was given
  int64_t agree = 0;
  double kl_sum = 0;

  double accuracy() const { return count ? double(correct) / count : 0.0; }
  double nll() const { return count ? nll_sum / count : 0.0; }
  double agreement() const { return count ? double(agree) / count : 0.0; }
  double kl() const { return count ? kl_sum / count : 0.0; }
  double ece() const;
  void merge(const ClassifierStats& other);
};

// Per-example values, on every device alike: per_row holds rows * kRowStatFields doubles
// (ASSIGNED): correct (0/1), nll, confidence, agree (0/1), kl; agree and kl are 0 without a
// teacher. fold_row_stats sums them into ClassifierStats in row order (ACCUMULATING), on the host.
// A label outside [0, cols) is refused on the CPU; on the GPU (labels on the device) its nll is NaN.
constexpr int kRowStatFields = 5;
#define KD_METRICS_KERNELS(X)                                                             \
  X(classifier_row_stats, (int rows, int cols, const T* logits, const int32_t* labels,    \
                           const T* teacher, double* per_row))
namespace ref {
KD_DECLARE_KERNELS(KD_METRICS_KERNELS)
}
namespace cpu {
KD_DECLARE_KERNELS(KD_METRICS_KERNELS)
}
namespace cuda {
KD_DECLARE_KERNELS(KD_METRICS_KERNELS)
}
void fold_row_stats(int rows, const double* per_row, bool with_teacher, ClassifierStats* stats);

}  // namespace kd
