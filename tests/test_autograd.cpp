// The tape's contract (engine/autograd.h): gradients accumulate across backward calls, NoGradGuard
// records nothing and nests, backward takes exactly the loss's nodes off the tape, a tensor used twice gets the sum of both
// paths, and backward refuses a non-scalar loss or one that needs no gradient. Values here are
// small sums of exactly representable numbers, so most comparisons are exact.
#include <gtest/gtest.h>

#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/gradcheck.h"

namespace kd {
namespace {

// sum(x) as a [1,1] tensor on the tape (a linear layer with all-ones weights).
Tensor sum_of(const Tensor& x) {
  Tensor ones = Tensor::full({x.numel()}, 1.0, x.dtype());
  return testing::weighted_sum(x, ones);
}

class Autograd : public ::testing::Test {
 protected:
  void SetUp() override { clear_tape(); }
  void TearDown() override { clear_tape(); }
};

TEST_F(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = Tensor::from_vector<double>({4}, {1.0, -2.0, 3.0, 0.5});
  x.set_requires_grad(true);
  backward(sum_of(ops::scale(x, 3.0)));
  std::vector<double> once = x.grad().to_vector<double>();
  for (double g : once) EXPECT_EQ(g, 3.0);
  backward(sum_of(ops::scale(x, 3.0)));
  for (double g : x.grad().to_vector<double>()) EXPECT_EQ(g, 6.0);
  x.clear_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST_F(Autograd, NoGradGuardRecordsNothing) {
  Tensor x = testing::random_f64({2, 3}, 1);
  x.set_requires_grad(true);
  Tensor w = testing::random_f64({4, 3}, 2);
  w.set_requires_grad(true);
  EXPECT_TRUE(grad_enabled());
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(grad_enabled());
    Tensor y = ops::relu(ops::linear(x, w, Tensor()));
    Tensor loss = ops::log_softmax(y);
    EXPECT_EQ(tape_size(), 0u);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(loss.requires_grad());
    {
      NoGradGuard nested;
      EXPECT_FALSE(grad_enabled());
    }
    EXPECT_FALSE(grad_enabled()) << "an inner guard must restore the outer state";
  }
  EXPECT_TRUE(grad_enabled());
  Tensor y = ops::linear(x, w, Tensor());
  EXPECT_EQ(tape_size(), 1u);
  EXPECT_TRUE(y.requires_grad());
}

TEST_F(Autograd, OpsOnTensorsWithoutGradRecordNothing) {
  Tensor x = testing::random_f64({2, 3}, 3);
  Tensor y = ops::scale(ops::relu(x), 2.0);
  EXPECT_EQ(tape_size(), 0u);
  EXPECT_FALSE(y.requires_grad());
}

TEST_F(Autograd, BackwardClearsTheTape) {
  Tensor x = testing::random_f64({3, 4}, 4);
  x.set_requires_grad(true);
  Tensor loss = sum_of(ops::relu(ops::scale(x, 2.0)));
  EXPECT_GE(tape_size(), 3u);  // scale, relu, reshape, linear
  backward(loss);
  EXPECT_EQ(tape_size(), 0u);
}

TEST_F(Autograd, TensorUsedTwiceGetsBothPaths) {
  Tensor x = Tensor::from_vector<double>({3}, {0.25, -1.5, 4.0});
  x.set_requires_grad(true);
  backward(sum_of(ops::add(x, x)));
  for (double g : x.grad().to_vector<double>()) EXPECT_EQ(g, 2.0);
  // Three uses along different paths: x + 3x + relu-free reuse.
  x.clear_grad();
  backward(sum_of(ops::add(ops::add(x, ops::scale(x, 3.0)), x)));
  for (double g : x.grad().to_vector<double>()) EXPECT_EQ(g, 5.0);
}

TEST_F(Autograd, ScalarLossSeedsOne) {
  // d loss / d loss = 1 even when the loss is 0-d.
  Tensor logits = testing::random_f64({2, 3}, 5);
  logits.set_requires_grad(true);
  Tensor labels = Tensor::from_vector<int32_t>({2}, {0, 2});
  Tensor loss = ops::cross_entropy(logits, labels);
  EXPECT_EQ(loss.dim(), 0);
  backward(loss);
  // softmax - onehot, divided by rows: each row of the gradient sums to zero.
  std::vector<double> g = logits.grad().to_vector<double>();
  EXPECT_NEAR(g[0] + g[1] + g[2], 0.0, 1e-15);
  EXPECT_NEAR(g[3] + g[4] + g[5], 0.0, 1e-15);
  EXPECT_LT(g[0], 0.0);
  EXPECT_LT(g[5], 0.0);
}

TEST_F(Autograd, BackwardRefusesNonScalarLoss) {
  Tensor x = testing::random_f64({2, 3}, 6);
  x.set_requires_grad(true);
  Tensor y = ops::scale(x, 2.0);
  EXPECT_THROW(backward(y), Error);
  clear_tape();
}

TEST_F(Autograd, BackwardRefusesLossWithoutGrad) {
  Tensor x = testing::random_f64({2, 3}, 7);
  x.set_requires_grad(true);
  Tensor loss;
  {
    NoGradGuard no_grad;
    loss = sum_of(x);
  }
  EXPECT_THROW(backward(loss), Error);
  Tensor constant = sum_of(testing::random_f64({2, 3}, 8));
  EXPECT_THROW(backward(constant), Error);
}

TEST_F(Autograd, OnlyReachedNodesRun) {
  // A branch that does not feed the loss must not give its input a gradient.
  Tensor a = testing::random_f64({3}, 9);
  Tensor b = testing::random_f64({3}, 10);
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  Tensor unused = ops::scale(b, 5.0);
  (void)unused;
  backward(sum_of(ops::scale(a, 2.0)));
  EXPECT_TRUE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  EXPECT_EQ(tape_size(), 1u) << "the unrelated scale(b) node stays for its own backward";
}

TEST_F(Autograd, TwoLossesOnOneTapeEachGetTheirOwnBackward) {
  // Loss A is built first, loss B after, and they share x. backward(B) must not run A's nodes
  // (nor drop them), so A's later backward still delivers its gradient exactly once.
  Tensor x = Tensor::from_vector<double>({3}, {1.0, 2.0, -1.0});
  Tensor y = Tensor::from_vector<double>({3}, {0.5, 0.5, 0.5});
  x.set_requires_grad(true);
  y.set_requires_grad(true);
  Tensor loss_a = sum_of(ops::scale(x, 3.0));
  const size_t after_a = tape_size();
  Tensor loss_b = sum_of(ops::add(x, ops::scale(y, 2.0)));
  backward(loss_b);
  EXPECT_EQ(tape_size(), after_a) << "exactly loss A's nodes remain";
  for (double g : x.grad().to_vector<double>()) EXPECT_EQ(g, 1.0);
  for (double g : y.grad().to_vector<double>()) EXPECT_EQ(g, 2.0);
  backward(loss_a);
  EXPECT_EQ(tape_size(), 0u);
  for (double g : x.grad().to_vector<double>()) EXPECT_EQ(g, 4.0);
  for (double g : y.grad().to_vector<double>()) EXPECT_EQ(g, 2.0) << "loss A does not touch y";
}

TEST_F(Autograd, NodesBeforeTheLossThatItDependsOnRunThroughLongChains) {
  // A chain through every kind of node input (two-input add, reshape, linear with weight and
  // bias) interleaved with an unrelated chain: only the dependent chain runs.
  Tensor x = testing::random_f64({2, 3}, 12);
  Tensor w = testing::random_f64({2, 6}, 13);
  Tensor bias = testing::random_f64({2}, 14);
  Tensor other = testing::random_f64({2, 3}, 15);
  for (Tensor* t : {&x, &w, &bias, &other}) t->set_requires_grad(true);
  Tensor h = ops::relu(ops::add(x, x));
  Tensor unrelated = ops::relu(ops::scale(other, 2.0));
  Tensor z = ops::linear(ops::reshape(h, {1, 6}), w, bias);
  Tensor unrelated2 = ops::add(unrelated, other);
  (void)unrelated2;
  backward(sum_of(z));
  EXPECT_TRUE(x.grad().defined());
  EXPECT_TRUE(w.grad().defined());
  EXPECT_TRUE(bias.grad().defined());
  EXPECT_FALSE(other.grad().defined());
  EXPECT_EQ(tape_size(), 3u);  // scale, relu, add of the unrelated chain
  for (double g : bias.grad().to_vector<double>()) EXPECT_EQ(g, 1.0);
}

TEST_F(Autograd, GradientOfAReshapedViewReachesTheBase) {
  Tensor x = testing::random_f64({2, 3}, 11);
  x.set_requires_grad(true);
  Tensor w = Tensor::from_vector<double>({1, 6}, {1, 2, 3, 4, 5, 6});
  backward(ops::linear(ops::reshape(x, {1, 6}), w, Tensor()));
  std::vector<double> g = x.grad().to_vector<double>();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(g[i], i + 1.0);
}

// add's backward hands dy to both inputs, one buffer, no copy; a later write into either (here: a
// second backward that accumulates) copies it first, so each ends with its own correct sum.
TEST_F(Autograd, AddHandsDyToBothInputsWithoutACopy) {
  Tensor a = Tensor::from_vector<double>({4}, {1, 2, 3, 4});
  Tensor b = Tensor::from_vector<double>({4}, {-1, 0, 5, 2});
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  const Tensor w = Tensor::from_vector<double>({4}, {0.5, -1, 2, 3});
  backward(testing::weighted_sum(ops::add(a, b), w));
  EXPECT_EQ(a.grad().raw(), b.grad().raw()) << "dy was copied";
  EXPECT_TRUE(a.grad_shared() && b.grad_shared());
  EXPECT_EQ(a.grad().to_vector<double>(), w.to_vector<double>());

  const Tensor w2 = Tensor::from_vector<double>({4}, {1, 1, -2, 0.25});
  backward(testing::weighted_sum(ops::add(a, b), w2));
  EXPECT_NE(a.grad().raw(), b.grad().raw()) << "two gradients still share one buffer";
  const std::vector<double> want = {1.5, 0, 0, 3.25};
  EXPECT_EQ(a.grad().to_vector<double>(), want);
  EXPECT_EQ(b.grad().to_vector<double>(), want);
}

// x + 2x with the 2x tensor held: add shares dy between x and it; scale's backward then adds into
// x's gradient, which must not change the other holder's.
TEST_F(Autograd, AWriteIntoASharedGradientLeavesTheOtherHolderAlone) {
  Tensor x = Tensor::from_vector<double>({3}, {0.25, -1.5, 4.0});
  x.set_requires_grad(true);
  const Tensor w = Tensor::from_vector<double>({3}, {1, -2, 0.5});
  Tensor twice = ops::scale(x, 2.0);
  backward(testing::weighted_sum(ops::add(x, twice), w));
  EXPECT_EQ(twice.grad().to_vector<double>(), w.to_vector<double>());
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{3, -6, 1.5}));
}

// The sharing survives a reshape: x's gradient is a view of the dy that b holds too, and the later
// write into x's (from 3x) copies it.
TEST_F(Autograd, ASharedGradientStaysSharedThroughReshape) {
  Tensor x = Tensor::from_vector<double>({2, 2}, {1, 2, 3, 4});
  Tensor b = Tensor::from_vector<double>({4}, {0, 0, 0, 0});
  x.set_requires_grad(true);
  b.set_requires_grad(true);
  const Tensor w = Tensor::from_vector<double>({4}, {1, 2, -1, 0.5});
  const Tensor w3 = Tensor::from_vector<double>({4}, {0.5, 0.5, 1, -1});
  Tensor thrice = ops::scale(x, 3.0);  // recorded first, so its backward runs last
  Tensor y = ops::add(ops::reshape(x, {4}), b);
  backward(ops::add(testing::weighted_sum(y, w), testing::weighted_sum(thrice, w3)));
  EXPECT_EQ(b.grad().to_vector<double>(), w.to_vector<double>());
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2.5, 3.5, 2, -2.5}));
}

}  // namespace
}  // namespace kd
