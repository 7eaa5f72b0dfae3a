// Golden tests against PyTorch (files in tests/golden, made by tools/make_golden.py; see its
// README). Models: the PyTorch parameters are loaded into a kdlab model, then a train-mode forward,
// the cross-entropy loss, every parameter gradient, the BN buffers after the step and the eval-mode
// logits are compared. Optimizers: SGD, SGD-Nesterov and Adam under the cosine schedule, step by
// step. Distillation: the ensemble teacher, the KD losses and the student gradients. VGG-16:
// PyTorch's state-dict names, shapes and order, and eval-mode logits and gradients with
// parameters from a formula both sides compute (the file would otherwise weigh 61 MB).
// Tolerances (infinity-norm relative: max_i |got_i - want_i| <= tol * max_i |want_i|):
//   f64 model runs 1e-9, plus 2^-24 |want_i| where the file stores the value rounded to F32
//   (the gradients); f32 model runs 1e-4; optimizers and distillation (all f64) 1e-12.
//   (Measured for VGG-16: f64 logits 1.1e-15, f32 logits 4.4e-7 and gradients <= 7.2e-7.)
// A missing golden file fails the test: they are committed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/safetensors.h"
#include "models/classifier.h"

#ifndef KDLAB_SOURCE_DIR
#define KDLAB_SOURCE_DIR "/work/main"
#endif

namespace kd {
namespace {

std::string golden_path(const std::string& file) {
  return std::string(KDLAB_SOURCE_DIR) + "/tests/golden/" + file;
}

// Loads a golden file; a missing or unreadable file is a failure (the caller ASSERTs on it).
bool load_golden(const std::string& file, StFile& out) {
  std::string path = golden_path(file);
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << "golden file missing: " << path << " (committed; regenerate with "
                  << "tools/make_golden.py)";
    return false;
  }
  try {
    out = read_safetensors(path);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "cannot read " << path << ": " << e.what();
    return false;
  }
  return true;
}

// An entry as a tensor of `dtype` (floating entries are widened or narrowed; F32 -> F64 is exact).
Tensor to_tensor(const StEntry& e, DType dtype) {
  Shape shape(e.shape.begin(), e.shape.end());
  if (e.dtype == "I64") {
    Tensor t = Tensor::from_vector<int64_t>(shape, values<int64_t>(e));
    return t.dtype() == dtype ? t : t.to(dtype);
  }
  Tensor t = Tensor::from_vector<double>(shape, values_as_double(e));
  return dtype == DType::F64 ? t : t.to(dtype);
}

// Infinity-norm relative comparison (see the header comment); reports the worst element.
void expect_close(const std::string& what, const Tensor& got, const StEntry& want, double tol) {
  ASSERT_EQ(got.shape(), Shape(want.shape.begin(), want.shape.end())) << what;
  std::vector<double> g = got.to(DType::F64).to_vector<double>();
  std::vector<double> w = values_as_double(want);
  double scale = 0;
  for (double v : w) scale = std::max(scale, std::fabs(v));
  const double f32_rounding = want.dtype == "F32" ? std::ldexp(1.0, -24) : 0.0;
  double worst_ratio = 0;
  size_t worst = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    double allowed = tol * std::max(scale, 1e-300) + f32_rounding * std::fabs(w[i]);
    double diff = std::fabs(g[i] - w[i]);
    double ratio = diff == 0 ? 0.0 : diff / allowed;
    if (!(ratio <= worst_ratio)) worst_ratio = ratio, worst = i;  // NaN is the worst
  }
  EXPECT_LE(worst_ratio, 1.0) << what << ": element " << worst << " got " << g[worst] << " want "
                              << w[worst] << " (scale " << scale << ", tol " << tol << ")";
}

// The whole model protocol for one file, in `dtype`.
void run_model_golden(const std::string& file, const std::string& arch, int in_channels,
                      DType dtype, double tol) {
  StFile golden;
  ASSERT_TRUE(load_golden(file, golden));
  auto model = models::make_model(arch, 10, in_channels, 12345);
  model->to(dtype);

  std::map<std::string, Tensor> params;
  std::set<std::string> golden_params, golden_buffers;
  for (const StEntry& e : golden.entries) {
    if (e.name.rfind("param.", 0) == 0) {
      std::string name = e.name.substr(6);
      golden_params.insert(name);
      params[name] = to_tensor(e, dtype);
    } else if (e.name.rfind("buffer.", 0) == 0) {
      golden_buffers.insert(e.name.substr(7));
    }
  }
  std::set<std::string> model_params, model_buffers;
  for (auto& kv : model->named_parameters()) model_params.insert(kv.first);
  for (auto& kv : model->named_buffers()) model_buffers.insert(kv.first);
  ASSERT_EQ(golden_params, model_params) << "parameter names differ from PyTorch's";
  if (!golden_buffers.empty()) {
    ASSERT_EQ(golden_buffers, model_buffers);
  }
  // Buffers keep their fresh values (0, 1, 0), which is what PyTorch had before the forward.
  model->load_state_dict(params, /*strict=*/false);

  Tensor x = to_tensor(require(golden, "input", file), dtype);
  Tensor labels = to_tensor(require(golden, "labels", file), DType::I32);
  model->train();
  model->zero_grad();
  clear_tape();
  Tensor logits = model->forward(x);
  Tensor loss = ops::cross_entropy(logits, labels);
  expect_close("logits", logits, require(golden, "logits", file), tol);
  expect_close("loss", loss, require(golden, "loss", file), tol);
  backward(loss);
  for (auto& kv : model->named_parameters()) {
    ASSERT_TRUE(kv.second.grad().defined()) << kv.first << " got no gradient";
    expect_close("grad." + kv.first, kv.second.grad(), require(golden, "grad." + kv.first, file),
                 tol);
  }
  for (auto& kv : model->named_buffers())
    expect_close("buffer." + kv.first, kv.second, require(golden, "buffer." + kv.first, file),
                 kv.first.find("num_batches_tracked") != std::string::npos ? 0.0 : tol);

  if (const StEntry* eval_logits = find(golden, "logits_eval")) {
    model->eval();
    NoGradGuard no_grad;
    expect_close("logits_eval", model->forward(x), *eval_logits, tol);
  }
}

TEST(Golden, LeNet5F64) {
  run_model_golden("lenet5_golden.safetensors", "lenet5", 1, DType::F64, 1e-9);
}
TEST(Golden, LeNet5F32) {
  run_model_golden("lenet5_golden.safetensors", "lenet5", 1, DType::F32, 1e-4);
}
TEST(Golden, PreResNet20F64) {
  run_model_golden("preresnet20_golden.safetensors", "preresnet20", 3, DType::F64, 1e-9);
}
TEST(Golden, PreResNet20F32) {
  run_model_golden("preresnet20_golden.safetensors", "preresnet20", 3, DType::F32, 1e-4);
}

TEST(Golden, PreResNet20HasBuffersAndEvalLogits) {
  // Guards the protocol above: the file must carry what the test compares.
  StFile golden;
  ASSERT_TRUE(load_golden("preresnet20_golden.safetensors", golden));
  EXPECT_NE(find(golden, "logits_eval"), nullptr);
  EXPECT_NE(find(golden, "buffer.layer2.0.bn1.running_var"), nullptr);
  EXPECT_NE(find(golden, "grad.layer3.0.downsample.0.weight"), nullptr);
  EXPECT_EQ(values<int64_t>(require(golden, "buffer.bn.num_batches_tracked", "golden")),
            std::vector<int64_t>{1});
}

// VGG-16: its 15.3M parameters are not stored; both sides fill them from one formula
// (tools/make_golden.py vgg16_formula_params): value(k, i) = amp_k * (2u - 1), u from splitmix64
// of (k << 40) + i, k the position in state-dict order, every step exact in IEEE double.
double vgg16_formula_unit(uint64_t k, uint64_t i) {
  uint64_t z = (k << 40) + i;
  z *= 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * std::ldexp(1.0, -52) - 1.0;
}

// The formula's parameters by name, F64, and their per-parameter sums (state-dict order).
std::map<std::string, Tensor> vgg16_formula_params(const nn::Module& model,
                                                   std::vector<double>* sums) {
  std::map<std::string, Tensor> out;
  uint64_t k = 0;
  for (auto& kv : model.state_dict()) {
    const Tensor& p = kv.second;
    const double amp =
        p.dim() >= 2 ? std::sqrt(6.0 / double(p.numel() / p.size(0))) : 0.1;
    std::vector<double> v(size_t(p.numel()));
    double sum = 0;
    for (size_t i = 0; i < v.size(); ++i) sum += v[i] = amp * vgg16_formula_unit(k, i);
    sums->push_back(sum);
    out[kv.first] = Tensor::from_vector<double>(p.shape(), v);
    ++k;
  }
  return out;
}

TEST(Golden, Vgg16StateDictNamesShapesAndOrderArePyTorchs) {
  StFile golden;
  ASSERT_TRUE(load_golden("vgg16_golden.safetensors", golden));
  std::vector<std::string> want_names;
  std::vector<Shape> want_shapes;
  for (const StEntry& e : golden.entries)  // file order = PyTorch's state-dict order
    if (e.name.rfind("shape.", 0) == 0) {
      want_names.push_back(e.name.substr(6));
      std::vector<int64_t> dims = values<int64_t>(e);
      want_shapes.emplace_back(dims.begin(), dims.end());
    }
  ASSERT_EQ(want_names.size(), 32u);
  auto model = models::make_model("vgg16", 100, 3, 0);
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  for (auto& kv : model->state_dict()) {
    names.push_back(kv.first);
    shapes.push_back(kv.second.shape());
  }
  EXPECT_EQ(names, want_names);
  EXPECT_EQ(shapes, want_shapes);
}

// Eval mode (dropout off), parameters from the formula, strict load: logits, loss, the input
// gradient and sum_i g_i p_i per parameter against PyTorch's.
void run_vgg16_golden(DType dtype, double tol) {
  const char* file = "vgg16_golden.safetensors";
  StFile golden;
  ASSERT_TRUE(load_golden(file, golden));
  auto model = models::make_model("vgg16", 100, 3, 12345);
  model->to(dtype);
  std::vector<double> sums;
  std::map<std::string, Tensor> params = vgg16_formula_params(*model, &sums);
  // The formula first: if the sums differ, the model comparison below would mean nothing.
  expect_close("param_sum", Tensor::from_vector<double>({int64_t(sums.size())}, sums),
               require(golden, "param_sum", file), 1e-12);
  for (auto& kv : params) kv.second = kv.second.to(dtype);
  model->load_state_dict(params, /*strict=*/true);

  Tensor x = to_tensor(require(golden, "input", file), dtype);
  x.set_requires_grad(true);
  Tensor labels = to_tensor(require(golden, "labels", file), DType::I32);
  model->eval();
  model->zero_grad();
  clear_tape();
  Tensor logits = model->forward(x);
  Tensor loss = ops::cross_entropy(logits, labels);
  expect_close("logits_eval", logits, require(golden, "logits_eval", file), tol);
  expect_close("loss", loss, require(golden, "loss", file), tol);
  backward(loss);
  expect_close("grad_input", x.grad(), require(golden, "grad_input", file), tol);
  std::vector<double> dots;
  for (auto& kv : model->named_parameters()) {
    ASSERT_TRUE(kv.second.grad().defined()) << kv.first << " got no gradient";
    std::vector<double> g = kv.second.grad().to(DType::F64).to_vector<double>();
    std::vector<double> p = kv.second.to(DType::F64).to_vector<double>();
    double dot = 0;
    for (size_t i = 0; i < g.size(); ++i) dot += g[i] * p[i];
    dots.push_back(dot);
  }
  expect_close("grad_dot_param", Tensor::from_vector<double>({int64_t(dots.size())}, dots),
               require(golden, "grad_dot_param", file), tol);
}

TEST(Golden, Vgg16F64EvalLogitsAndGradients) { run_vgg16_golden(DType::F64, 1e-9); }
TEST(Golden, Vgg16F32EvalLogitsAndGradients) { run_vgg16_golden(DType::F32, 1e-4); }

// Optimizers: the same 7-element parameter, gradients fed by hand, lr set per step.
void run_optimizer_golden(const std::string& prefix, Optimizer& opt, Tensor& param,
                          const StFile& golden, double lr0) {
  const char* file = "optim_golden.safetensors";
  std::vector<double> grads = values<double>(require(golden, "grads", file));
  std::vector<double> lrs = values<double>(require(golden, prefix + ".lr", file));
  std::vector<double> params = values<double>(require(golden, prefix + ".params", file));
  const int steps = 5, n = 7;
  ASSERT_EQ(grads.size(), size_t(steps * n));
  ASSERT_EQ(lrs.size(), size_t(steps));
  ASSERT_EQ(params.size(), size_t(steps * n));
  for (int k = 0; k < steps; ++k) {
    EXPECT_NEAR(cosine_lr(lr0, 1e-3, k, steps), lrs[k], 1e-15 * lr0) << prefix << " step " << k;
    opt.set_lr(lrs[k]);
    EXPECT_EQ(opt.lr(), lrs[k]);
    Tensor g = param.grad_or_zeros();
    std::copy(grads.begin() + k * n, grads.begin() + (k + 1) * n, g.data<double>());
    opt.step();
    std::vector<double> got = param.to_vector<double>();
    for (int i = 0; i < n; ++i)
      EXPECT_NEAR(got[i], params[k * n + i], 1e-12 * std::max(1.0, std::fabs(params[k * n + i])))
          << prefix << " step " << k << " element " << i;
  }
}

Tensor fresh_param(const StFile& golden) {
  Tensor p = Tensor::from_vector<double>({7}, values<double>(require(golden, "param0", "optim")));
  p.set_requires_grad(true);
  return p;
}

TEST(Golden, SgdNesterovCosine) {
  StFile golden;
  ASSERT_TRUE(load_golden("optim_golden.safetensors", golden));
  Tensor p = fresh_param(golden);
  SgdParams h;
  h.lr = 0.1, h.momentum = 0.9, h.weight_decay = 1e-4, h.nesterov = true;
  Sgd opt({p}, h);
  run_optimizer_golden("sgd_nesterov", opt, p, golden, 0.1);
}

TEST(Golden, SgdMomentumCosine) {
  StFile golden;
  ASSERT_TRUE(load_golden("optim_golden.safetensors", golden));
  Tensor p = fresh_param(golden);
  SgdParams h;
  h.lr = 0.1, h.momentum = 0.9, h.weight_decay = 1e-4, h.nesterov = false;
  Sgd opt({p}, h);
  run_optimizer_golden("sgd", opt, p, golden, 0.1);
}

TEST(Golden, AdamCosine) {
  StFile golden;
  ASSERT_TRUE(load_golden("optim_golden.safetensors", golden));
  Tensor p = fresh_param(golden);
  AdamParams h;
  h.lr = 1e-2, h.beta1 = 0.9, h.beta2 = 0.999, h.eps = 1e-8, h.weight_decay = 1e-4;
  Adam opt({p}, h);
  run_optimizer_golden("adam", opt, p, golden, 1e-2);
}

// Distillation: teacher = log-mean-prob of the members; losses and student gradients.
class GoldenDistill : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(load_golden("distill_golden.safetensors", golden));
    const StEntry& members = require(golden, "teacher_members", "distill");
    ASSERT_EQ(members.shape, (std::vector<int64_t>{3, 5, 7}));
    std::vector<double> all = values<double>(members);
    for (int m = 0; m < 3; ++m)
      member_logits.push_back(Tensor::from_vector<double>(
          {5, 7}, std::vector<double>(all.begin() + m * 35, all.begin() + (m + 1) * 35)));
    teacher = to_tensor(require(golden, "teacher_logits", "distill"), DType::F64);
    student_values = values<double>(require(golden, "student_logits", "distill"));
    clear_tape();
  }
  Tensor student() const {
    Tensor s = Tensor::from_vector<double>({5, 7}, student_values);
    s.set_requires_grad(true);
    return s;
  }
  StFile golden;
  std::vector<Tensor> member_logits;
  Tensor teacher;
  std::vector<double> student_values;
};

TEST_F(GoldenDistill, EnsembleLogitsAreLogMeanProb) {
  expect_close("teacher_logits", ops::ensemble_logits(member_logits),
               require(golden, "teacher_logits", "distill"), 1e-12);
}

TEST_F(GoldenDistill, ForwardCrossEntropyAndKLWithGradients) {
  for (int tau : {1, 4}) {
    std::string t = "tau" + std::to_string(tau);
    SCOPED_TRACE(t);
    struct Case {
      DistillKind kind;
      const char* name;
    };
    for (Case c : {Case{DistillKind::kForwardCE, "fwd_ce"}, Case{DistillKind::kKL, "kl"}}) {
      Tensor s = student();
      Tensor loss = ops::distill_loss(c.kind, teacher, s, double(tau));
      expect_close(t + "." + c.name, loss, require(golden, t + "." + c.name, "distill"), 1e-12);
      backward(loss);
      expect_close(t + ".grad_" + c.name, s.grad(),
                   require(golden, t + ".grad_" + c.name, "distill"), 1e-12);
    }
  }
}

// The kinds the file does not cover, against the formulas of paper-notes §1 written out here.
TEST_F(GoldenDistill, OtherKindsMatchThePaperCodeFormulas) {
  const int rows = 5, cols = 7;
  std::vector<double> tl = teacher.to_vector<double>();
  for (double tau : {1.0, 4.0}) {
    double rev = 0, sym = 0, brier = 0, hard = 0;
    for (int r = 0; r < rows; ++r) {
      double mt = -1e300, ms = -1e300;
      int argmax = 0;
      for (int j = 0; j < cols; ++j) {
        if (tl[r * cols + j] > tl[r * cols + argmax]) argmax = j;
        mt = std::max(mt, tl[r * cols + j] / tau);
        ms = std::max(ms, student_values[r * cols + j] / tau);
      }
      double zt = 0, zs = 0;
      for (int j = 0; j < cols; ++j) {
        zt += std::exp(tl[r * cols + j] / tau - mt);
        zs += std::exp(student_values[r * cols + j] / tau - ms);
      }
      for (int j = 0; j < cols; ++j) {
        double logp = tl[r * cols + j] / tau - mt - std::log(zt);
        double logq = student_values[r * cols + j] / tau - ms - std::log(zs);
        double p = std::exp(logp), q = std::exp(logq);
        rev += -tau * tau * q * logp;
        sym += p * (logp - logq) + q * (logq - logp);
        brier += (q - p) * (q - p);
        if (j == argmax) hard += -tau * tau * logq;
      }
    }
    rev /= rows, sym /= rows, brier /= rows * cols, hard /= rows;
    struct Case {
      DistillKind kind;
      const char* name;
      double want;
    };
    for (Case c :
         {Case{DistillKind::kReverseCE, "reverse_ce", rev},
          Case{DistillKind::kSymmetricKL, "symmetric_kl", sym},
          Case{DistillKind::kBrier, "brier", brier}, Case{DistillKind::kHardCE, "hard_ce", hard}}) {
      NoGradGuard no_grad;
      double got = ops::distill_loss(c.kind, teacher, student(), tau).item();
      EXPECT_NEAR(got, c.want, 1e-12 * std::max(1.0, std::fabs(c.want)))
          << c.name << " tau " << tau;
    }
  }
}

TEST_F(GoldenDistill, AtTauOneForwardCEAndKLHaveEqualGradients) {
  Tensor a = student(), b = student();
  backward(ops::distill_loss(DistillKind::kForwardCE, teacher, a, 1.0));
  backward(ops::distill_loss(DistillKind::kKL, teacher, b, 1.0));
  std::vector<double> ga = a.grad().to_vector<double>(), gb = b.grad().to_vector<double>();
  for (size_t i = 0; i < ga.size(); ++i) EXPECT_NEAR(ga[i], gb[i], 1e-14) << i;
}

}  // namespace
}  // namespace kd
