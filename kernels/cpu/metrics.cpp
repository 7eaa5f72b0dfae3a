// Evaluation reductions at temperature 1 (contract: kernels/metrics.h): per-example values,
// ASSIGNED, folded into ClassifierStats by fold_row_stats (metrics_fold.cpp) in row order, so a
// test set is the sum of its batches. One function defines what a row contributes
// (row_contribution); ref:: walks the rows in order, cpu:: in parallel (each row is independent),
// so cpu:: equals ref:: bitwise for any thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/check.h"
#include "kernels/backend.h"
#include "kernels/metrics.h"

namespace kd {

double ClassifierStats::ece() const {
  if (count == 0) return 0.0;
  // sum_b (n_b / N) |acc_b - conf_b| = sum_b |correct_b - conf_b| / N
  double total = 0;
  for (int b = 0; b < kEceBins; ++b) total += std::fabs(bin_correct_sum[b] - bin_conf_sum[b]);
  return total / double(count);
}

void ClassifierStats::merge(const ClassifierStats& other) {
  count += other.count;
  correct += other.correct;
  nll_sum += other.nll_sum;
  for (int b = 0; b < kEceBins; ++b) {
    bin_count[b] += other.bin_count[b];
    bin_conf_sum[b] += other.bin_conf_sum[b];
    bin_correct_sum[b] += other.bin_correct_sum[b];
  }
  agree += other.agree;
  kl_sum += other.kl_sum;
}

namespace {

struct RowContribution {
  bool correct = false, agree = false;
  int bin = 0;
  double nll = 0, confidence = 0, kl = 0;
};

template <class T>
int first_argmax(const T* z, int cols) {
  int best = 0;
  for (int j = 1; j < cols; ++j)
    if (z[j] > z[best]) best = j;
  return best;
}

// Max-subtracted sum of exponentials of one row: logsumexp = max + log(sum), max softmax = 1/sum.
template <class T>
double exp_sum_below_max(const T* z, int cols, int argmax) {
  const double mx = double(z[argmax]);
  double sum = 0;
  for (int j = 0; j < cols; ++j) sum += std::exp(double(z[j]) - mx);
  return sum;
}

template <class T>
RowContribution row_contribution(int cols, const T* z, int32_t label, const T* teacher) {
  RowContribution rc;
  const int top = first_argmax(z, cols);
  const double sum = exp_sum_below_max(z, cols, top);
  const double lse = double(z[top]) + std::log(sum);
  rc.correct = top == label;
  rc.nll = lse - double(z[label]);
  rc.confidence = 1.0 / sum;
  rc.bin = ece_bin(rc.confidence);
  if (teacher) {
    const int t_top = first_argmax(teacher, cols);
    rc.agree = t_top == top;
    const double t_lse = double(teacher[t_top]) + std::log(exp_sum_below_max(teacher, cols, t_top));
    double kl = 0;  // KL(p_teacher || p_model) = sum p_t (log p_t - log p_model)
    for (int j = 0; j < cols; ++j) {
      const double log_pt = double(teacher[j]) - t_lse;
      kl += std::exp(log_pt) * (log_pt - (double(z[j]) - lse));
    }
    rc.kl = kl;
  }
  return rc;
}

void write_row(const RowContribution& rc, double* f) {
  f[0] = rc.correct ? 1.0 : 0.0;
  f[1] = rc.nll;
  f[2] = rc.confidence;
  f[3] = rc.agree ? 1.0 : 0.0;
  f[4] = rc.kl;
}

void check_inputs(int rows, int cols, const int32_t* labels, const double* per_row) {
  KD_CHECK(rows >= 0, "classifier_row_stats: negative row count " << rows);
  KD_CHECK(rows == 0 || cols > 0, "classifier_row_stats: " << rows << " rows of 0 classes");
  KD_CHECK(rows == 0 || per_row != nullptr, "classifier_row_stats: null per_row");
  for (int r = 0; r < rows; ++r)
    KD_CHECK(labels[r] >= 0 && labels[r] < cols, "classifier_stats: label "
                                                     << labels[r] << " at row " << r
                                                     << " outside [0, " << cols << ")");
}

}  // namespace

namespace ref {
template <class T>
void classifier_row_stats(int rows, int cols, const T* logits, const int32_t* labels,
                          const T* teacher, double* per_row) {
  check_inputs(rows, cols, labels, per_row);
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    write_row(row_contribution(cols, logits + o, labels[r], teacher ? teacher + o : nullptr),
              per_row + int64_t(r) * kRowStatFields);
  }
}
KD_DEFINE_REGISTRAR(register_metrics, KD_METRICS_KERNELS)
}  // namespace ref

namespace cpu {
template <class T>
void classifier_row_stats(int rows, int cols, const T* logits, const int32_t* labels,
                          const T* teacher, double* per_row) {
  check_inputs(rows, cols, labels, per_row);
#pragma omp parallel for schedule(static) if (int64_t(rows) * cols >= 8192)
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    write_row(row_contribution(cols, logits + o, labels[r], teacher ? teacher + o : nullptr),
              per_row + int64_t(r) * kRowStatFields);
  }
}
KD_DEFINE_REGISTRAR(register_metrics, KD_METRICS_KERNELS)
}  // namespace cpu

}  // namespace kd
