// Tests for kernels/metrics.h: a hand-made batch whose accuracy, NLL, ECE, agreement and KL are
// worked out in closed form, ECE bin boundaries, merge and accumulation across batches, and cpu::
// against ref:: bitwise for any OpenMP thread count.
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


TEST(ClassifierStatsKernel, HandMadeBatch) {
  const double big = -1000;  // probability exp(-1000) is exactly 0 next to 1 in double
  const std::vector<double> logits = {
      2, 2, big,               // tie -> class 0 (first maximum); p = (1/2, 1/2, 0); conf 0.5
      0, 0, 0,                 // -> class 0; uniform; conf 1/3
      0, std::log(3.0), big,   // -> class 1; p = (1/4, 3/4, 0); conf 3/4
      5, 0, 0};                // -> class 0; conf e^5/(e^5+2)
  const std::vector<int32_t> labels = {0, 2, 1, 1};  // correct, wrong, correct, wrong
  const std::vector<double> teacher = {0, 1, 0,   // -> 1, disagrees
                                       0, 0, 0,   // -> 0 (first maximum), agrees
                                       0, 1, 0,   // -> 1, agrees
                                       1, 1, 0};  // -> 0 (first maximum), agrees
  ClassifierStats st;
  kernel_testing::classifier_stats<double>(cpu::classifier_row_stats<double>, 4, 3, logits.data(), labels.data(), teacher.data(), &st);

  const double e5 = std::exp(5.0), conf3 = e5 / (e5 + 2);
  EXPECT_EQ(st.count, 4);
  EXPECT_EQ(st.correct, 2);
  EXPECT_DOUBLE_EQ(st.accuracy(), 0.5);
  const double nll = std::log(2.0) + std::log(3.0) - std::log(0.75) + std::log(e5 + 2);
  EXPECT_NEAR(st.nll(), nll / 4, 1e-14);
  // Bins: 0.5 -> 4 (boundary belongs to the lower bin), 1/3 -> 3, 0.75 -> 7, 0.987 -> 9.
  const int64_t want_bins[kEceBins] = {0, 0, 0, 1, 1, 0, 0, 1, 0, 1};
  for (int b = 0; b < kEceBins; ++b) EXPECT_EQ(st.bin_count[b], want_bins[b]) << "bin " << b;
  EXPECT_EQ(st.bin_conf_sum[4], 0.5);
  EXPECT_EQ(st.bin_correct_sum[4], 1.0);
  EXPECT_EQ(st.bin_correct_sum[9], 0.0);
  const double ece = (std::fabs(1 - 0.5) + std::fabs(0 - 1.0 / 3) + std::fabs(1 - 0.75) +
                      std::fabs(0 - conf3)) / 4;
  EXPECT_NEAR(st.ece(), ece, 1e-15);
  EXPECT_EQ(st.agree, 3);
  EXPECT_DOUBLE_EQ(st.agreement(), 0.75);
  // KL(teacher || model) row by row from the probabilities above.
  const double e = std::exp(1.0);
  const double pt0[] = {1 / (2 + e), e / (2 + e), 1 / (2 + e)};
  const double log_ps0[] = {std::log(0.5), std::log(0.5), big - 2 - std::log(2.0)};
  const double log_ps2[] = {std::log(0.25), std::log(0.75),
                            big - std::log(3.0) - std::log(4.0 / 3)};
  const double pt3[] = {e / (2 * e + 1), e / (2 * e + 1), 1 / (2 * e + 1)};
  const double log_ps3[] = {5 - std::log(e5 + 2), -std::log(e5 + 2), -std::log(e5 + 2)};
  double kl = 0;
  for (int j = 0; j < 3; ++j) {
    kl += pt0[j] * (std::log(pt0[j]) - log_ps0[j]);
    kl += pt0[j] * (std::log(pt0[j]) - log_ps2[j]);  // rows 0 and 2 share the teacher (0, 1, 0)
    kl += pt3[j] * (std::log(pt3[j]) - log_ps3[j]);
  }  // row 1: uniform vs uniform, KL 0
  EXPECT_NEAR(st.kl(), kl / 4, 1e-14 * kl);

  ClassifierStats rs;
  kernel_testing::classifier_stats<double>(ref::classifier_row_stats<double>, 4, 3, logits.data(), labels.data(), teacher.data(), &rs);
  EXPECT_TRUE(same_bits(rs, st));
}

TEST(ClassifierStatsKernel, EceBinBoundaries) {
  // Uniform logits over `cols` classes give confidence exactly 1/cols.
  struct Case {
    int cols, bin;
  } cases[] = {{1, 9}, {2, 4}, {4, 2}, {5, 1}, {8, 1}, {10, 0}, {3, 3}};
  for (Case c : cases) {
    std::vector<float> logits(c.cols, 0.25f);
    const int32_t label = 0;
    ClassifierStats st;
    kernel_testing::classifier_stats<float>(cpu::classifier_row_stats<float>, 1, c.cols, logits.data(), &label, nullptr, &st);
    EXPECT_EQ(st.bin_count[c.bin], 1) << "cols " << c.cols << " confidence " << 1.0 / c.cols;
    EXPECT_DOUBLE_EQ(st.bin_conf_sum[c.bin], 1.0 / c.cols);
  }
}

TEST(ClassifierStatsKernel, WithoutTeacherLeavesTeacherFieldsZero) {
  auto logits = uniform<float>(6 * 4, 10, -3, 3);
  auto labels = random_labels(6, 4, 11);
  ClassifierStats st;
  kernel_testing::classifier_stats<float>(cpu::classifier_row_stats<float>, 6, 4, logits.data(), labels.data(), nullptr, &st);
  EXPECT_EQ(st.count, 6);
  EXPECT_EQ(st.agree, 0);
  EXPECT_EQ(st.kl_sum, 0.0);
  ClassifierStats empty;
  EXPECT_EQ(empty.accuracy(), 0.0);
  EXPECT_EQ(empty.ece(), 0.0);
  EXPECT_EQ(empty.nll(), 0.0);
}

TEST(ClassifierStatsKernel, MergeOfHalvesEqualsWhole) {
  const int rows = 101, cols = 7, half = 50;
  auto logits = uniform<double>(rows * cols, 20, -4, 4);
  auto teacher = uniform<double>(rows * cols, 21, -4, 4);
  auto labels = random_labels(rows, cols, 22);
  ClassifierStats whole, a, b, seq;
  kernel_testing::classifier_stats<double>(cpu::classifier_row_stats<double>, rows, cols, logits.data(), labels.data(), teacher.data(), &whole);
  kernel_testing::classifier_stats<double>(cpu::classifier_row_stats<double>, half, cols, logits.data(), labels.data(), teacher.data(), &a);
  kernel_testing::classifier_stats<double>(cpu::classifier_row_stats<double>, rows - half, cols, logits.data() + half * cols,
                                labels.data() + half, teacher.data() + half * cols, &b);
  a.merge(b);
  EXPECT_EQ(a.count, whole.count);
  EXPECT_EQ(a.correct, whole.correct);
  EXPECT_EQ(a.agree, whole.agree);
  EXPECT_NEAR(a.nll_sum, whole.nll_sum, 1e-12 * whole.nll_sum);
  EXPECT_NEAR(a.kl_sum, whole.kl_sum, 1e-12 * whole.kl_sum);
  for (int k = 0; k < kEceBins; ++k) {
    EXPECT_EQ(a.bin_count[k], whole.bin_count[k]);
    EXPECT_NEAR(a.bin_conf_sum[k], whole.bin_conf_sum[k], 1e-12);
    EXPECT_EQ(a.bin_correct_sum[k], whole.bin_correct_sum[k]);
  }
  EXPECT_NEAR(a.ece(), whole.ece(), 1e-14);
  // Calling twice into one stats accumulates: the same additions in the same order as `whole`.
  kernel_testing::classifier_stats<double>(cpu::classifier_row_stats<double>, half, cols, logits.data(), labels.data(), teacher.data(), &seq);
  kernel_testing::classifier_stats<double>(cpu::classifier_row_stats<double>, rows - half, cols, logits.data() + half * cols,
                                labels.data() + half, teacher.data() + half * cols, &seq);
  EXPECT_TRUE(same_bits(seq, whole));
}

template <class T>
void check_cpu_equals_ref_for_any_thread_count() {
  const int rows = 3001, cols = 10;  // above the parallel threshold
  auto logits = uniform<T>(rows * cols, 30, -5, 5), teacher = uniform<T>(rows * cols, 31, -5, 5);
  auto labels = random_labels(rows, cols, 32);
  ClassifierStats want;
  kernel_testing::classifier_stats<T>(ref::classifier_row_stats<T>, rows, cols, logits.data(), labels.data(), teacher.data(), &want);
  for_thread_counts([&](int threads) {
    ClassifierStats got;
    kernel_testing::classifier_stats<T>(cpu::classifier_row_stats<T>, rows, cols, logits.data(), labels.data(), teacher.data(), &got);
    EXPECT_TRUE(same_bits(got, want)) << threads << " threads";
  });
}

TEST(ClassifierStatsKernel, CpuEqualsRefBitwiseForAnyThreadCount) {
  check_cpu_equals_ref_for_any_thread_count<float>();
  check_cpu_equals_ref_for_any_thread_count<double>();
}

TEST(ClassifierStatsKernel, RejectsOutOfRangeLabel) {
  std::vector<float> logits(6, 0.0f);
  const std::vector<int32_t> labels = {0, 3};
  ClassifierStats st;
  EXPECT_THROW(kernel_testing::classifier_stats<float>(cpu::classifier_row_stats<float>, 2, 3, logits.data(), labels.data(), nullptr, &st),
               Error);
  EXPECT_THROW(kernel_testing::classifier_stats<float>(ref::classifier_row_stats<float>, 2, 3, logits.data(), labels.data(), nullptr, &st),
               Error);
  EXPECT_EQ(st.count, 0) << "a refused batch must not be half-counted";
}

}  // namespace
}  // namespace kd
