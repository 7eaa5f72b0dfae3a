// Gradient checks, in f64, of every differentiable op in engine/ops.h: the tape's gradient versus
// central differences (tests/gradcheck.h), for every input that requires grad. Non-scalar outputs
// are reduced with a fixed random linear functional, and losses are multiplied by a random weight
// too, so the upstream-gradient scaling of every backward is exercised. Tolerance: max
// |analytic - numeric| / max(1, |numeric|) < 1e-6 with step 1e-6 (truncation and rounding errors
// are near 1e-10 here); each check also asserts that some |numeric| exceeds 1e-4 (not vacuous).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/gradcheck.h"

namespace kd {
namespace {

using testing::GradCheckResult;
using testing::random_away_from_zero;
using testing::random_f64;
using testing::weighted_sum;

constexpr double kTol = 1e-6;

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Gradcheck of sum(op(inputs) * W) for a fixed random W shaped like the output.
GradCheckResult check_op(const OpFn& op, const std::vector<Tensor>& inputs, uint64_t seed = 77) {
  Tensor probe;
  {
    NoGradGuard no_grad;
    probe = op(inputs);
  }
  Tensor weights = random_f64(probe.shape(), seed, 0.5, 1.5);
  return testing::gradcheck(
      [&](const std::vector<Tensor>& in) { return weighted_sum(op(in), weights); }, inputs);
}

#define EXPECT_GRADS_MATCH(result)                                   \
  do {                                                               \
    GradCheckResult r_ = (result);                                   \
    EXPECT_LT(r_.max_error, kTol) << r_.describe();                  \
    EXPECT_GT(r_.max_numeric, 1e-4) << "vacuous: " << r_.describe(); \
    EXPECT_GT(r_.elements, 0);                                       \
  } while (0)

Tensor grad_input(Tensor t) { return t.set_requires_grad(true); }

struct ConvCase {
  int n, c, h, w, k, r, s, stride, pad;
  bool bias;
};

TEST(GradCheckOps, Conv2d) {
  const ConvCase cases[] = {
      {1, 3, 5, 7, 4, 3, 3, 1, 1, true},   // batch 1, non-square input, same padding
      {2, 2, 6, 5, 3, 3, 3, 2, 0, false},  // stride 2, no padding, no bias
      {2, 3, 7, 6, 2, 3, 3, 2, 1, true},   // stride 2, padding 1
      {1, 2, 5, 6, 3, 2, 3, 1, 0, true},   // non-square kernel
      {2, 4, 5, 5, 3, 1, 1, 2, 0, false},  // 1x1 stride-2 shortcut conv
  };
  uint64_t seed = 1;
  for (const ConvCase& cc : cases) {
    SCOPED_TRACE("conv n" + std::to_string(cc.n) + " c" + std::to_string(cc.c) + " " +
                 std::to_string(cc.h) + "x" + std::to_string(cc.w) + " k" + std::to_string(cc.k) +
                 " " + std::to_string(cc.r) + "x" + std::to_string(cc.s) + " stride " +
                 std::to_string(cc.stride) + " pad " + std::to_string(cc.pad) +
                 (cc.bias ? " bias" : " no bias"));
    Tensor x = grad_input(random_f64({cc.n, cc.c, cc.h, cc.w}, seed++));
    Tensor w = grad_input(random_f64({cc.k, cc.c, cc.r, cc.s}, seed++));
    Tensor b = cc.bias ? grad_input(random_f64({cc.k}, seed++)) : Tensor();
    std::vector<Tensor> inputs = {x, w};
    if (cc.bias) inputs.push_back(b);
    EXPECT_GRADS_MATCH(check_op(
        [&](const std::vector<Tensor>& in) {
          return ops::conv2d(in[0], in[1], cc.bias ? in[2] : Tensor(), cc.stride, cc.pad);
        },
        inputs));
  }
}

// A residual block's last convolution with its shortcut added (ops::conv2d's residual): the
// residual's gradient is the output's, the rest that of the convolution; 3x3 (one kernel call)
// and 1x1 (a second pass on some backends), and the residual the convolution's own input.
TEST(GradCheckOps, Conv2dWithResidual) {
  uint64_t seed = 40;
  for (int r : {3, 1}) {
    SCOPED_TRACE("kernel " + std::to_string(r));
    const int pad = r / 2;
    Tensor x = grad_input(random_f64({2, 3, 5, 4}, seed++));
    Tensor w = grad_input(random_f64({3, 3, r, r}, seed++));
    Tensor res = grad_input(random_f64({2, 3, 5, 4}, seed++));
    EXPECT_GRADS_MATCH(check_op(
        [&](const std::vector<Tensor>& in) {
          return ops::conv2d(in[0], in[1], Tensor(), 1, pad, in[2]);
        },
        {x, w, res}));
    EXPECT_GRADS_MATCH(check_op(  // x + conv(x): both paths into one gradient
        [&](const std::vector<Tensor>& in) {
          return ops::conv2d(in[0], in[1], Tensor(), 1, pad, in[0]);
        },
        {x, w}));
  }
}

TEST(GradCheckOps, Conv2dOnlyInputRequiresGrad) {
  // The weight-gradient path is skipped when neither weight nor bias needs a gradient.
  Tensor x = grad_input(random_f64({2, 3, 4, 5}, 11));
  Tensor w = random_f64({2, 3, 3, 3}, 12);
  EXPECT_GRADS_MATCH(check_op(
      [&](const std::vector<Tensor>& in) { return ops::conv2d(in[0], w, Tensor(), 1, 1); }, {x}));
  EXPECT_FALSE(w.grad().defined());
}

TEST(GradCheckOps, Linear) {
  for (int batch : {1, 3}) {
    for (bool bias : {true, false}) {
      SCOPED_TRACE("batch " + std::to_string(batch) + (bias ? " bias" : " no bias"));
      Tensor x = grad_input(random_f64({batch, 5}, 21 + batch));
      Tensor w = grad_input(random_f64({4, 5}, 23));
      Tensor b = grad_input(random_f64({4}, 24));
      std::vector<Tensor> inputs = {x, w};
      if (bias) inputs.push_back(b);
      EXPECT_GRADS_MATCH(check_op(
          [&](const std::vector<Tensor>& in) {
            return ops::linear(in[0], in[1], bias ? in[2] : Tensor());
          },
          inputs));
    }
  }
}

TEST(GradCheckOps, Relu) {
  Tensor x = grad_input(random_away_from_zero({2, 3, 4, 3}, 31));
  EXPECT_GRADS_MATCH(check_op([](const std::vector<Tensor>& in) { return ops::relu(in[0]); }, {x}));
  // The negative half must receive exactly zero.
  std::vector<double> xv = x.to_vector<double>(), g = x.grad().to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i)
    if (xv[i] < 0) {
      EXPECT_EQ(g[i], 0.0) << "element " << i;
    }
}

TEST(GradCheckOps, AddAndScale) {
  Tensor a = grad_input(random_f64({3, 4}, 41));
  Tensor b = grad_input(random_f64({3, 4}, 42));
  EXPECT_GRADS_MATCH(
      check_op([](const std::vector<Tensor>& in) { return ops::add(in[0], in[1]); }, {a, b}));
  EXPECT_GRADS_MATCH(
      check_op([](const std::vector<Tensor>& in) { return ops::scale(in[0], -1.7); }, {a}));
  // A chain: the same tensor reaches the output by two paths.
  EXPECT_GRADS_MATCH(check_op(
      [](const std::vector<Tensor>& in) {
        return ops::add(ops::scale(in[0], 0.3), ops::relu(ops::add(in[0], in[1])));
      },
      {grad_input(random_away_from_zero({2, 5}, 43)),
       grad_input(random_away_from_zero({2, 5}, 44, 2.0, 3.0))}));
}

TEST(GradCheckOps, ReshapeAndFlatten) {
  Tensor x = grad_input(random_f64({2, 3, 2, 2}, 51));
  Tensor w = random_f64({4, 12}, 52);
  // The layout matters after reshape: a linear layer mixes the flattened features.
  EXPECT_GRADS_MATCH(check_op(
      [&](const std::vector<Tensor>& in) { return ops::linear(ops::flatten(in[0]), w, Tensor()); },
      {x}));
  Tensor w2 = random_f64({3, 8}, 53);
  EXPECT_GRADS_MATCH(check_op(
      [&](const std::vector<Tensor>& in) {
        return ops::linear(ops::reshape(in[0], {3, 8}), w2, Tensor());
      },
      {x}));
}

TEST(GradCheckOps, AvgPool2d) {
  struct Case {
    int h, w, kernel, stride, pad;
  };
  for (Case pc :
       {Case{4, 6, 2, 2, 0}, Case{7, 5, 3, 2, 1}, Case{5, 5, 3, 1, 0}, Case{8, 8, 8, 8, 0}}) {
    SCOPED_TRACE("avg pool " + std::to_string(pc.h) + "x" + std::to_string(pc.w) + " k" +
                 std::to_string(pc.kernel) + " s" + std::to_string(pc.stride) + " p" +
                 std::to_string(pc.pad));
    Tensor x = grad_input(random_f64({2, 3, pc.h, pc.w}, 61 + pc.h));
    EXPECT_GRADS_MATCH(check_op(
        [&](const std::vector<Tensor>& in) {
          return ops::avg_pool2d(in[0], pc.kernel, pc.stride, pc.pad);
        },
        {x}));
  }
}

TEST(GradCheckOps, MaxPool2d) {
  struct Case {
    int h, w, kernel, stride, pad;
  };
  for (Case pc : {Case{4, 6, 2, 2, 0}, Case{7, 5, 3, 2, 1}, Case{5, 6, 3, 1, 1}}) {
    SCOPED_TRACE("max pool " + std::to_string(pc.h) + "x" + std::to_string(pc.w) + " k" +
                 std::to_string(pc.kernel) + " s" + std::to_string(pc.stride) + " p" +
                 std::to_string(pc.pad));
    // Distinct values 0.01 apart: no tie can flip under the 1e-6 step.
    Tensor x = grad_input(testing::distinct_values({2, 3, pc.h, pc.w}, 71 + pc.h));
    EXPECT_GRADS_MATCH(check_op(
        [&](const std::vector<Tensor>& in) {
          return ops::max_pool2d(in[0], pc.kernel, pc.stride, pc.pad);
        },
        {x}));
  }
}

TEST(GradCheckOps, GlobalAvgPool) {
  Tensor x = grad_input(random_f64({3, 4, 3, 5}, 81));
  EXPECT_GRADS_MATCH(
      check_op([](const std::vector<Tensor>& in) { return ops::global_avg_pool(in[0]); }, {x}));
}

TEST(GradCheckOps, BatchNormTrain) {
  for (bool track : {true, false}) {
    for (Shape shape : {Shape{3, 4, 2, 3}, Shape{5, 3}, Shape{1, 2, 3, 2}}) {
      SCOPED_TRACE("batch norm train " + shape_str(shape) + (track ? " tracking" : ""));
      int64_t c = shape[1];
      Tensor x = grad_input(random_f64(shape, 91, -2.0, 3.0));
      Tensor gamma = grad_input(random_f64({c}, 92, 0.5, 1.5));
      Tensor beta = grad_input(random_f64({c}, 93));
      Tensor rm = track ? Tensor::zeros({c}, DType::F64) : Tensor();
      Tensor rv = track ? Tensor::full({c}, 1.0, DType::F64) : Tensor();
      EXPECT_GRADS_MATCH(check_op(
          [&](const std::vector<Tensor>& in) {
            return ops::batch_norm(in[0], in[1], in[2], rm, rv, true, 0.1, 1e-5);
          },
          {x, gamma, beta}));
    }
  }
}

// relu(batch_norm(...)) fused into one op: train (our fused kernels) and eval (BN, then ReLU).
TEST(GradCheckOps, BatchNormRelu) {
  for (bool training : {true, false}) {
    for (Shape shape : {Shape{3, 4, 2, 3}, Shape{5, 3}}) {
      SCOPED_TRACE(std::string("batch norm + relu ") + (training ? "train " : "eval ") +
                   shape_str(shape));
      int64_t c = shape[1];
      Tensor x = grad_input(random_f64(shape, 94, -2.0, 3.0));
      Tensor gamma = grad_input(random_f64({c}, 95, 0.5, 1.5));
      Tensor beta = grad_input(random_f64({c}, 96));
      Tensor rm = random_f64({c}, 97), rv = random_f64({c}, 98, 0.5, 2.0);
      auto fused = [&](const std::vector<Tensor>& in) {
        return ops::batch_norm(in[0], in[1], in[2], rm.clone(), rv.clone(), training, 0.1, 1e-5,
                               /*relu=*/true);
      };
      EXPECT_GRADS_MATCH(check_op(fused, {x, gamma, beta}));
    }
  }
}

TEST(GradCheckOps, BatchNormEval) {
  for (Shape shape : {Shape{3, 4, 2, 3}, Shape{1, 3, 1, 1}, Shape{4, 3}}) {
    SCOPED_TRACE("batch norm eval " + shape_str(shape));
    int64_t c = shape[1];
    Tensor x = grad_input(random_f64(shape, 101, -2.0, 3.0));
    Tensor gamma = grad_input(random_f64({c}, 102, 0.5, 1.5));
    Tensor beta = grad_input(random_f64({c}, 103));
    Tensor rm = random_f64({c}, 104);
    Tensor rv = random_f64({c}, 105, 0.5, 2.0);
    EXPECT_GRADS_MATCH(check_op(
        [&](const std::vector<Tensor>& in) {
          return ops::batch_norm(in[0], in[1], in[2], rm, rv, false, 0.1, 1e-5);
        },
        {x, gamma, beta}));
  }
}

TEST(GradCheckOps, GroupNorm) {
  for (int groups : {1, 2}) {
    for (Shape shape : {Shape{2, 4, 3, 2}, Shape{1, 6, 2, 3}}) {
      SCOPED_TRACE("group norm, groups " + std::to_string(groups) + " " + shape_str(shape));
      int64_t c = shape[1];
      Tensor x = grad_input(random_f64(shape, 111 + groups, -2.0, 3.0));
      Tensor gamma = grad_input(random_f64({c}, 112, 0.5, 1.5));
      Tensor beta = grad_input(random_f64({c}, 113));
      EXPECT_GRADS_MATCH(check_op(
          [&](const std::vector<Tensor>& in) {
            return ops::group_norm(in[0], in[1], in[2], groups, 1e-5);
          },
          {x, gamma, beta}));
    }
  }
}

TEST(GradCheckOps, LogSoftmax) {
  for (Shape shape : {Shape{3, 5}, Shape{1, 7}, Shape{4, 1}}) {
    SCOPED_TRACE("log_softmax " + shape_str(shape));
    Tensor x = grad_input(random_f64(shape, 121, -3.0, 3.0));
    if (shape[1] == 1) {
      // One class: the output is identically 0 and so is the gradient; check that directly.
      Tensor w = random_f64({4, 1}, 122);
      testing::GradCheckResult r = testing::gradcheck(
          [&](const std::vector<Tensor>& in) { return weighted_sum(ops::log_softmax(in[0]), w); },
          {x});
      EXPECT_LT(r.max_error, kTol) << r.describe();
      continue;
    }
    EXPECT_GRADS_MATCH(
        check_op([](const std::vector<Tensor>& in) { return ops::log_softmax(in[0]); }, {x}));
  }
}

TEST(GradCheckOps, CrossEntropy) {
  Tensor labels = Tensor::from_vector<int32_t>({4}, {2, 0, 4, 2});
  Tensor x = grad_input(random_f64({4, 5}, 131, -3.0, 3.0));
  EXPECT_GRADS_MATCH(check_op(
      [&](const std::vector<Tensor>& in) { return ops::cross_entropy(in[0], labels); }, {x}));
  // Batch 1 and large logits (softmax saturating toward one class).
  Tensor one = Tensor::from_vector<int32_t>({1}, {1});
  Tensor big = grad_input(random_f64({1, 3}, 132, -20.0, 20.0));
  EXPECT_GRADS_MATCH(check_op(
      [&](const std::vector<Tensor>& in) { return ops::cross_entropy(in[0], one); }, {big}));
}

const char* kind_name(DistillKind k) {
  switch (k) {
    case DistillKind::kForwardCE:
      return "forward_ce";
    case DistillKind::kKL:
      return "kl";
    case DistillKind::kReverseCE:
      return "reverse_ce";
    case DistillKind::kSymmetricKL:
      return "symmetric_kl";
    case DistillKind::kBrier:
      return "brier";
    case DistillKind::kHardCE:
      return "hard_ce";
  }
  return "?";
}

const DistillKind kAllKinds[] = {DistillKind::kForwardCE, DistillKind::kKL,
                                 DistillKind::kReverseCE, DistillKind::kSymmetricKL,
                                 DistillKind::kBrier,     DistillKind::kHardCE};

TEST(GradCheckOps, DistillLossEveryKindAndTemperature) {
  // Rows whose teacher argmax is clear, so kHardCE's target is fixed.
  Tensor teacher = random_f64({3, 5}, 141, -2.0, 2.0);
  for (DistillKind kind : kAllKinds) {
    for (double tau : {1.0, 4.0}) {
      SCOPED_TRACE(std::string(kind_name(kind)) + " tau " + std::to_string(tau));
      Tensor student = grad_input(random_f64({3, 5}, 142, -2.0, 2.0));
      EXPECT_GRADS_MATCH(check_op(
          [&](const std::vector<Tensor>& in) {
            return ops::distill_loss(kind, teacher, in[0], tau);
          },
          {student}));
    }
  }
}

TEST(GradCheckOps, DistillLossGivesTheTeacherNoGradient) {
  for (DistillKind kind : kAllKinds) {
    SCOPED_TRACE(kind_name(kind));
    Tensor teacher = grad_input(random_f64({2, 4}, 151));
    Tensor student = grad_input(random_f64({2, 4}, 152));
    clear_tape();
    backward(ops::distill_loss(kind, teacher, student, 4.0));
    ASSERT_TRUE(student.grad().defined());
    if (teacher.grad().defined()) {
      for (double g : teacher.grad().to_vector<double>()) EXPECT_EQ(g, 0.0);
    }
  }
}

TEST(GradCheckOps, EnsembleLogits) {
  for (int members : {1, 3}) {
    SCOPED_TRACE(std::to_string(members) + " members");
    std::vector<Tensor> inputs;
    for (int i = 0; i < members; ++i)
      inputs.push_back(grad_input(random_f64({2, 5}, 161 + i, -3.0, 3.0)));
    EXPECT_GRADS_MATCH(
        check_op([](const std::vector<Tensor>& in) { return ops::ensemble_logits(in); }, inputs));
  }
}

TEST(GradCheckOps, EnsembleThenDistillThroughStudentChain) {
  // A small student (linear -> log_softmax is not needed: distill takes logits) distilled from a
  // fixed ensemble: gradients through distill_loss into linear's weight and bias.
  std::vector<Tensor> members = {random_f64({3, 4}, 171, -2.0, 2.0),
                                 random_f64({3, 4}, 172, -2.0, 2.0)};
  Tensor teacher = ops::ensemble_logits(members);
  Tensor x = random_f64({3, 6}, 173);
  Tensor w = grad_input(random_f64({4, 6}, 174));
  Tensor b = grad_input(random_f64({4}, 175));
  EXPECT_GRADS_MATCH(check_op(
      [&](const std::vector<Tensor>& in) {
        return ops::distill_loss(DistillKind::kForwardCE, teacher, ops::linear(x, in[0], in[1]),
                                 4.0);
      },
      {w, b}));
}

}  // namespace
}  // namespace kd
