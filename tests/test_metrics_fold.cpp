// Host tests of fold_row_stats (kernels/cpu/metrics_fold.cpp), the fold every evaluation uses:
// folding cpu:: per-row values must reproduce the stats folded from the ref:: specification's
// rows bitwise, with and without a teacher, including confidences exactly on ECE bin
// boundaries, and accumulate onto existing stats. Also the shared ece_bin rule (kernels/metrics.h). Runs without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "base/check.h"
#include "kernels/metrics.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using namespace kernel_testing;



template <class T>
void check_fold_equals_cpu(int rows, int cols, uint64_t seed, bool with_teacher) {
  SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) +
               (with_teacher ? " with teacher" : " without teacher"));
  // Coarse values (multiples of 0.5) make ties, so the first-maximum rule is exercised.
  std::vector<T> logits = uniform<T>(size_t(rows) * cols, seed, -4, 4);
  std::vector<T> teacher = uniform<T>(size_t(rows) * cols, seed + 1, -4, 4);
  for (size_t i = 0; i < logits.size(); i += 3)
    logits[i] = T(std::round(double(logits[i]) * 2) / 2);
  for (size_t i = 0; i < teacher.size(); i += 2) teacher[i] = T(std::round(double(teacher[i])));
  const std::vector<int32_t> labels = random_labels(rows, cols, seed + 2);
  const T* t = with_teacher ? teacher.data() : nullptr;

  ClassifierStats want, got;
  kernel_testing::classifier_stats<T>(ref::classifier_row_stats<T>, rows, cols, logits.data(),
                                      labels.data(), t, &want);
  const std::vector<double> per_row = cpu_row_stats<T>(rows, cols, logits, labels, t);
  fold_row_stats(rows, per_row.data(), with_teacher, &got);
  EXPECT_TRUE(same_bits(got, want));
  EXPECT_EQ(got.count, rows);
  EXPECT_EQ(got.correct, want.correct);
  EXPECT_EQ(got.agree, want.agree);

  // Accumulates: folding the batch again onto the stats equals a merge of two batches.
  ClassifierStats twice = want;
  twice.merge(want);
  fold_row_stats(rows, per_row.data(), with_teacher, &got);
  EXPECT_EQ(got.count, twice.count);
  EXPECT_EQ(got.correct, twice.correct);
  for (int b = 0; b < kEceBins; ++b) EXPECT_EQ(got.bin_count[b], twice.bin_count[b]) << "bin " << b;
  EXPECT_NEAR(got.nll_sum, twice.nll_sum, 1e-12 * std::fabs(twice.nll_sum));
}

TEST(MetricsFold, EqualsCpuStatsBitwise) {
  check_fold_equals_cpu<float>(1, 1, 10, false);
  check_fold_equals_cpu<float>(1, 7, 20, true);
  check_fold_equals_cpu<float>(37, 10, 30, true);
  check_fold_equals_cpu<float>(300, 3, 40, false);
  check_fold_equals_cpu<double>(129, 100, 50, true);
  check_fold_equals_cpu<double>(64, 2, 60, false);
}

TEST(MetricsFold, BinBoundariesAndTeacherFields) {
  // Confidences 1/2 (a bin boundary, lower bin), 1/3, 1 (top bin) and 1/cols; teacher agreement
  // through the first-maximum rule.
  const double big = -1000;
  const int cols = 3;
  const std::vector<double> logits = {2, 2, big, 0, 0, 0, 7, big, big, 1, 1, 1};
  const std::vector<double> teacher = {0, 0, 0, 1, 1, 0, 0, 2, 2, 3, 0, 3};
  const std::vector<int32_t> labels = {0, 2, 0, 1};
  for (bool with_teacher : {false, true}) {
    ClassifierStats want, got;
    const double* t = with_teacher ? teacher.data() : nullptr;
    kernel_testing::classifier_stats<double>(cpu::classifier_row_stats<double>, 4, cols, logits.data(), labels.data(), t, &want);
    const std::vector<double> rows = cpu_row_stats<double>(4, cols, logits, labels, t);
    fold_row_stats(4, rows.data(), with_teacher, &got);
    EXPECT_TRUE(same_bits(got, want)) << "with_teacher " << with_teacher;
    EXPECT_EQ(got.bin_count[4], 1);              // confidence exactly 0.5
    EXPECT_EQ(got.bin_count[9], 1);              // confidence 1
    EXPECT_EQ(got.bin_count[3], 2);              // two uniform rows, 1/3
    EXPECT_EQ(got.agree, with_teacher ? 3 : 0);  // rows 0, 1, 3 agree (first maxima), row 2 not
  }
}

TEST(MetricsFold, EceBinRule) {
  EXPECT_EQ(ece_bin(0.0), 0);
  EXPECT_EQ(ece_bin(0.1), 0);  // boundary belongs to the lower bin
  EXPECT_EQ(ece_bin(std::nextafter(0.1, 1.0)), 1);
  EXPECT_EQ(ece_bin(0.5), 4);
  EXPECT_EQ(ece_bin(0.95), 9);
  EXPECT_EQ(ece_bin(1.0), 9);
}

TEST(MetricsFold, EmptyAndInvalid) {
  ClassifierStats st;
  fold_row_stats(0, nullptr, true, &st);
  EXPECT_EQ(st.count, 0);
  const double row[kRowStatFields] = {1, 0.5, 0.9, 1, 0.25};
  EXPECT_THROW(fold_row_stats(1, row, true, nullptr), Error);
  EXPECT_THROW(fold_row_stats(-1, row, true, &st), Error);
  fold_row_stats(1, row, false, &st);  // teacher fields ignored without a teacher
  EXPECT_EQ(st.agree, 0);
  EXPECT_EQ(st.kl_sum, 0.0);
  EXPECT_EQ(st.correct, 1);
  EXPECT_EQ(st.bin_count[8], 1);
}

}  // namespace
}  // namespace kd
