// Dropout (kernels/elementwise.h, engine/ops/dropout.cpp, nn::Dropout) on the CPU:
//  - the kernels: cpu:: equals ref:: bitwise on lengths that are not multiples of the 4-element
//    Philox group, for any thread count; the mask is the documented Philox layout;
//  - statistics: the kept fraction is 1 - p within 5 standard deviations, and every kept value is
//    exactly x * T(1 / (1 - p)), every dropped one exactly 0;
//  - the front door: eval mode and p = 0 return the input itself with no tape node; p outside
//    [0, 1) is refused; the same key gives the same mask, another step, layer or seed another;
//    the backward applies the forward's mask (gradient check in double, and d sum / dx = y / x);
//  - the module: nn::Dropout reads the step the model was given (set_step reaches children);
//  - CudaDropoutOp: the op on a GPU tensor gives the CPU's output and gradient bitwise (skips
//    without a device; the grid label runs it on the emulator).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"
#include "kernels/elementwise.h"
#include "tests/cuda_testing.h"
#include "tests/gradcheck.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using kernel_testing::for_thread_counts;
using kernel_testing::same_bits;
using kernel_testing::uniform;

DropoutMask mask_for(double p, uint64_t seed = 11, uint64_t step = 7, uint32_t layer = 2) {
  DropoutMask m;
  m.key.seed = seed, m.key.step = step, m.key.layer = layer;
  m.keep_threshold = dropout_threshold(p);
  return m;
}

template <class T>
void check_cpu_matches_ref() {
  // 1, 3, 5: shorter than or straddling one group; 4097: one element past a group boundary;
  // 2^15 + 3: past the OpenMP threshold, uneven chunks.
  for (int64_t n : {int64_t(1), int64_t(3), int64_t(5), int64_t(4097), int64_t(32771)}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    const DropoutMask m = mask_for(0.3);
    const T scale = T(1.0 / 0.7);
    auto x = uniform<T>(n, 100, -2, 2), dy = uniform<T>(n, 101, -1, 1);
    auto dx0 = uniform<T>(n, 102, -1, 1);
    std::vector<T> y_ref(n), dx_ref = dx0;
    ref::dropout_forward<T>(n, m, scale, x.data(), y_ref.data());
    ref::dropout_backward<T>(n, m, scale, dy.data(), dx_ref.data());
    for_thread_counts([&](int) {
      std::vector<T> y(n), dx = dx0;
      cpu::dropout_forward<T>(n, m, scale, x.data(), y.data());
      cpu::dropout_backward<T>(n, m, scale, dy.data(), dx.data());
      EXPECT_TRUE(same_bits(y, y_ref)) << "forward";
      EXPECT_TRUE(same_bits(dx, dx_ref)) << "backward";
    });
  }
}

TEST(DropoutKernels, CpuMatchesRefBitwiseFloat) { check_cpu_matches_ref<float>(); }
TEST(DropoutKernels, CpuMatchesRefBitwiseDouble) { check_cpu_matches_ref<double>(); }

TEST(DropoutKernels, MaskIsThePhiloxLayoutOfTheContract) {
  const DropoutMask m = mask_for(0.5, /*seed=*/5, /*step=*/9, /*layer=*/3);
  for (int64_t i : {int64_t(0), int64_t(1), int64_t(6), int64_t(1023)}) {
    const Philox4 r = philox4x32(5, uint64_t(kStreamDropout) | (uint64_t(3) << 32),
                                 (uint64_t(9) << 32) | uint64_t(i / 4));
    EXPECT_EQ(dropout_keeps(m, i), r.v[i % 4] >= (1u << 31)) << i;
  }
  EXPECT_EQ(dropout_threshold(0.0), 0u);
  EXPECT_EQ(dropout_threshold(0.5), 1u << 31);
  EXPECT_EQ(dropout_threshold(0.25), 1u << 30);
  EXPECT_EQ(dropout_threshold(std::nextafter(1.0, 0.0)), 4294967295u);  // something stays kept
}

// Kept fraction within 5 sigma of 1 - p (n = 2^18: sigma <= 0.001); values exactly 0 or
// x * T(1 / (1 - p)).
template <class T>
void check_statistics(double p) {
  SCOPED_TRACE("p=" + std::to_string(p));
  const int64_t n = int64_t(1) << 18;
  auto xv = uniform<T>(n, 200, 0.5, 2.0);  // never zero, so a zero output means "dropped"
  Tensor x = Tensor::from_vector<T>({n}, xv);
  DropoutKey key;
  key.seed = 3, key.step = 1, key.layer = 0;
  std::vector<T> y = ops::dropout(x, p, key).template to_vector<T>();
  const T scale = T(1.0 / (1.0 - p));
  int64_t kept = 0, bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (y[i] == T(0)) continue;
    ++kept;
    bad += y[i] != xv[i] * scale;
  }
  EXPECT_EQ(bad, 0) << "kept values not scaled by exactly 1/(1-p)";
  const double fraction = double(kept) / n, sigma = std::sqrt(p * (1 - p) / n);
  EXPECT_NEAR(fraction, 1 - p, 5 * sigma) << kept << " of " << n << " kept";
}

TEST(Dropout, KeptFractionIsOneMinusPAndKeptValuesAreScaledExactly) {
  for (double p : {0.1, 0.5, 0.9}) {
    check_statistics<float>(p);
    check_statistics<double>(p);
  }
}

TEST(Dropout, EvalModeAndZeroPAreTheIdentityWithNoTapeNode) {
  clear_tape();
  Tensor x = testing::random_f64({4, 5}, 1);
  x.set_requires_grad(true);
  for (bool training : {false, true}) {
    const double p = training ? 0.0 : 0.5;
    Tensor y = ops::dropout(x, p, DropoutKey{}, training);
    EXPECT_EQ(y.data<double>(), x.data<double>()) << "not the input itself";
    EXPECT_EQ(tape_size(), 0u);
  }
  Tensor y = ops::dropout(x, 0.5, DropoutKey{}, /*training=*/true);
  EXPECT_NE(y.data<double>(), x.data<double>());
  EXPECT_EQ(tape_size(), 1u);
  clear_tape();
}

TEST(Dropout, ProbabilityOutsideZeroOneIsRefused) {
  Tensor x = testing::random_f64({8}, 2);
  for (double p : {1.0, -0.1, 1.5, std::nan("")}) {
    EXPECT_THROW(ops::dropout(x, p, DropoutKey{}), Error) << p;
    EXPECT_THROW(ops::dropout(x, p, DropoutKey{}, /*training=*/false), Error) << p;
    EXPECT_THROW(nn::Dropout(p, 0, 0), Error) << p;
  }
  DropoutKey far;
  far.step = kDropoutMaxStep;
  EXPECT_THROW(ops::dropout(x, 0.5, far), Error);
}

TEST(Dropout, SameKeySameMaskAnyOtherKeyAnotherMask) {
  Tensor x = Tensor::full({1000}, 1.0, DType::F64);
  DropoutKey key;
  key.seed = 42, key.step = 10, key.layer = 1;
  auto mask_of = [&](const DropoutKey& k) { return ops::dropout(x, 0.5, k).to_vector<double>(); };
  const std::vector<double> base = mask_of(key);
  EXPECT_EQ(mask_of(key), base);
  DropoutKey other_step = key, other_layer = key, other_seed = key;
  other_step.step = 11, other_layer.layer = 0, other_seed.seed = 43;
  for (const DropoutKey& k : {other_step, other_layer, other_seed}) {
    const std::vector<double> m = mask_of(k);
    int64_t differ = 0;
    for (size_t i = 0; i < m.size(); ++i) differ += m[i] != base[i];
    // Independent masks at p = 0.5 differ in about half the places.
    EXPECT_GT(differ, 400) << "step " << k.step << " layer " << k.layer << " seed " << k.seed;
  }
}

TEST(Dropout, GradientCheckInDoubleWithTheMaskFixedByTheKey) {
  Tensor x = testing::random_away_from_zero({3, 2, 5, 7}, 5);  // 210: not a multiple of 4 groups
  x.set_requires_grad(true);
  Tensor w = testing::random_f64({x.numel()}, 6);
  DropoutKey key;
  key.seed = 9, key.step = 123, key.layer = 4;
  for (double p : {0.2, 0.7}) {
    auto f = [&](const std::vector<Tensor>& in) {
      return testing::weighted_sum(ops::dropout(in[0], p, key), w);
    };
    testing::GradCheckResult r = testing::gradcheck(f, {x});
    EXPECT_LT(r.max_error, 1e-7) << "p=" << p << ": " << r.describe();
    EXPECT_GT(r.max_numeric, 0.1) << r.describe();
  }
}

TEST(Dropout, BackwardAppliesTheForwardMask) {
  clear_tape();
  Tensor x = testing::random_away_from_zero({999}, 7);
  x.set_requires_grad(true);
  DropoutKey key;
  key.seed = 1, key.step = 2, key.layer = 3;
  Tensor y = ops::dropout(x, 0.4, key);
  backward(testing::weighted_sum(y, Tensor::full({999}, 1.0, DType::F64)));
  std::vector<double> g = x.grad().to_vector<double>(), yv = y.to_vector<double>(),
                      xv = x.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_EQ(g[i], yv[i] == 0 ? 0.0 : 1.0 / 0.6) << i << ": x " << xv[i] << " y " << yv[i];
}

// The module takes its step from the model it sits in: set_step reaches every child, train()
// and eval() switch it like any layer.
TEST(Dropout, ModuleIsKeyedByTheStepItsModelWasGiven) {
  class Net : public nn::Module {
   public:
    Net() {
      auto c = std::make_shared<nn::Container>();
      drop = c->add("0", std::make_shared<nn::Dropout>(0.5, /*seed=*/77, /*layer=*/0));
      register_module("inner", c);
    }
    std::shared_ptr<nn::Dropout> drop;
  };
  Net net;
  EXPECT_TRUE(net.state_dict().empty());
  Tensor x = Tensor::full({256}, 1.0, DType::F64);
  auto run = [&] { return net.drop->forward(x).to_vector<double>(); };
  net.set_step(5);
  EXPECT_EQ(net.drop->step(), 5u);
  const std::vector<double> at5 = run();
  DropoutKey key;
  key.seed = 77, key.step = 5, key.layer = 0;
  EXPECT_EQ(at5, ops::dropout(x, 0.5, key).to_vector<double>());
  net.set_step(6);
  EXPECT_NE(run(), at5);
  net.set_step(5);
  EXPECT_EQ(run(), at5);
  net.eval();
  EXPECT_EQ(run(), x.to_vector<double>());
}

// ops::dropout on a GPU tensor: the CPU's output and input gradient, bitwise (same key).
TEST(CudaDropoutOp, GivesTheCpuOutputAndGradientBitwise) {
  KD_REQUIRE_CUDA();
  DropoutKey key;
  key.seed = 8, key.step = 1234, key.layer = 2;
  Tensor host = testing::random_f64({3, 7, 11}, 9);
  auto run = [&](Device device) {
    clear_tape();
    Tensor x = host.to(device);
    x.set_requires_grad(true);
    Tensor y = ops::dropout(x, 0.5, key);
    Tensor w = testing::random_f64({y.numel()}, 10).to(device);
    backward(testing::weighted_sum(y, w));
    return std::make_pair(y.to(Device::cpu()).to_vector<double>(),
                          x.grad().to(Device::cpu()).to_vector<double>());
  };
  const auto cpu = run(Device::cpu());
  const auto gpu = run(Device::cuda());
  EXPECT_TRUE(same_bits(gpu.first, cpu.first)) << "output";
  EXPECT_TRUE(same_bits(gpu.second, cpu.second)) << "gradient";
}

}  // namespace
}  // namespace kd
