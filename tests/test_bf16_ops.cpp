// The bf16 precision at the op front doors (engine/ops/bf16_operands.h): every layer op given
// bf16 activations must be, bit for bit, its f32 op on the widened operands with each output
// and each input gradient rounded once to bf16, while f32 parameters get exactly the f32 op's
// gradients. One table of ops runs on the CPU (Bf16Ops) and on the GPU backend (CudaBf16Ops: a
// GPU, or the grid emulator), each device against itself. Then whole models: --precision bf16
// against fp32 from the same weights, within stated tolerances, with fp32 master weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "base/philox.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/runtime_config.h"
#include "models/classifier.h"
#include "tests/cuda_testing.h"

namespace kd {
namespace {

// Values of bf16 precision (so the f32 side starts from the very same numbers), uniform in
// [lo, hi), as an f32 tensor on `device`.
Tensor bf16_exact(const Shape& shape, uint64_t seed, Device device, double lo = -1, double hi = 1) {
  std::vector<float> v(size_t(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = bf16_to_float(bf16_from_double(lo + (hi - lo) * philox_uniform_double(seed, kStreamTest, i)));
  return Tensor::from_vector<float>(shape, v).to(device);
}

std::vector<uint32_t> bits_of(const Tensor& t) {  // f32 or bf16 (widened exactly)
  const std::vector<float> v = (t.dtype() == DType::F32 ? t : t.to(DType::F32)).to(Device::cpu())
                                   .to_vector<float>();
  std::vector<uint32_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = float_bits(v[i]);
  return out;
}

// What a bf16 tensor must hold: the f32 tensor rounded once.
std::vector<uint32_t> rounded_bits(const Tensor& f32) {
  return bits_of(f32.to(DType::BF16));
}

// One op under test: `inputs` are f32 tensors (bf16-exact values); `as_bf16` says which of them
// the bf16 run passes as bf16 (activations, weight copies); the rest stay f32 (parameters).
// `run` applies the op and returns its output.
struct OpCase {
  std::string name;
  std::vector<Tensor> inputs;
  std::vector<bool> as_bf16;
  std::function<Tensor(const std::vector<Tensor>&)> run;
};

// A scalar whose gradient into y is R (bf16-exact, so the bf16 run's rounded upstream gradient
// equals the f32 run's): linear(reshape(f32(y), [1, numel]), R).
Tensor drive(const Tensor& y, const Tensor& r) {
  const Tensor wide = y.dtype() == DType::F32 ? y : ops::cast(y, DType::F32);
  return ops::linear(ops::reshape(wide, {1, y.numel()}), r, Tensor());
}

void check_case(const OpCase& c, Device device) {
  SCOPED_TRACE(c.name);
  std::vector<Tensor> f32_in, mixed_in;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor f = c.inputs[i].clone().set_requires_grad(true);
    Tensor m = (c.as_bf16[i] ? c.inputs[i].to(DType::BF16) : c.inputs[i].clone())
                   .set_requires_grad(true);
    f32_in.push_back(f), mixed_in.push_back(m);
  }
  const Tensor y32 = c.run(f32_in);
  const Tensor y16 = c.run(mixed_in);
  ASSERT_EQ(y16.dtype(), DType::BF16);
  EXPECT_EQ(bits_of(y16), rounded_bits(y32)) << "forward";
  const Tensor r = bf16_exact({1, y32.numel()}, 77, device);
  backward(drive(y32, r));
  backward(drive(y16, r));
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    SCOPED_TRACE("input " + std::to_string(i));
    ASSERT_TRUE(f32_in[i].grad().defined());
    ASSERT_TRUE(mixed_in[i].grad().defined());
    ASSERT_EQ(mixed_in[i].grad().dtype(), mixed_in[i].dtype());
    if (c.as_bf16[i])
      EXPECT_EQ(bits_of(mixed_in[i].grad()), rounded_bits(f32_in[i].grad()));
    else
      EXPECT_EQ(bits_of(mixed_in[i].grad()), bits_of(f32_in[i].grad()));
  }
}

std::vector<OpCase> op_cases(Device d) {
  auto rnd = [d](const Shape& s, uint64_t seed) { return bf16_exact(s, seed, d); };
  auto pos = [d](const Shape& s, uint64_t seed) { return bf16_exact(s, seed, d, 0.5, 1.5); };
  std::vector<OpCase> cases;
  cases.push_back({"relu", {rnd({2, 3, 5, 5}, 1)}, {true},
                   [](const std::vector<Tensor>& t) { return ops::relu(t[0]); }});
  cases.push_back({"add", {rnd({2, 3, 4, 4}, 2), rnd({2, 3, 4, 4}, 3)}, {true, true},
                   [](const std::vector<Tensor>& t) { return ops::add(t[0], t[1]); }});
  // x feeds both operands: the second gradient adds into the first (add_to_grad).
  cases.push_back({"add, one input twice", {rnd({2, 3, 4, 4}, 4)}, {true},
                   [](const std::vector<Tensor>& t) {
                     return ops::add(ops::relu(t[0]), ops::add(t[0], t[0]));
                   }});
  cases.push_back({"conv2d 3x3, bias", {rnd({2, 3, 7, 7}, 5), rnd({4, 3, 3, 3}, 6), rnd({4}, 7)},
                   {true, true, false}, [](const std::vector<Tensor>& t) {
                     return ops::conv2d(t[0], t[1], t[2], 1, 1);
                   }});
  cases.push_back({"conv2d 1x1 stride 2 + residual",
                   {rnd({2, 4, 6, 6}, 8), rnd({5, 4, 1, 1}, 9), rnd({2, 5, 3, 3}, 10)},
                   {true, true, true}, [](const std::vector<Tensor>& t) {
                     return ops::conv2d(t[0], t[1], Tensor(), 2, 0, t[2]);
                   }});
  cases.push_back({"linear", {rnd({3, 6}, 11), rnd({4, 6}, 12), rnd({4}, 13)},
                   {true, true, false}, [](const std::vector<Tensor>& t) {
                     return ops::linear(t[0], t[1], t[2]);
                   }});
  cases.push_back({"avg_pool2d", {rnd({2, 3, 6, 6}, 14)}, {true},
                   [](const std::vector<Tensor>& t) { return ops::avg_pool2d(t[0], 2, 2); }});
  cases.push_back({"max_pool2d", {rnd({2, 3, 6, 6}, 15)}, {true},
                   [](const std::vector<Tensor>& t) { return ops::max_pool2d(t[0], 3, 2, 1); }});
  cases.push_back({"global_avg_pool", {rnd({2, 5, 4, 4}, 16)}, {true},
                   [](const std::vector<Tensor>& t) { return ops::global_avg_pool(t[0]); }});
  cases.push_back({"dropout", {rnd({3, 40}, 17)}, {true}, [](const std::vector<Tensor>& t) {
                     DropoutKey key;
                     key.seed = 5, key.step = 2, key.layer = 1;
                     return ops::dropout(t[0], 0.3, key, true);
                   }});
  for (bool relu : {false, true}) {
    cases.push_back({std::string("batch_norm train") + (relu ? " + relu" : ""),
                     {rnd({4, 3, 5, 5}, 18), pos({3}, 19), rnd({3}, 20)}, {true, false, false},
                     [relu, d](const std::vector<Tensor>& t) {
                       Tensor rm = Tensor::zeros({3}, DType::F32, d);
                       Tensor rv = Tensor::full({3}, 1.0, DType::F32, d);
                       return ops::batch_norm(t[0], t[1], t[2], rm, rv, true, 0.1, 1e-5, relu);
                     }});
  }
  cases.push_back({"batch_norm eval + relu", {rnd({4, 3, 5, 5}, 21), pos({3}, 22), rnd({3}, 23)},
                   {true, false, false}, [d](const std::vector<Tensor>& t) {
                     Tensor rm = bf16_exact({3}, 24, d, -0.2, 0.2);
                     Tensor rv = bf16_exact({3}, 25, d, 0.5, 2.0);
                     return ops::batch_norm(t[0], t[1], t[2], rm, rv, false, 0.1, 1e-5, true);
                   }});
  cases.push_back({"group_norm", {rnd({2, 4, 3, 3}, 26), pos({4}, 27), rnd({4}, 28)},
                   {true, false, false}, [](const std::vector<Tensor>& t) {
                     return ops::group_norm(t[0], t[1], t[2], 1, 1e-5);
                   }});
  return cases;
}

void check_every_op(Device device) {
  for (const OpCase& c : op_cases(device)) check_case(c, device);
}

TEST(Bf16Ops, EveryLayerOpIsItsFp32OpRoundedOnce) { check_every_op(Device::cpu()); }

TEST(CudaBf16Ops, EveryLayerOpIsItsFp32OpRoundedOnce) {
  KD_REQUIRE_CUDA();
  check_every_op(Device::cuda());
}

TEST(CudaBf16Ops, CudnnPathsToo) {
  KD_REQUIRE_CUDA();
  if (!cuda_testing::gpu().has_cudnn) GTEST_SKIP() << "no cuDNN in this backend";
  RuntimeConfig config = runtime_config();
  config.gpu_kernels.conv = config.gpu_kernels.bn = GpuImpl::Cudnn;
  ScopedRuntimeConfig scoped(config);
  check_every_op(Device::cuda());
}

// Under --tf32 the bf16 convolutions multiply on tensor cores too (TF32 mma on the bf16 operands,
// exact in TF32): the bf16 op is still the fp32 op, now on TF32 tensor cores, rounded once.
TEST(CudaBf16Ops, Tf32PathsToo) {
  KD_REQUIRE_CUDA();
  RuntimeConfig config = runtime_config();
  config.math.tf32 = true;
  config.math.deterministic = false;
  ScopedRuntimeConfig scoped(config);
  check_every_op(Device::cuda());
}

TEST(Bf16Ops, AGradientFromTwoOpsIsRoundedAtEachAdd) {
  // relu(x) twice: the first backward assigns bf16(g1), the second adds in one rounding:
  // bf16(float(bf16(g1)) + g2), with g1 = g2 = the masked upstream.
  const Tensor x32 = bf16_exact({1, 64}, 30, Device::cpu());
  Tensor x = x32.to(DType::BF16).set_requires_grad(true);
  const Tensor r = bf16_exact({1, 64}, 31, Device::cpu());
  backward(ops::add(drive(ops::relu(x), r), drive(ops::relu(x), r)));
  const std::vector<float> xv = x32.to_vector<float>(), rv = r.to_vector<float>();
  const std::vector<uint32_t> got = bits_of(x.grad());
  for (size_t i = 0; i < xv.size(); ++i) {
    const float g = xv[i] > 0 ? rv[i] : 0.0f;
    const float once = bf16_to_float(bf16_from_float(g));
    EXPECT_EQ(got[i], float_bits(bf16_to_float(bf16_from_float(once + g)))) << i;
  }
}

TEST(Bf16Ops, ParametersAndMixedDtypesAreChecked) {
  const Tensor x = bf16_exact({2, 3, 4, 4}, 40, Device::cpu()).to(DType::BF16);
  const Tensor w64 = Tensor::zeros({4, 3, 3, 3}, DType::F64);
  const Tensor b32 = Tensor::zeros({4});
  // f64 beside f32 is still refused; bf16 beside f64 computes in f64.
  EXPECT_THROW(ops::conv2d(x, w64, b32, 1, 1), Error);
  EXPECT_EQ(ops::conv2d(x, w64, Tensor(), 1, 1).dtype(), DType::BF16);
  // Batch norm's parameters must be the compute dtype, not bf16.
  const Tensor g16 = Tensor::full({3}, 1.0).to(DType::BF16);
  EXPECT_THROW(ops::batch_norm(x, g16, Tensor::zeros({3}), Tensor(), Tensor(), true, 0.1, 1e-5),
               Error);
  // The losses stay f32/f64.
  EXPECT_THROW(ops::log_softmax(Tensor::zeros({2, 3}).to(DType::BF16)), Error);
}

// Whole models: --precision bf16 against fp32 from the same initial weights and batches.
struct PrecisionRun {
  std::vector<double> losses;
  std::vector<float> logits;  // the first step's, before any update
  bool master_weights_f32 = true;
  size_t step_peak_bytes = 0;  // the first step's peak allocation beyond what it started with
};

PrecisionRun train_at(Precision precision, const std::string& arch, int hw, Device device,
                      int steps, int batch = 16) {
  RuntimeConfig config = runtime_config();
  config.precision = precision;
  ScopedRuntimeConfig scoped(config);
  auto model = models::make_model(arch, 10, 1, /*seed=*/7);
  model->to(device);
  model->train();
  SgdParams h;
  h.lr = 0.05, h.momentum = 0.9, h.nesterov = true, h.weight_decay = 5e-4;
  Sgd sgd(model->parameters(), h);
  PrecisionRun run;
  for (int s = 0; s < steps; ++s) {
    // One batch, every step: its loss must fall (it is being memorised).
    const Tensor x = bf16_exact({batch, 1, hw, hw}, 100, device);
    std::vector<int32_t> lab(batch);
    for (int i = 0; i < batch; ++i) lab[i] = int32_t(philox_below(200, kStreamTest, i, 10));
    const Tensor y = Tensor::from_vector<int32_t>({batch}, lab).to(device);
    sgd.zero_grad();
    CachingAllocator& alloc = CachingAllocator::for_device(device);
    const size_t before = alloc.in_use_bytes();
    alloc.reset_peak();
    const Tensor logits = model->forward(x);
    EXPECT_EQ(logits.dtype(), DType::F32);  // the loss and metrics see f32
    if (s == 0) run.logits = logits.to(Device::cpu()).to_vector<float>();
    const Tensor loss = ops::cross_entropy(logits, y);
    run.losses.push_back(loss.to(Device::cpu()).to_vector<float>()[0]);
    backward(loss);
    if (s == 0) run.step_peak_bytes = alloc.peak_in_use_bytes() - before;
    sgd.step();
  }
  for (const Tensor& p : model->parameters()) {
    run.master_weights_f32 = run.master_weights_f32 && p.dtype() == DType::F32 &&
                             p.grad().defined() && p.grad().dtype() == DType::F32;
  }
  return run;
}

// Tolerances: a bf16 activation carries a relative rounding error of at most 2^-9 (about 0.2%).
// Measured on the CPU (the test prints it): the first step's logits moved by 0.40% of their
// largest magnitude for PreResNet-8 and LeNet-5, the losses of 4 steps by at most 0.01%. The
// bounds (2% of the logits' range, 0.5% of each loss) leave room for other summation orders
// (the GPU's); the op tests above hold each op to the bit.
void check_bf16_against_fp32(const std::string& arch, int hw, Device device, int steps = 4,
                             int batch = 16) {
  SCOPED_TRACE(arch);
  const PrecisionRun f32 = train_at(Precision::Fp32, arch, hw, device, steps, batch);
  const PrecisionRun b16 = train_at(Precision::Bf16, arch, hw, device, steps, batch);
  EXPECT_TRUE(b16.master_weights_f32);
  ASSERT_EQ(f32.logits.size(), b16.logits.size());
  double range = 0, worst = 0;
  bool any_differs = false;
  for (size_t i = 0; i < f32.logits.size(); ++i) {
    range = std::max(range, std::fabs(double(f32.logits[i])));
    worst = std::max(worst, std::fabs(double(f32.logits[i]) - b16.logits[i]));
    any_differs = any_differs || f32.logits[i] != b16.logits[i];
  }
  EXPECT_TRUE(any_differs) << "bf16 gave the fp32 logits exactly: the precision did not apply";
  EXPECT_LE(worst, 0.02 * range) << "logits range " << range;
  double worst_loss = 0;
  for (int s = 0; s < steps; ++s) {
    EXPECT_NEAR(b16.losses[s], f32.losses[s], 0.005 * f32.losses[s]) << "step " << s;
    worst_loss = std::max(worst_loss, std::fabs(b16.losses[s] / f32.losses[s] - 1));
  }
  std::printf("%s: bf16 logits off by at most %.3g%% of their range, losses by %.3g%%\n",
              arch.c_str(), 100 * worst / range, 100 * worst_loss);
  // Training still trains: the bf16 run's loss falls as the fp32 run's does.
  EXPECT_LT(b16.losses.back(), b16.losses.front());

}

TEST(Bf16Training, PreResNetAndLeNetFollowFp32) {
  check_bf16_against_fp32("preresnet8", 32, Device::cpu());
  check_bf16_against_fp32("lenet5", 28, Device::cpu());
}

// The tape keeps bf16 activations, and the fp32 temporaries live for one kernel call: a step's
// peak memory falls where activations dominate it (PreResNet at batch 64; LeNet-5's is mostly
// weights and the bf16 copies add to it). Measured on the CPU: 0.84x (34.4 against 41.0 MiB);
// the rest of the peak is the kernels' own workspace and one op's fp32 temporaries. A tape that
// kept fp32 copies would be at 1x or above.
TEST(Bf16Training, ThePeakOfAPreResNetStepFalls) {
  const PrecisionRun f32 = train_at(Precision::Fp32, "preresnet8", 32, Device::cpu(), 1, 64);
  const PrecisionRun b16 = train_at(Precision::Bf16, "preresnet8", 32, Device::cpu(), 1, 64);
  std::printf("preresnet8, batch 64: step peak %.2f MiB in bf16, %.2f MiB in fp32 (%.2fx)\n",
              b16.step_peak_bytes / 1048576.0, f32.step_peak_bytes / 1048576.0,
              double(b16.step_peak_bytes) / double(f32.step_peak_bytes));
  EXPECT_LT(double(b16.step_peak_bytes), 0.9 * double(f32.step_peak_bytes));
}

TEST(CudaBf16Training, PreResNetFollowsFp32) {
  KD_REQUIRE_CUDA();
  check_bf16_against_fp32("preresnet8", 32, Device::cuda(), /*steps=*/3, /*batch=*/8);
}

TEST(Bf16Training, ThePrecisionFlagIsParsed) {
  EXPECT_EQ(parse_precision("--precision", "bf16"), Precision::Bf16);
  EXPECT_EQ(parse_precision("--precision", "fp32"), Precision::Fp32);
  try {
    parse_precision("--precision", "fp16");
    FAIL() << "fp16 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--precision: expected fp32 or bf16"), std::string::npos);
  }
}

}  // namespace
}  // namespace kd
