// Linear CKA (engine/cka.h) against numpy (tests/golden/cka_golden.safetensors, made by
// tools/cka_numpy.py: the paper code's formula), its defining properties (CKA(X, X) = 1,
// invariance to isotropic scaling, orthogonal rotation and per-feature shifts, near 0 for
// independent features), PreResNet's stage outputs, and the stage CKA over a dataset
// (apps/cka.h). `kdlab eval --cka` end to end is in test_cka_cli.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "apps/cka.h"
#include "base/philox.h"
#include "engine/autograd.h"
#include "engine/cka.h"
#include "engine/safetensors.h"
#include "models/classifier.h"
#include "tests/data_testing.h"

#ifndef KDLAB_SOURCE_DIR
#define KDLAB_SOURCE_DIR "/work/main"
#endif

namespace kd {
namespace {

std::vector<double> normal_matrix(int64_t n, int64_t p, uint64_t seed) {
  std::vector<double> out(size_t(n * p));
  for (size_t i = 0; i < out.size(); ++i) out[i] = philox_normal(seed, kStreamTest, i);
  return out;
}

double cka(const std::vector<double>& x, int64_t n, const std::vector<double>& y) {
  return linear_cka(x, n, int64_t(x.size()) / n, y, int64_t(y.size()) / n);
}

// x [n, p] times a random p x p orthogonal matrix (Gram-Schmidt on Gaussian columns).
std::vector<double> rotate(const std::vector<double>& x, int64_t n, int64_t p, uint64_t seed) {
  std::vector<double> q = normal_matrix(p, p, seed);  // columns q[:, j]
  for (int64_t j = 0; j < p; ++j) {
    for (int64_t k = 0; k < j; ++k) {
      double dot = 0;
      for (int64_t i = 0; i < p; ++i) dot += q[size_t(i * p + j)] * q[size_t(i * p + k)];
      for (int64_t i = 0; i < p; ++i) q[size_t(i * p + j)] -= dot * q[size_t(i * p + k)];
    }
    double norm = 0;
    for (int64_t i = 0; i < p; ++i) norm += q[size_t(i * p + j)] * q[size_t(i * p + j)];
    for (int64_t i = 0; i < p; ++i) q[size_t(i * p + j)] /= std::sqrt(norm);
  }
  std::vector<double> out(size_t(n * p), 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < p; ++j)
      for (int64_t k = 0; k < p; ++k)
        out[size_t(r * p + j)] += x[size_t(r * p + k)] * q[size_t(k * p + j)];
  return out;
}

TEST(Cka, EqualsNumpyOnTheGoldenActivations) {
  const std::string path = std::string(KDLAB_SOURCE_DIR) + "/tests/golden/cka_golden.safetensors";
  StFile golden = read_safetensors(path);
  std::stringstream cases(golden.metadata.at("cases"));
  std::string name;
  int checked = 0;
  while (std::getline(cases, name, ',')) {
    const StEntry& x = require(golden, name + ".x", path);
    const StEntry& y = require(golden, name + ".y", path);
    const double want = values<double>(require(golden, name + ".cka", path)).at(0);
    const double got = linear_cka(values<double>(x), x.shape[0], x.shape[1], values<double>(y),
                                  y.shape[1]);
    EXPECT_NEAR(got, want, 1e-12 * std::abs(want)) << name;
    // The tensor front door (f64 tensors) gives the same number.
    Tensor tx = Tensor::from_vector<double>({x.shape[0], x.shape[1]}, values<double>(x));
    Tensor ty = Tensor::from_vector<double>({y.shape[0], y.shape[1]}, values<double>(y));
    EXPECT_EQ(linear_cka(tx, ty), got) << name;
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

TEST(Cka, OfARepresentationWithItselfIsOne) {
  const auto x = normal_matrix(40, 12, 1);
  EXPECT_NEAR(cka(x, 40, x), 1.0, 1e-12);
}

TEST(Cka, IsInvariantToIsotropicScalingRotationAndShifts) {
  const int64_t n = 33, p = 10, q = 6;
  const auto x = normal_matrix(n, p, 2);
  auto y = normal_matrix(n, q, 3);
  for (int64_t r = 0; r < n; ++r)  // correlate y with x so CKA is far from 0 and from 1
    for (int64_t j = 0; j < q; ++j) y[size_t(r * q + j)] += x[size_t(r * p + j)];
  const double base = cka(x, n, y);
  ASSERT_GT(base, 0.2);
  ASSERT_LT(base, 0.95);
  auto scaled = x;
  for (double& v : scaled) v *= 37.5;
  EXPECT_NEAR(cka(scaled, n, y), base, 1e-12 * base);
  EXPECT_NEAR(cka(rotate(x, n, p, 4), n, y), base, 1e-12 * base);
  EXPECT_NEAR(cka(x, n, rotate(y, n, q, 5)), base, 1e-12 * base);
  auto shifted = x;  // a constant per feature: removed by the centering
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < p; ++j) shifted[size_t(r * p + j)] += 3.0 * double(j) - 7.0;
  EXPECT_NEAR(cka(shifted, n, y), base, 1e-11 * base);
  EXPECT_NEAR(cka(y, n, x), base, 1e-12 * base) << "symmetric";
}

TEST(Cka, OfIndependentFeaturesIsSmall) {
  // For independent Gaussian features E[CKA] is about sqrt(p q) / n = 0.002 here.
  const int64_t n = 2000;
  const double value = cka(normal_matrix(n, 4, 6), n, normal_matrix(n, 4, 7));
  EXPECT_GE(value, 0.0);
  EXPECT_LT(value, 0.02);
}

TEST(Cka, IsUndefinedWithoutVarianceAndSaysSo) {
  std::vector<double> constant(5 * 3, 2.0);
  EXPECT_THROW(cka(constant, 5, normal_matrix(5, 3, 8)), Error);
  EXPECT_THROW(cka(normal_matrix(1, 3, 9), 1, normal_matrix(1, 3, 10)), Error);
}

TEST(Cka, CenteredGramRowsAndColumnsSumToZero) {
  const auto g = centered_gram(normal_matrix(7, 3, 11), 7, 3);
  for (int i = 0; i < 7; ++i) {
    double row = 0, col = 0;
    for (int j = 0; j < 7; ++j) row += g[size_t(i * 7 + j)], col += g[size_t(j * 7 + i)];
    EXPECT_NEAR(row, 0.0, 1e-12);
    EXPECT_NEAR(col, 0.0, 1e-12);
  }
}

Tensor random_images(int n, int c, int size, uint64_t seed) {
  std::vector<float> v(size_t(n) * c * size * size);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 2 * philox_uniform(seed, kStreamTest, i) - 1;
  return Tensor::from_vector<float>({n, c, size, size}, v);
}

TEST(CkaStages, PreResNetReturnsPooledStageOutputsAndTheSameLogits) {
  NoGradGuard no_grad;
  {
    auto model = models::make_model("preresnet8", 10, 3, 0);
    model->eval();
    Tensor x = random_images(5, 3, 32, 1);
    Tensor logits;
    std::vector<Tensor> stages = model->forward_stages(x, &logits);
    ASSERT_TRUE(model->has_stages());
    ASSERT_EQ(stages.size(), 3u);
    const int64_t channels[3] = {16, 32, 64};
    for (int k = 0; k < 3; ++k)
      EXPECT_EQ(stages[size_t(k)].shape(), (Shape{5, channels[k]})) << "stage " << k;
    EXPECT_EQ(logits.to_vector<float>(), model->forward(x).to_vector<float>());
  }
}

TEST(CkaStages, BottleneckStagesHaveFourTimesTheChannels) {
  NoGradGuard no_grad;
  auto model = models::make_model("preresnet56", 10, 3, 0);
  model->eval();
  std::vector<Tensor> stages = model->forward_stages(random_images(2, 3, 32, 2), nullptr);
  ASSERT_EQ(stages.size(), 3u);
  EXPECT_EQ(stages[0].size(1), 64);
  EXPECT_EQ(stages[1].size(1), 128);
  EXPECT_EQ(stages[2].size(1), 256);
}

TEST(CkaStages, AModelWithoutStagesRefusesByName) {
  auto lenet = models::make_model("lenet5", 10, 1, 0);
  EXPECT_FALSE(lenet->has_stages());
  try {
    lenet->forward_stages(random_images(2, 1, 28, 3), nullptr);
    ADD_FAILURE() << "lenet5 returned stages";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("lenet5 has no stages"), std::string::npos) << e.what();
  }
  auto preresnet = models::make_model("preresnet8", 10, 1, 0);
  EXPECT_THROW(apps::check_cka_models(*preresnet, *lenet, "--cka"), InputError);
}

TEST(CkaStages, OverADatasetIsOneAgainstItselfAndBelowOneAgainstAnotherNet) {
  data::Dataset ds = data_testing::random_dataset(23, 1, 32, 32, 10);
  const data::Normalization norm = data::Normalization::unitcube(1);
  auto a = models::make_model("preresnet8", 10, 1, 1);
  auto b = models::make_model("preresnet8", 10, 1, 2);
  // Batches of 10: 10, 10, 3, each averaged with equal weight.
  apps::StageCka self = apps::measure_stage_cka(*a, *a, ds, norm, Device::cpu(), 10);
  EXPECT_EQ(self.batches, 3);
  EXPECT_EQ(self.skipped_batches, 0);
  ASSERT_EQ(self.per_stage.size(), 3u);
  for (double v : self.per_stage) EXPECT_NEAR(v, 1.0, 1e-12);
  apps::StageCka other = apps::measure_stage_cka(*a, *b, ds, norm, Device::cpu(), 10);
  ASSERT_EQ(other.per_stage.size(), 3u);
  for (double v : other.per_stage) {
    EXPECT_GT(v, 0.0);
    EXPECT_LT(v, 0.999);
  }
  // A last batch of one row has no CKA: it is left out and counted.
  data::Dataset odd = data_testing::random_dataset(21, 1, 32, 32, 10);
  apps::StageCka skipped = apps::measure_stage_cka(*a, *b, odd, norm, Device::cpu(), 10);
  EXPECT_EQ(skipped.batches, 2);
  EXPECT_EQ(skipped.skipped_batches, 1);
}

}  // namespace
}  // namespace kd
