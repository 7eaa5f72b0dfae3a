// Model structure tests: parameter counts against paper-notes §2, state-dict names, order, shapes
// and dtypes exactly as PyTorch names them (so checkpoints load in PyTorch), output shapes, seeded
// initialisation, train/eval behaviour of batch-norm nets, and the ensemble teacher (log of the
// mean of member probabilities, recorded on no tape).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "models/classifier.h"
#include "models/ensemble.h"
#include "tests/gradcheck.h"

namespace kd {
namespace {

using models::make_model;

std::map<std::string, Tensor> as_map(const nn::NamedTensors& named) {
  std::map<std::string, Tensor> m;
  for (auto& kv : named) m[kv.first] = kv.second;
  return m;
}

std::vector<std::string> names_of(const nn::NamedTensors& named) {
  std::vector<std::string> out;
  for (auto& kv : named) out.push_back(kv.first);
  return out;
}

Tensor images(int n, int c, int hw, uint64_t seed, DType dtype = DType::F32) {
  Tensor x = testing::random_f64({n, c, hw, hw}, seed);
  return dtype == DType::F64 ? x : x.to(dtype);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to(DType::F64).to_vector<double>(),
                      y = b.to(DType::F64).to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

TEST(Models, ParameterCountsMatchThePaperCode) {
  EXPECT_EQ(make_model("lenet5", 10, 1, 0)->num_parameters(), 61706);
  EXPECT_EQ(make_model("preresnet20", 100, 3, 0)->num_parameters(), 278132);
  EXPECT_EQ(make_model("preresnet56", 100, 3, 0)->num_parameters(), 613556);
  EXPECT_EQ(make_model("preresnet20", 10, 3, 0)->num_parameters(), 272282);
  EXPECT_EQ(make_model("preresnet56", 10, 3, 0)->num_parameters(), 590426);
  EXPECT_EQ(make_model("preresnet110", 100, 3, 0)->num_parameters(), 1169972);
  EXPECT_EQ(make_model("preresnet110", 10, 3, 0)->num_parameters(), 1146842);
  // GroupNorm(1, C) has the same affine parameters as BatchNorm and no buffers.
  auto ln = make_model("preresnet20-ln", 100, 3, 0);
  EXPECT_EQ(ln->num_parameters(), 278132);
  EXPECT_TRUE(ln->named_buffers().empty());
}

TEST(Models, LeNetStateDictNamesInPyTorchOrder) {
  auto m = make_model("lenet5", 10, 1, 0);
  std::vector<std::string> expected = {"0.weight", "0.bias",   "3.weight", "3.bias",    "7.weight",
                                       "7.bias",   "9.weight", "9.bias",   "11.weight", "11.bias"};
  EXPECT_EQ(names_of(m->state_dict()), expected);
  auto sd = as_map(m->state_dict());
  EXPECT_EQ(sd["0.weight"].shape(), (Shape{6, 1, 5, 5}));
  EXPECT_EQ(sd["3.bias"].shape(), (Shape{16}));
  EXPECT_EQ(sd["7.weight"].shape(), (Shape{120, 400}));
  EXPECT_EQ(sd["11.bias"].shape(), (Shape{10}));
  EXPECT_EQ(sd["11.weight"].shape(), (Shape{10, 84}));
  EXPECT_EQ(m->arch, "lenet5");
  EXPECT_EQ(m->image_size, 28);
}

// The PyTorch state-dict order of the paper's PreResNet with basic blocks.
std::vector<std::string> expected_preresnet_basic_names(int depth) {
  int n = (depth - 2) / 6;
  std::vector<std::string> out = {"conv1.weight"};
  auto bn = [&](const std::string& p) {
    for (const char* s : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
      out.push_back(p + "." + s);
  };
  for (int stage = 1; stage <= 3; ++stage) {
    for (int i = 0; i < n; ++i) {
      std::string b = "layer" + std::to_string(stage) + "." + std::to_string(i) + ".";
      bn(b + "bn1");
      out.push_back(b + "conv1.weight");
      bn(b + "bn2");
      out.push_back(b + "conv2.weight");
      if (stage > 1 && i == 0) out.push_back(b + "downsample.0.weight");
    }
  }
  bn("bn");
  out.push_back("fc.weight");
  out.push_back("fc.bias");
  return out;
}

TEST(Models, PreResNet20StateDictNamesShapesAndDtypes) {
  auto m = make_model("preresnet20", 100, 3, 0);
  EXPECT_EQ(names_of(m->state_dict()), expected_preresnet_basic_names(20));
  auto sd = as_map(m->state_dict());
  EXPECT_EQ(sd["conv1.weight"].shape(), (Shape{16, 3, 3, 3}));
  EXPECT_EQ(sd["layer1.0.bn1.running_mean"].shape(), (Shape{16}));
  EXPECT_EQ(sd["layer1.0.bn1.running_mean"].dtype(), DType::F32);
  const Tensor& nbt = sd["layer1.0.bn1.num_batches_tracked"];
  EXPECT_EQ(nbt.dtype(), DType::I64);
  EXPECT_EQ(nbt.dim(), 0);
  EXPECT_EQ(nbt.item(), 0.0);
  EXPECT_EQ(sd["layer2.0.downsample.0.weight"].shape(), (Shape{32, 16, 1, 1}));
  EXPECT_EQ(sd["layer3.0.downsample.0.weight"].shape(), (Shape{64, 32, 1, 1}));
  EXPECT_EQ(sd.count("layer1.0.downsample.0.weight"), 0u);
  EXPECT_EQ(sd.count("layer2.1.downsample.0.weight"), 0u);
  EXPECT_EQ(sd["layer3.2.conv2.weight"].shape(), (Shape{64, 64, 3, 3}));
  EXPECT_EQ(sd["bn.weight"].shape(), (Shape{64}));
  EXPECT_EQ(sd["fc.weight"].shape(), (Shape{100, 64}));
  EXPECT_EQ(sd["fc.bias"].shape(), (Shape{100}));
  // Parameters are exactly the non-buffer entries.
  EXPECT_EQ(m->named_parameters().size() + m->named_buffers().size(), m->state_dict().size());
  for (auto& kv : m->named_parameters()) EXPECT_TRUE(kv.second.requires_grad()) << kv.first;
  for (auto& kv : m->named_buffers()) EXPECT_FALSE(kv.second.requires_grad()) << kv.first;
  // BN init: gamma 1, beta 0, running mean 0, running var 1.
  for (double v : sd["layer2.1.bn2.weight"].to(DType::F64).to_vector<double>()) EXPECT_EQ(v, 1.0);
  for (double v : sd["layer2.1.bn2.bias"].to(DType::F64).to_vector<double>()) EXPECT_EQ(v, 0.0);
  for (double v : sd["bn.running_var"].to(DType::F64).to_vector<double>()) EXPECT_EQ(v, 1.0);
}

TEST(Models, PreResNetConvInitIsHeFanOut) {
  // N(0, sqrt(2 / (k*k*out))): layer3 3x3 convs with 64 outputs have std sqrt(2/576) = 0.0589.
  auto m = make_model("preresnet20", 100, 3, 7);
  auto sd = as_map(m->state_dict());
  std::vector<double> w = sd["layer3.1.conv1.weight"].to(DType::F64).to_vector<double>();
  double sum = 0, sq = 0;
  for (double v : w) sum += v, sq += v * v;
  double mean = sum / w.size(), sd_est = std::sqrt(sq / w.size() - mean * mean);
  double expected = std::sqrt(2.0 / (9.0 * 64));
  EXPECT_NEAR(mean, 0.0, 4 * expected / std::sqrt(double(w.size())));
  EXPECT_NEAR(sd_est, expected, 0.03 * expected);  // 36,864 draws: relative sd error ~0.4%
}

TEST(Models, PreResNet56BottleneckNames) {
  auto m = make_model("preresnet56", 100, 3, 0);
  auto sd = as_map(m->state_dict());
  EXPECT_EQ(sd["layer1.0.downsample.0.weight"].shape(), (Shape{64, 16, 1, 1}));
  EXPECT_EQ(sd["layer3.5.conv3.weight"].shape(), (Shape{256, 64, 1, 1}));
  EXPECT_EQ(sd["layer3.5.conv2.weight"].shape(), (Shape{64, 64, 3, 3}));
  EXPECT_EQ(sd["layer2.0.downsample.0.weight"].shape(), (Shape{128, 64, 1, 1}));
  EXPECT_EQ(sd["layer1.0.bn1.weight"].shape(), (Shape{16}));
  EXPECT_EQ(sd["layer1.1.bn1.weight"].shape(), (Shape{64}));
  EXPECT_EQ(sd["layer3.5.bn3.num_batches_tracked"].dtype(), DType::I64);
  EXPECT_EQ(sd.count("layer1.1.downsample.0.weight"), 0u);
  EXPECT_EQ(sd.count("layer3.6.conv1.weight"), 0u);
  EXPECT_EQ(sd["bn.weight"].shape(), (Shape{256}));
  EXPECT_EQ(sd["fc.weight"].shape(), (Shape{100, 256}));
  // Block order inside a bottleneck: bn1, conv1, bn2, conv2, bn3, conv3, downsample.
  std::vector<std::string> names = names_of(m->state_dict());
  auto pos = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) - names.begin();
  };
  EXPECT_LT(pos("layer1.0.bn1.num_batches_tracked"), pos("layer1.0.conv1.weight"));
  EXPECT_LT(pos("layer1.0.conv1.weight"), pos("layer1.0.bn2.weight"));
  EXPECT_LT(pos("layer1.0.conv3.weight"), pos("layer1.0.downsample.0.weight"));
  EXPECT_LT(pos("layer1.0.downsample.0.weight"), pos("layer1.1.bn1.weight"));
  EXPECT_EQ(names.front(), "conv1.weight");
  EXPECT_EQ(names.back(), "fc.bias");
}

TEST(Models, OutputShapesAndDtypes) {
  auto lenet = make_model("lenet5", 10, 1, 0);
  EXPECT_EQ(lenet->forward(images(3, 1, 28, 1)).shape(), (Shape{3, 10}));
  auto rn = make_model("preresnet20", 100, 3, 0);
  Tensor y = rn->forward(images(1, 3, 32, 2));
  EXPECT_EQ(y.shape(), (Shape{1, 100}));
  EXPECT_EQ(y.dtype(), DType::F32);
  auto rn64 = make_model("preresnet20", 7, 3, 0);
  rn64->to(DType::F64);
  Tensor y64 = rn64->forward(images(2, 3, 32, 3, DType::F64));
  EXPECT_EQ(y64.shape(), (Shape{2, 7}));
  EXPECT_EQ(y64.dtype(), DType::F64);
  // Buffers that are not floating stay i64 after the dtype move.
  EXPECT_EQ(as_map(rn64->state_dict())["bn.num_batches_tracked"].dtype(), DType::I64);
  clear_tape();
}

TEST(Models, WrongInputsAndNamesAreRefused) {
  auto lenet = make_model("lenet5", 10, 1, 0);
  EXPECT_THROW(lenet->forward(images(2, 1, 32, 4)), Error);
  EXPECT_THROW(lenet->forward(images(2, 3, 28, 4)), Error);
  EXPECT_THROW(make_model("resnet18", 10, 3, 0), InputError);
  EXPECT_THROW(make_model("preresnet21", 10, 3, 0), InputError);
  EXPECT_THROW(make_model("preresnet", 10, 3, 0), InputError);
  EXPECT_THROW(make_model("lenet5", 1, 1, 0), InputError);
  clear_tape();
}

TEST(Models, SameSeedSameParametersDifferentSeedDifferent) {
  for (const char* arch : {"lenet5", "preresnet20"}) {
    SCOPED_TRACE(arch);
    int channels = std::string(arch) == "lenet5" ? 1 : 3;
    auto a = make_model(arch, 10, channels, 5), b = make_model(arch, 10, channels, 5);
    auto c = make_model(arch, 10, channels, 6);
    auto pa = a->named_parameters(), pb = b->named_parameters(), pc = c->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      EXPECT_EQ(max_abs_diff(pa[i].second, pb[i].second), 0.0) << pa[i].first;
      // BN affine parameters are constants; every weight tensor must change with the seed.
      if (pa[i].first.find("weight") != std::string::npos && pa[i].second.dim() >= 2) {
        EXPECT_GT(max_abs_diff(pa[i].second, pc[i].second), 0.0) << pa[i].first;
      }
    }
  }
}

TEST(Models, LoadStateDictCopiesValuesAndRefusesMismatches) {
  auto a = make_model("preresnet20", 10, 3, 1), b = make_model("preresnet20", 10, 3, 2);
  a->eval();
  b->eval();
  Tensor x = images(2, 3, 32, 8);
  NoGradGuard no_grad;
  EXPECT_GT(max_abs_diff(a->forward(x), b->forward(x)), 1e-3);
  b->load_state_dict(as_map(a->state_dict()));
  EXPECT_EQ(max_abs_diff(a->forward(x), b->forward(x)), 0.0);
  auto missing = as_map(a->state_dict());
  missing.erase("fc.bias");
  EXPECT_THROW(b->load_state_dict(missing), InputError);
  b->load_state_dict(missing, /*strict=*/false);
  auto wrong = as_map(a->state_dict());
  wrong["fc.bias"] = Tensor::zeros({11});
  EXPECT_THROW(b->load_state_dict(wrong), InputError);
  auto extra = as_map(a->state_dict());
  extra["fc.extra"] = Tensor::zeros({1});
  EXPECT_THROW(b->load_state_dict(extra), InputError);
}

TEST(Models, BatchNormNetsDifferBetweenTrainAndEval) {
  auto m = make_model("preresnet20", 10, 3, 3);
  Tensor x = images(4, 3, 32, 9);
  NoGradGuard no_grad;
  m->train();
  Tensor train_out = m->forward(x);
  m->eval();
  Tensor eval_out = m->forward(x);
  EXPECT_GT(max_abs_diff(train_out, eval_out), 1e-3);
  // Eval mode is deterministic and leaves the statistics alone.
  EXPECT_EQ(max_abs_diff(eval_out, m->forward(x)), 0.0);
  // LeNet has no batch-norm: both modes agree exactly.
  auto lenet = make_model("lenet5", 10, 1, 3);
  Tensor xi = images(2, 1, 28, 10);
  lenet->train();
  Tensor lt = lenet->forward(xi);
  lenet->eval();
  EXPECT_EQ(max_abs_diff(lt, lenet->forward(xi)), 0.0);
}

TEST(Models, NumBatchesTrackedCountsTrainForwardsOnly) {
  auto m = make_model("preresnet20", 10, 3, 4);
  Tensor x = images(2, 3, 32, 11);
  auto count = [&](const char* name) { return as_map(m->state_dict())[name].item(); };
  auto mean_of = [&](const char* name) { return as_map(m->state_dict())[name].clone(); };
  NoGradGuard no_grad;
  m->train();
  m->forward(x);
  m->forward(x);
  EXPECT_EQ(count("layer1.0.bn1.num_batches_tracked"), 2.0);
  EXPECT_EQ(count("bn.num_batches_tracked"), 2.0);
  Tensor rm = mean_of("layer2.1.bn1.running_mean");
  m->eval();
  m->forward(x);
  EXPECT_EQ(count("layer3.2.bn2.num_batches_tracked"), 2.0);
  EXPECT_EQ(max_abs_diff(rm, mean_of("layer2.1.bn1.running_mean")), 0.0);
  // The running mean moved during training (momentum 0.1 toward a non-zero batch mean).
  EXPECT_GT(max_abs_diff(rm, Tensor::zeros(rm.shape())), 1e-4);
}

TEST(Models, EnsembleOfIdenticalMembersIsLogSoftmaxOfOne) {
  std::vector<std::shared_ptr<models::Classifier>> members;
  for (int i = 0; i < 3; ++i) {
    members.push_back(make_model("preresnet20", 10, 3, 21));
    members.back()->to(DType::F64);
  }
  auto single = make_model("preresnet20", 10, 3, 21);
  single->to(DType::F64);
  single->eval();
  models::Ensemble ensemble(members);
  EXPECT_EQ(ensemble.size(), 3u);
  EXPECT_EQ(ensemble.num_classes(), 10);
  Tensor x = images(2, 3, 32, 12, DType::F64);
  x.set_requires_grad(true);
  clear_tape();
  Tensor teacher = ensemble.forward(x);
  EXPECT_EQ(tape_size(), 0u);
  EXPECT_FALSE(teacher.requires_grad());
  NoGradGuard no_grad;
  Tensor expected = ops::log_softmax(single->forward(x));
  EXPECT_LT(max_abs_diff(teacher, expected), 1e-12);
  for (auto& m : members) EXPECT_FALSE(m->is_training());
}

TEST(Models, EnsembleAveragesProbabilitiesNotLogits) {
  std::vector<std::shared_ptr<models::Classifier>> members = {make_model("lenet5", 5, 1, 1),
                                                              make_model("lenet5", 5, 1, 2)};
  for (auto& m : members) m->to(DType::F64);
  Tensor x = images(3, 1, 28, 13, DType::F64);
  Tensor teacher = models::Ensemble(members).forward(x);
  NoGradGuard no_grad;
  std::vector<double> a = members[0]->forward(x).to_vector<double>();
  std::vector<double> b = members[1]->forward(x).to_vector<double>();
  std::vector<double> t = teacher.to_vector<double>();
  for (int r = 0; r < 3; ++r) {
    double za = 0, zb = 0;
    for (int j = 0; j < 5; ++j) za += std::exp(a[r * 5 + j]), zb += std::exp(b[r * 5 + j]);
    for (int j = 0; j < 5; ++j) {
      double mean_p = 0.5 * (std::exp(a[r * 5 + j]) / za + std::exp(b[r * 5 + j]) / zb);
      EXPECT_NEAR(t[r * 5 + j], std::log(mean_p), 1e-12) << "row " << r << " class " << j;
    }
  }
}

}  // namespace
}  // namespace kd
