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

#include "kernels/philox.h"  // KD_HOST_DEVICE

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

namespace ref {
template <class T>
void classifier_stats(int rows, int cols, const T* logits, const int32_t* labels,
                      const T* teacher, ClassifierStats* stats);
}
namespace cpu {
template <class T>
void classifier_stats(int rows, int cols, const T* logits, const int32_t* labels,
                      const T* teacher, ClassifierStats* stats);
}

// The GPU computes the per-example quantities; the host folds them in row order, so the sums
// are the CPU's to the last bit whenever the per-example values are. Row r of per_row holds
// kRowStatFields doubles: correct, nll, confidence, agree, kl (the last two 0 without a teacher).
constexpr int kRowStatFields = 5;
void fold_row_stats(int rows, const double* per_row, bool with_teacher, ClassifierStats* stats);
namespace cuda {
// logits, labels, teacher (or null) and per_row [rows * kRowStatFields] are device pointers.
template <class T>
void classifier_row_stats(int rows, int cols, const T* logits, const int32_t* labels,
                          const T* teacher, double* per_row);
}  // namespace cuda

}  // namespace kd
