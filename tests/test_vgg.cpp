// VGG-16 (models/vgg.cpp) against paper-notes §2 and the PyTorch reference (tools/models_torch.py
// VGG16): exact parameter counts for 100 classes / 3 channels and 10 classes / 1 channel, the
// state-dict names, shapes and order of the code's two nn.Sequentials, the init (conv weights
// N(0, sqrt(2 / (9 out))), conv biases 0, Linear U(+-1/sqrt(512))), the input checks, and the
// classifier's dropout: off in eval mode, in training keyed by the step the model is given.
// (tests/test_golden.cpp compares names and logits with PyTorch's.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "models/classifier.h"
#include "tests/gradcheck.h"

namespace kd {
namespace {

using models::make_model;

// The paper code's features Sequential: a conv and its ReLU take two indices, a pool one.
std::vector<std::pair<std::string, Shape>> expected_state_dict(int classes, int channels) {
  const int config[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0,
                        512, 512, 512, 0};
  std::vector<std::pair<std::string, Shape>> out;
  int index = 0, in = channels;
  for (int v : config) {
    if (v == 0) {
      index += 1;
      continue;
    }
    const std::string p = "features." + std::to_string(index) + ".";
    out.push_back({p + "weight", {v, in, 3, 3}});
    out.push_back({p + "bias", {v}});
    index += 2;
    in = v;
  }
  out.push_back({"classifier.1.weight", {512, 512}});
  out.push_back({"classifier.1.bias", {512}});
  out.push_back({"classifier.4.weight", {512, 512}});
  out.push_back({"classifier.4.bias", {512}});
  out.push_back({"classifier.6.weight", {classes, 512}});
  out.push_back({"classifier.6.bias", {classes}});
  return out;
}

// One test for both, as building a VGG-16 (15M seeded draws) is the slow part.
TEST(Vgg16, ParameterCountsAndStateDictNamesShapesAndOrderAreThePaperCodes) {
  // The counts come from tools/models_torch.py (python3 tools/models_torch.py asserts them).
  struct Case {
    int classes, channels;
    int64_t parameters;
  };
  for (const Case& c : {Case{100, 3, 15291300}, Case{10, 1, 15243978}}) {
    const int classes = c.classes, channels = c.channels;
    auto m = make_model("vgg16", classes, channels, 0);
    EXPECT_EQ(m->num_parameters(), c.parameters);
    const auto want = expected_state_dict(classes, channels);
    const nn::NamedTensors got = m->state_dict();
    ASSERT_EQ(got.size(), want.size());
    ASSERT_EQ(got.size(), 32u);  // 13 convs and 3 linears, weight + bias each; no buffers
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].first, want[i].first) << i;
      EXPECT_EQ(got[i].second.shape(), want[i].second) << want[i].first;
      EXPECT_EQ(got[i].second.dtype(), DType::F32) << want[i].first;
    }
    EXPECT_TRUE(m->named_buffers().empty());
    EXPECT_EQ(m->arch, "vgg16");
    EXPECT_EQ(m->image_size, 32);
    EXPECT_EQ(m->in_channels, channels);
  }
}

TEST(Vgg16, ConvInitIsHeFanOutWithZeroBiasAndLinearIsPyTorchDefault) {
  auto m = make_model("vgg16", 100, 3, 5);
  for (auto& kv : m->state_dict()) {
    const std::string& name = kv.first;
    std::vector<double> v = kv.second.to(DType::F64).to_vector<double>();
    if (name.rfind("features.", 0) == 0 && name.find("bias") != std::string::npos) {
      EXPECT_TRUE(std::all_of(v.begin(), v.end(), [](double b) { return b == 0; })) << name;
    } else if (name.rfind("features.", 0) == 0) {
      const double want = std::sqrt(2.0 / (9.0 * kv.second.size(0)));
      double mean = 0, sq = 0;
      for (double w : v) mean += w, sq += w * w;
      mean /= v.size();
      const double sd = std::sqrt(sq / v.size() - mean * mean);
      // >= 1728 draws: the sample sd is within 6% of sigma with overwhelming probability.
      EXPECT_NEAR(sd / want, 1.0, 0.06) << name;
      EXPECT_NEAR(mean, 0.0, 6 * want / std::sqrt(double(v.size()))) << name;
    } else {
      const double bound = 1.0 / std::sqrt(512.0);  // every Linear here has fan_in 512
      double lo = 1, hi = -1;
      for (double w : v) lo = std::min(lo, w), hi = std::max(hi, w);
      EXPECT_GE(lo, -bound) << name;
      EXPECT_LE(hi, bound) << name;
      EXPECT_LT(lo, -0.8 * bound) << name;  // it spans the interval: not a narrower init
      EXPECT_GT(hi, 0.8 * bound) << name;
    }
  }
}

TEST(Vgg16, OutputShapeAndRefusedInputs) {
  auto m = make_model("vgg16", 10, 1, 0);
  m->eval();
  NoGradGuard no_grad;
  Tensor y = m->forward(testing::random_f64({2, 1, 32, 32}, 1).to(DType::F32));
  EXPECT_EQ(y.shape(), (Shape{2, 10}));
  EXPECT_THROW(m->forward(Tensor::zeros({2, 1, 28, 28})), Error);  // Fashion-MNIST without pad
  EXPECT_THROW(m->forward(Tensor::zeros({2, 3, 32, 32})), Error);  // wrong channel count
}

// The classifier's two dropouts: identity in eval mode; in training a pure function of the
// model's seed and the step it was given (set_step reaches them through the containers).
TEST(Vgg16, DropoutIsOffInEvalAndKeyedByTheStepInTraining) {
  auto m = make_model("vgg16", 10, 3, 7);
  Tensor x = testing::random_f64({2, 3, 32, 32}, 2).to(DType::F32);
  NoGradGuard no_grad;
  auto logits = [&](bool training, uint64_t step) {
    m->train(training);
    m->set_step(step);
    return m->forward(x).to_vector<float>();
  };
  const std::vector<float> eval = logits(false, 0);
  EXPECT_EQ(logits(false, 99), eval) << "eval mode must not depend on the step";
  const std::vector<float> train3 = logits(true, 3);
  EXPECT_NE(train3, eval) << "dropout did nothing in training";
  EXPECT_EQ(logits(true, 3), train3) << "the same step must repeat the same masks";
  EXPECT_NE(logits(true, 4), train3) << "another step must draw other masks";
  // Another model seed draws other masks at the same step (same weights loaded).
  auto other = make_model("vgg16", 10, 3, 8);
  std::map<std::string, Tensor> weights;
  for (auto& kv : m->state_dict()) weights[kv.first] = kv.second;
  other->load_state_dict(weights);
  other->train();
  other->set_step(3);
  EXPECT_NE(other->forward(x).to_vector<float>(), train3);
  other->eval();
  EXPECT_EQ(other->forward(x).to_vector<float>(), eval);
}

}  // namespace
}  // namespace kd
