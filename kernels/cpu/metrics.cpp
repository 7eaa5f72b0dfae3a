// Evaluation reductions at temperature 1 (contract: kernels/metrics.h), ACCUMULATED into
// ClassifierStats so a test set is the sum of its batches. One function defines what a row
// contributes (row_contribution); ref:: adds rows as it goes, cpu:: computes the rows in parallel
// into a buffer and adds them in row order afterwards, so cpu:: equals ref:: bitwise for any
// thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/check.h"
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

void add_row(const RowContribution& rc, bool with_teacher, ClassifierStats* stats) {
  stats->count += 1;
  stats->correct += rc.correct ? 1 : 0;
  stats->nll_sum += rc.nll;
  stats->bin_count[rc.bin] += 1;
  stats->bin_conf_sum[rc.bin] += rc.confidence;
  stats->bin_correct_sum[rc.bin] += rc.correct ? 1.0 : 0.0;
  if (with_teacher) {
    stats->agree += rc.agree ? 1 : 0;
    stats->kl_sum += rc.kl;
  }
}

void check_inputs(int rows, int cols, const int32_t* labels, const ClassifierStats* stats) {
  KD_CHECK(stats != nullptr, "classifier_stats: null stats");
  KD_CHECK(rows == 0 || cols > 0, "classifier_stats: " << rows << " rows of 0 classes");
  for (int r = 0; r < rows; ++r)
    KD_CHECK(labels[r] >= 0 && labels[r] < cols, "classifier_stats: label "
                                                     << labels[r] << " at row " << r
                                                     << " outside [0, " << cols << ")");
}

}  // namespace

namespace ref {
template <class T>
void classifier_stats(int rows, int cols, const T* logits, const int32_t* labels,
                      const T* teacher, ClassifierStats* stats) {
  check_inputs(rows, cols, labels, stats);
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    add_row(row_contribution(cols, logits + o, labels[r], teacher ? teacher + o : nullptr),
            teacher != nullptr, stats);
  }
}
}  // namespace ref

namespace cpu {
template <class T>
void classifier_stats(int rows, int cols, const T* logits, const int32_t* labels,
                      const T* teacher, ClassifierStats* stats) {
  check_inputs(rows, cols, labels, stats);
  std::vector<RowContribution> per_row(rows);
#pragma omp parallel for schedule(static) if (int64_t(rows) * cols >= 8192)
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    per_row[r] = row_contribution(cols, logits + o, labels[r], teacher ? teacher + o : nullptr);
  }
  for (const RowContribution& rc : per_row) add_row(rc, teacher != nullptr, stats);
}
}  // namespace cpu

#define KD_INSTANTIATE_METRICS(NS, T)                                                   \
  template void NS::classifier_stats<T>(int, int, const T*, const int32_t*, const T*, \
                                        ClassifierStats*);
KD_INSTANTIATE_METRICS(ref, float)
KD_INSTANTIATE_METRICS(ref, double)
KD_INSTANTIATE_METRICS(cpu, float)
KD_INSTANTIATE_METRICS(cpu, double)
#undef KD_INSTANTIATE_METRICS

}  // namespace kd
