// bf16 storage (kernels/bf16.h, kernels/cast.h, DType::BF16, ops::cast): the rounding against
// hand-computed bits and an exact oracle, the CPU cast kernels against ref:: at several thread
// counts, the cast op's values and straight-through gradient, Tensor::to, and BF16 in
// safetensors checkpoints (written, read back, widened exactly into f32 parameters).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "base/philox.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/nn/bf16_weights.h"
#include "engine/nn/init.h"
#include "engine/nn/layers.h"
#include "engine/nn/module.h"
#include "engine/ops.h"
#include "engine/safetensors.h"
#include "kernels/backend.h"
#include "kernels/cast.h"
#include "tests/cli_testing.h"
#include "tests/gradcheck.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

uint16_t from_float_bits(uint32_t u) { return bf16_from_float(float_from_bits(u)).bits; }

TEST(Bf16Rounding, FloatHandCases) {
  EXPECT_EQ(from_float_bits(0x3f800000u), 0x3f80);  // 1
  EXPECT_EQ(from_float_bits(0x3f807fffu), 0x3f80);  // just below the tie: down
  EXPECT_EQ(from_float_bits(0x3f808000u), 0x3f80);  // tie, 0x3f80 even: down
  EXPECT_EQ(from_float_bits(0x3f808001u), 0x3f81);  // just above the tie: up
  EXPECT_EQ(from_float_bits(0x3f818000u), 0x3f82);  // tie, 0x3f81 odd: up to even
  EXPECT_EQ(bf16_from_float(-1.5f).bits, 0xbfc0);
  EXPECT_EQ(bf16_from_float(-0.0f).bits, 0x8000);
  EXPECT_EQ(from_float_bits(0x00008000u), 0x0000);  // subnormal tie to even zero
  EXPECT_EQ(from_float_bits(0x00018000u), 0x0002);  // subnormal tie up to even
  EXPECT_EQ(from_float_bits(0x7f800000u), 0x7f80);  // +inf
  EXPECT_EQ(from_float_bits(0xff800000u), 0xff80);  // -inf
  EXPECT_EQ(from_float_bits(0x7f7f7fffu), 0x7f7f);  // below the largest finite's upper tie
  EXPECT_EQ(from_float_bits(0x7f7f8000u), 0x7f80);  // tie at the top, 0x7f7f odd: infinity
  EXPECT_EQ(from_float_bits(0x7f7fffffu), 0x7f80);  // FLT_MAX: infinity
  // A NaN whose payload sits in the dropped bits must not become infinity; its sign stays.
  EXPECT_EQ(from_float_bits(0x7f800001u), 0x7fc0);
  EXPECT_EQ(from_float_bits(0xff800001u), 0xffc0);
  EXPECT_EQ(from_float_bits(0x7fc00000u), 0x7fc0);
}

TEST(Bf16Rounding, EveryBf16ValueRoundTripsExactly) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const bf16 h{uint16_t(b)};
    const float f = bf16_to_float(h);
    EXPECT_EQ(float_bits(f), b << 16);
    const bool nan = (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0;
    if (nan) {
      EXPECT_TRUE(std::isnan(bf16_to_double(h))) << b;
    } else {
      ASSERT_EQ(bf16_from_float(f).bits, b) << b;
      ASSERT_EQ(bf16_from_double(double(f)).bits, b) << b;
    }
  }
}

// The exact rounding of a double to bf16 (normal float range): 8 significant bits, nearest,
// ties to even, computed on the double's own significand.
uint16_t oracle_bf16(double d) {
  int e = 0;
  const double m = std::frexp(std::fabs(d), &e);  // |d| = m * 2^e, m in [0.5, 1)
  const double scaled = m * 256.0;                  // exact: a power-of-two scaling
  double k = std::floor(scaled);
  const double rest = scaled - k;                   // exact
  if (rest > 0.5 || (rest == 0.5 && std::fmod(k, 2.0) == 1.0)) k += 1.0;
  const double rounded = std::ldexp(k, e - 8);
  if (rounded > double(std::numeric_limits<float>::max()))
    return uint16_t((d < 0 ? 0x8000u : 0u) | 0x7f80u);
  const float f = float(d < 0 ? -rounded : rounded);  // exact: it has 8 significant bits
  return uint16_t(float_bits(f) >> 16);
}

TEST(Bf16Rounding, DoubleIsOneCorrectRounding) {
  // 1 + 2^-8 + 2^-40: the nearest float is the tie 1 + 2^-8, which a second rounding sends to
  // the even 1; the double itself is above the tie and rounds up.
  const double above_tie = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
  EXPECT_EQ(bf16_from_float(float(above_tie)).bits, 0x3f80) << "the double rounding this avoids";
  EXPECT_EQ(bf16_from_double(above_tie).bits, 0x3f81);
  EXPECT_EQ(bf16_from_double(-above_tie).bits, 0xbf81);
  EXPECT_EQ(bf16_from_double(1.0 + std::ldexp(1.0, -8)).bits, 0x3f80);  // the exact tie
  EXPECT_EQ(bf16_from_double(1e-50).bits, 0x0000);   // below every subnormal: zero
  EXPECT_EQ(bf16_from_double(-1e-50).bits, 0x8000);
  EXPECT_EQ(bf16_from_double(1e300).bits, 0x7f80);
  EXPECT_EQ(bf16_from_double(-1e300).bits, 0xff80);
  EXPECT_TRUE(std::isnan(bf16_to_float(bf16_from_double(std::nan("")))));
  // Random doubles across the normal float range against the oracle; half of them placed
  // within a few float ulps of a bf16 tie, where a second rounding would go wrong.
  int near_ties = 0;
  for (uint64_t i = 0; i < 200000; ++i) {
    const Philox4 r = philox4x32(7, kStreamTest, i);
    const int exponent = int(r.v[0] % 250) - 125;
    double d = std::ldexp(1.0 + double(r.v[1]) / 4294967296.0 + double(r.v[2]) * 0x1p-64, exponent);
    if (i % 2) {
      const double ulp_bf16 = std::ldexp(1.0, exponent - 7);
      d = std::ldexp(std::floor(std::ldexp(d, 7 - exponent)), exponent - 7) + ulp_bf16 / 2 +
          (double(int(r.v[3] % 7)) - 3) * std::ldexp(1.0, exponent - 40);
      ++near_ties;
    }
    if (r.v[3] & 0x80000000u) d = -d;
    ASSERT_EQ(bf16_from_double(d).bits, oracle_bf16(d)) << "d = " << d;
  }
  EXPECT_EQ(near_ties, 100000);
}

// Floats with every special: zeros, subnormals, infinities, NaNs, values near the top.
template <class T>
std::vector<T> cast_inputs(int64_t n, uint64_t seed) {
  std::vector<T> v = kernel_testing::uniform<T>(size_t(n), seed, -1e3, 1e3);
  const T specials[] = {T(0),
                        -T(0),
                        std::numeric_limits<T>::infinity(),
                        -std::numeric_limits<T>::infinity(),
                        std::numeric_limits<T>::quiet_NaN(),
                        T(std::numeric_limits<float>::max()),
                        T(std::numeric_limits<float>::denorm_min()),
                        T(3.3961e38)};
  for (size_t i = 0; i < sizeof specials / sizeof specials[0] && i < v.size(); ++i)
    v[i * 97 % v.size()] = specials[i];
  return v;
}

template <class T>
void check_cpu_against_ref() {
  for (int64_t n : {int64_t(1), int64_t(37), int64_t(100003)}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    const std::vector<T> x = cast_inputs<T>(n, 11);
    std::vector<bf16> start(static_cast<size_t>(n));
    for (size_t i = 0; i < start.size(); ++i) start[i] = to_bf16_rn(T(x[i] * T(0.37)));
    std::vector<bf16> y_ref = start, acc_ref = start;
    ref::to_bf16<T>(n, x.data(), y_ref.data(), false);
    ref::to_bf16<T>(n, x.data(), acc_ref.data(), true);
    for (size_t i = 0; i < size_t(n); ++i) {
      ASSERT_EQ(y_ref[i].bits, to_bf16_rn(x[i]).bits) << i;
      ASSERT_EQ(acc_ref[i].bits, to_bf16_rn(T(bf16_to_float(start[i])) + x[i]).bits) << i;
    }
    std::vector<T> wide_ref(static_cast<size_t>(n)), wide_acc_ref = x;
    ref::from_bf16<T>(n, y_ref.data(), wide_ref.data(), false);
    ref::from_bf16<T>(n, y_ref.data(), wide_acc_ref.data(), true);
    for (size_t i = 0; i < size_t(n); ++i)
      if (!std::isnan(x[i])) {
        ASSERT_EQ(double(wide_ref[i]), bf16_to_double(y_ref[i])) << i;
      }
    kernel_testing::for_thread_counts([&](int threads) {
      SCOPED_TRACE("threads=" + std::to_string(threads));
      std::vector<bf16> y = start, acc = start;
      cpu::to_bf16<T>(n, x.data(), y.data(), false);
      cpu::to_bf16<T>(n, x.data(), acc.data(), true);
      EXPECT_TRUE(kernel_testing::same_bits(y, y_ref));
      EXPECT_TRUE(kernel_testing::same_bits(acc, acc_ref));
      std::vector<T> wide(static_cast<size_t>(n)), wide_acc = x;
      cpu::from_bf16<T>(n, y_ref.data(), wide.data(), false);
      cpu::from_bf16<T>(n, y_ref.data(), wide_acc.data(), true);
      EXPECT_TRUE(kernel_testing::same_bits(wide, wide_ref));
      EXPECT_TRUE(kernel_testing::same_bits(wide_acc, wide_acc_ref));
    });
  }
}

TEST(CastKernel, CpuMatchesRefFloat) { check_cpu_against_ref<float>(); }
TEST(CastKernel, CpuMatchesRefDouble) { check_cpu_against_ref<double>(); }

class CastOp : public ::testing::Test {
 protected:
  void SetUp() override { clear_tape(); }
  void TearDown() override { clear_tape(); }
};

TEST_F(CastOp, ForwardRoundsAndTheGradientIsTheReverseCast) {
  const std::vector<float> values = {1.0f, 1.00390625f, 1.01171875f, -3.14159f, 1e-3f, 65504.f};
  Tensor x = Tensor::from_vector<float>({2, 3}, values);
  x.set_requires_grad(true);
  Tensor h = ops::cast(x, DType::BF16);
  ASSERT_EQ(h.dtype(), DType::BF16);
  const std::vector<bf16> hv = h.to_vector<bf16>();
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(hv[i].bits, bf16_from_float(values[i]).bits);
  EXPECT_EQ(hv[1].bits, 0x3f80);  // 1 + 2^-8: a tie, to even
  EXPECT_EQ(hv[2].bits, 0x3f82);  // 1 + 3 * 2^-8: a tie, up to even
  // Two consumers of the bf16 tensor: its gradient is accumulated in bf16 (the second cast's
  // backward adds into the first's), then widened once into x's f32 gradient.
  Tensor back = ops::cast(h, DType::F32), back2 = ops::cast(h, DType::F32);
  ASSERT_EQ(back.dtype(), DType::F32);
  const Tensor weights = Tensor::from_vector<float>({6}, {1, 2, 3, 4, 5, 6});
  backward(testing::weighted_sum(ops::add(back, back2), weights));
  const std::vector<float> gx = x.grad().to_vector<float>();
  for (size_t i = 0; i < gx.size(); ++i) EXPECT_EQ(gx[i], 2.0f * float(i + 1));
  EXPECT_EQ(ops::cast(x, DType::F32).raw(), x.raw()) << "same dtype: x itself";
  EXPECT_THROW(ops::cast(Tensor::zeros({2}, DType::I32), DType::BF16), Error);
}

TEST_F(CastOp, GradientRoundsOnTheWayIntoBf16AndAccumulatesThere) {
  // The f32 gradient 1 + 2^-8 + 2^-9 is above the bf16 tie and rounds up; 1 + 2^-9 is below it
  // and rounds down. A second backward adds in f32 and rounds once more.
  Tensor h = Tensor::from_vector<float>({2}, {2.0f, 3.0f}).to(DType::BF16);
  h.set_requires_grad(true);
  const Tensor weights = Tensor::from_vector<float>({2}, {1.0f + 0x1p-8f + 0x1p-9f, 1.0f + 0x1p-9f});
  backward(testing::weighted_sum(ops::cast(h, DType::F32), weights));
  std::vector<bf16> g = h.grad().to_vector<bf16>();
  EXPECT_EQ(g[0].bits, 0x3f81);
  EXPECT_EQ(g[1].bits, 0x3f80);
  backward(testing::weighted_sum(ops::cast(h, DType::F32), weights));
  g = h.grad().to_vector<bf16>();
  EXPECT_EQ(g[0].bits, bf16_from_float(bf16_to_float(bf16{0x3f81}) + 1.0f + 0x1p-8f + 0x1p-9f).bits);
  EXPECT_EQ(g[1].bits, bf16_from_float(1.0f + 1.0f + 0x1p-9f).bits);
  EXPECT_EQ(bf16_to_float(g[1]), 2.0f);
}

TEST(CastTensor, ToBf16FromEveryDtypeIsOneRounding) {
  const double above_tie = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
  Tensor d = Tensor::from_vector<double>({3}, {above_tie, -2.5, 1e300});
  const std::vector<bf16> h = d.to(DType::BF16).to_vector<bf16>();
  EXPECT_EQ(h[0].bits, 0x3f81);
  EXPECT_EQ(h[1].bits, 0xc020);
  EXPECT_EQ(h[2].bits, 0x7f80);
  Tensor ints = Tensor::from_vector<int32_t>({2}, {257, -3});  // 257 = 1.00390625 * 256: a tie
  const std::vector<bf16> hi = ints.to(DType::BF16).to_vector<bf16>();
  EXPECT_EQ(bf16_to_float(hi[0]), 256.0f);
  EXPECT_EQ(bf16_to_float(hi[1]), -3.0f);
  EXPECT_EQ(d.to(DType::BF16).to(DType::F64).to_vector<double>()[1], -2.5);
  Tensor full = Tensor::full({3}, 1.0 + std::ldexp(1.0, -7), DType::BF16);
  EXPECT_EQ(full.to_vector<bf16>()[2].bits, 0x3f81);
  EXPECT_EQ(Tensor::full({1}, -0.75, DType::BF16).item(), -0.75);
}

TEST(CastCheckpoint, Bf16TensorsRoundTripAndWidenExactlyIntoF32Parameters) {
  cli_testing::TempDir tmp;
  const std::string path = tmp / "bf16.safetensors";
  nn::Initializer init(5);
  nn::Linear source(3, 2, init);
  // A model saved in bfloat16, as PyTorch's model.to(torch.bfloat16) would write it.
  nn::NamedTensors state;
  for (const auto& [name, t] : source.state_dict()) state.emplace_back(name, t.to(DType::BF16));
  save_checkpoint(path, state, {});
  const StFile file = read_safetensors(path);
  for (const StEntry& e : file.entries) {
    EXPECT_EQ(e.dtype, "BF16") << e.name;
    EXPECT_EQ(e.bytes.size(), size_t(shape_numel(e.shape)) * 2) << e.name;
  }
  const Checkpoint ckpt = load_checkpoint(path);
  for (const auto& [name, t] : state) {
    const Tensor& back = ckpt.tensors.at(name);
    ASSERT_EQ(back.dtype(), DType::BF16) << name;
    EXPECT_TRUE(kernel_testing::same_bits(back.to_vector<bf16>(), t.to_vector<bf16>())) << name;
    const std::vector<double> wide = values_as_double(*find(file, name));
    const std::vector<bf16> h = t.to_vector<bf16>();
    for (size_t i = 0; i < h.size(); ++i) EXPECT_EQ(wide[i], bf16_to_double(h[i])) << name;
  }
  nn::Initializer other_init(6);
  nn::Linear target(3, 2, other_init);
  target.load_state_dict(ckpt.tensors, true);
  const std::vector<float> w = target.weight.to_vector<float>();
  const std::vector<float> w_src = source.weight.to_vector<float>();
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(w[i], bf16_to_float(bf16_from_float(w_src[i])));
  // Other dtype mismatches stay refused: only bf16 widens.
  EXPECT_THROW(source.load_state_dict({{"weight", Tensor::zeros({2, 3}, DType::I32)},
                                       {"bias", Tensor::zeros({2})}},
                                      true),
               InputError);
}

// Several tensors cast in one op: each copy is its own cast's bits; the copies' gradients start as
// zeros in one buffer; the backward adds into existing f32 gradients and assigns fresh ones, the
// per-tensor casts' gradients bit for bit.
TEST_F(CastOp, CastToBf16OfManyIsEachCastAndEachGradient) {
  nn::Initializer init(9);
  std::vector<Tensor> xs = {Tensor::empty({3, 2}), Tensor::empty({130}), Tensor::empty({1})};
  for (Tensor& x : xs) init.uniform(x, -3, 3), x.set_requires_grad(true);
  Tensor(xs[1]).grad_or_zeros().fill_(0.25);  // one gradient already there: added into
  std::vector<Tensor> twins;
  for (const Tensor& x : xs) twins.push_back(x.clone().set_requires_grad(true));
  Tensor(twins[1]).grad_or_zeros().fill_(0.25);

  const std::vector<Tensor> ys = ops::cast_to_bf16(xs);
  ASSERT_EQ(ys.size(), xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    ASSERT_EQ(ys[i].dtype(), DType::BF16);
    ASSERT_EQ(ys[i].shape(), xs[i].shape());
    EXPECT_TRUE(kernel_testing::same_bits(ys[i].to_vector<bf16>(),
                                          ops::cast(twins[i], DType::BF16).to_vector<bf16>()));
    EXPECT_EQ((static_cast<const char*>(ys[i].raw()) - static_cast<const char*>(ys[0].raw())) % 256,
              0) << "copy " << i << " is not 256 bytes aligned within the buffer";
    for (bf16 g : ys[i].grad().to_vector<bf16>()) EXPECT_EQ(g.bits, 0) << "copy " << i;
  }
  clear_tape();
  // The same loss through both: weights whose products round differently in bf16.
  auto loss_of = [](const std::vector<Tensor>& copies) {
    Tensor total;
    for (size_t i = 0; i < copies.size(); ++i) {
      const Tensor wide = ops::cast(copies[i], DType::F32);
      std::vector<float> w(size_t(wide.numel()));
      for (size_t j = 0; j < w.size(); ++j) w[j] = 1.0f + 0x1p-9f * float(j % 7) + float(i);
      const Tensor term = testing::weighted_sum(ops::reshape(wide, {wide.numel()}),
                                                Tensor::from_vector<float>({wide.numel()}, w));
      total = total.defined() ? ops::add(total, term) : term;
    }
    return total;
  };
  backward(loss_of(ops::cast_to_bf16(xs)));
  std::vector<Tensor> twin_copies;
  for (const Tensor& t : twins) twin_copies.push_back(ops::cast(t, DType::BF16));
  backward(loss_of(twin_copies));
  for (size_t i = 0; i < xs.size(); ++i)
    EXPECT_TRUE(kernel_testing::same_bits(xs[i].grad().to_vector<float>(),
                                          twins[i].grad().to_vector<float>()))
        << "gradient " << i;
  EXPECT_TRUE(ops::cast_to_bf16({}).empty());
  EXPECT_THROW(ops::cast_to_bf16({xs[0], Tensor::zeros({2}, DType::F64)}), Error);
}

// A model's weight copies (nn::Bf16WeightCopies): the layers take them instead of casting their
// own (one cast node on the tape, not one per weight), with the same logits and the same f32
// gradients bit for bit; biases stay f32. Outside the scope the layers cast their own again.
struct ConvThenLinear : nn::Module {
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::Linear> fc;
  explicit ConvThenLinear(nn::Initializer& init) {
    conv = register_module("conv", std::make_shared<nn::Conv2d>(2, 3, 3, 1, 1, true, init));
    fc = register_module("fc", std::make_shared<nn::Linear>(3 * 4 * 4, 5, init));
  }
  Tensor forward(const Tensor& x, bool copies_in_one_op) {
    std::unique_ptr<nn::Bf16WeightCopies> copies;
    if (copies_in_one_op) copies = std::make_unique<nn::Bf16WeightCopies>(*this, x);
    const Tensor h = ops::flatten(ops::relu(conv->forward(x)));
    return ops::cast(fc->forward(h), DType::F32);
  }
};

TEST_F(CastOp, ModelWeightCopiesAreTheLayersOwnCastsInOneOp) {
  nn::Initializer init(4);
  Tensor x = Tensor::empty({2, 2, 4, 4});
  init.uniform(x, -2, 2);
  x = x.to(DType::BF16);
  std::vector<float> logits[2], grads[2][4];
  for (bool one_op : {false, true}) {
    nn::Initializer model_init(7);  // the same weights both times
    ConvThenLinear model(model_init);
    const Tensor out = model.forward(x, one_op);
    EXPECT_EQ(tape_size(), one_op ? 6u : 7u) << "cast(s), conv, relu, flatten, linear, cast";
    logits[one_op] = out.to_vector<float>();
    const Tensor weights = Tensor::full({2, 5}, 0.5, DType::F32, Device::cpu());
    backward(testing::weighted_sum(out, weights));
    const std::vector<Tensor> params = model.parameters();
    ASSERT_EQ(params.size(), 4u);
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(params[i].dtype(), DType::F32);
      grads[one_op][i] = params[i].grad().to_vector<float>();
    }
  }
  EXPECT_TRUE(kernel_testing::same_bits(logits[1], logits[0]));
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE(kernel_testing::same_bits(grads[1][i], grads[0][i])) << "parameter " << i;
  EXPECT_EQ(nn::Bf16WeightCopies::find(Tensor::empty({2})), nullptr) << "no scope is live";
}

}  // namespace
}  // namespace kd
