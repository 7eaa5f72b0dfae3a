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

namespace kd {

constexpr int kEceBins = 10;

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

}  // namespace kd
