// Tests for kernels/linear.h and kernels/pool.h: hand-computed small cases, the adjoint identity
// for the linear backward, cpu:: against ref:: on awkward sizes (float tolerance 1e-4 and double
// 1e-10, relative to the largest magnitude), accumulate semantics, max-pool ties and NaN, and
// bitwise independence from the OpenMP thread count.
#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "base/check.h"
#include "kernels/linear.h"
#include "base/philox.h"
#include "tests/kernel_testing.h"
#include "kernels/pool.h"

namespace {

using kd::LinearGeom;
using kd::PoolGeom;

using kd::kernel_testing::EngineThreading;

template <class T>
std::vector<T> random_vector(size_t n, uint64_t seed) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<T>(2.0 * kd::philox_uniform_double(seed, kd::kStreamTest, i) - 1.0);
  return v;
}

template <class T>
double tolerance() {
  return sizeof(T) == sizeof(float) ? 1e-4 : 1e-10;
}

template <class T>
const char* type_name() {
  return sizeof(T) == sizeof(float) ? " float" : " double";
}

// max |got - want| <= tol * max(1, max |want|)
template <class T, class U>
void expect_close(const std::vector<T>& got, const std::vector<U>& want, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1.0, worst = 0.0;
  size_t worst_i = 0;
  for (U v : want) scale = std::max(scale, std::fabs(double(v)));
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - double(want[i]));
    if (err > worst) worst = err, worst_i = i;
  }
  EXPECT_LE(worst, tol * scale) << what << ": element " << worst_i;
}

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// ---------------------------------------------------------------- linear

TEST(LinearKernel, HandComputedCase) {
  EngineThreading threading;
  const LinearGeom g{2, 3, 2};
  const std::vector<double> x = {1, 2, 3, -1, 0, 2}, w = {1, 0, -1, 2, 1, 0}, b = {0.5, -1};
  const std::vector<double> y_want = {-1.5, 3, -2.5, -3};  // rows: x_b . w_o + b_o
  const std::vector<double> dy = {1, 2, -1, 1};
  const std::vector<double> dx_want = {5, 2, -1, 1, 1, 1};  // dy w
  const std::vector<double> dw_want = {2, 2, 1, 1, 4, 8};   // dy^T x
  const std::vector<double> db_want = {0, 3};               // column sums of dy
  for (int impl = 0; impl < 2; ++impl) {
    std::vector<double> y(4), dx(6, 0.0), dw(6, 0.0), db(2, 0.0);
    auto fwd = impl ? kd::cpu::linear_forward<double> : kd::ref::linear_forward<double>;
    auto bwd_d =
        impl ? kd::cpu::linear_backward_data<double> : kd::ref::linear_backward_data<double>;
    auto bwd_w =
        impl ? kd::cpu::linear_backward_weight<double> : kd::ref::linear_backward_weight<double>;
    fwd(g, x.data(), w.data(), b.data(), y.data());
    bwd_d(g, dy.data(), w.data(), dx.data());
    bwd_w(g, x.data(), dy.data(), dw.data(), db.data());
    EXPECT_EQ(y, y_want) << (impl ? "cpu" : "ref");
    EXPECT_EQ(dx, dx_want) << (impl ? "cpu" : "ref");
    EXPECT_EQ(dw, dw_want) << (impl ? "cpu" : "ref");
    EXPECT_EQ(db, db_want) << (impl ? "cpu" : "ref");
  }
}

// <x w^T, dy> = <x, dx> = <w, dw> for ref:: from zero-initialised gradients.
TEST(LinearKernel, RefBackwardSatisfiesAdjointIdentity) {
  for (const LinearGeom& g : {LinearGeom{1, 1, 1}, LinearGeom{5, 13, 11}, LinearGeom{7, 30, 3}}) {
    const auto x = random_vector<double>(size_t(g.batch) * g.in, 1),
               w = random_vector<double>(size_t(g.out) * g.in, 2),
               dy = random_vector<double>(size_t(g.batch) * g.out, 3);
    std::vector<double> y(dy.size()), dx(x.size(), 0.0), dw(w.size(), 0.0);
    kd::ref::linear_forward<double>(g, x.data(), w.data(), nullptr, y.data());
    kd::ref::linear_backward_data<double>(g, dy.data(), w.data(), dx.data());
    kd::ref::linear_backward_weight<double>(g, x.data(), dy.data(), dw.data(), nullptr);
    double lhs = 0, via_x = 0, via_w = 0;
    for (size_t i = 0; i < y.size(); ++i) lhs += y[i] * dy[i];
    for (size_t i = 0; i < x.size(); ++i) via_x += x[i] * dx[i];
    for (size_t i = 0; i < w.size(); ++i) via_w += w[i] * dw[i];
    EXPECT_NEAR(via_x, lhs, 1e-12 * (1 + std::fabs(lhs)));
    EXPECT_NEAR(via_w, lhs, 1e-12 * (1 + std::fabs(lhs)));
  }
}

template <class T>
void check_linear_cpu_vs_ref(const LinearGeom& g, bool with_bias) {
  const size_t nx = size_t(g.batch) * g.in, nw = size_t(g.out) * g.in, ny = size_t(g.batch) * g.out;
  const auto x = random_vector<T>(nx, 11), w = random_vector<T>(nw, 12),
             b = random_vector<T>(g.out, 13), dy = random_vector<T>(ny, 14);
  const T* bias = with_bias ? b.data() : nullptr;
  std::vector<T> y_ref(ny, T(9)), y_cpu(ny, T(9));  // forward overwrites
  kd::ref::linear_forward(g, x.data(), w.data(), bias, y_ref.data());
  kd::cpu::linear_forward(g, x.data(), w.data(), bias, y_cpu.data());
  // Backward accumulates onto prefilled gradients.
  auto dx_ref = random_vector<T>(nx, 15), dw_ref = random_vector<T>(nw, 16),
       db_ref = random_vector<T>(g.out, 17);
  auto dx_cpu = dx_ref, dw_cpu = dw_ref, db_cpu = db_ref;
  const auto dx0 = dx_ref;
  kd::ref::linear_backward_data(g, dy.data(), w.data(), dx_ref.data());
  kd::cpu::linear_backward_data(g, dy.data(), w.data(), dx_cpu.data());
  kd::ref::linear_backward_weight(g, x.data(), dy.data(), dw_ref.data(),
                                  with_bias ? db_ref.data() : nullptr);
  kd::cpu::linear_backward_weight(g, x.data(), dy.data(), dw_cpu.data(),
                                  with_bias ? db_cpu.data() : nullptr);
  const std::string what = "batch " + std::to_string(g.batch) + " in " + std::to_string(g.in) +
                           " out " + std::to_string(g.out) + (with_bias ? " bias" : "") +
                           type_name<T>();
  expect_close(y_cpu, y_ref, tolerance<T>(), "y " + what);
  expect_close(dx_cpu, dx_ref, tolerance<T>(), "dx " + what);
  expect_close(dw_cpu, dw_ref, tolerance<T>(), "dw " + what);
  expect_close(db_cpu, db_ref, tolerance<T>(), "dbias " + what);
  // The prefill survives: dx - dx0 equals the product computed from zero.
  std::vector<T> dx_zero(nx, T(0));
  kd::ref::linear_backward_data(g, dy.data(), w.data(), dx_zero.data());
  std::vector<double> want(nx);
  for (size_t i = 0; i < nx; ++i) want[i] = double(dx0[i]) + double(dx_zero[i]);
  expect_close(dx_cpu, want, tolerance<T>(), "dx accumulate " + what);
}

TEST(LinearKernel, CpuMatchesRefOnAwkwardSizesAndAccumulates) {
  EngineThreading threading;
  for (const LinearGeom& g :
       {LinearGeom{1, 1, 1}, LinearGeom{1, 7, 3}, LinearGeom{5, 13, 11}, LinearGeom{128, 400, 120},
        LinearGeom{33, 64, 10}, LinearGeom{3, 0, 4}, LinearGeom{0, 5, 5}})
    for (bool bias : {false, true}) {
      check_linear_cpu_vs_ref<float>(g, bias);
      check_linear_cpu_vs_ref<double>(g, bias);
    }
}

// ---------------------------------------------------------------- pooling

PoolGeom pool(int n, int c, int h, int w, int kh, int kw, int stride, int pad) {
  PoolGeom g;
  g.n = n, g.c = c, g.h = h, g.w = w, g.kh = kh, g.kw = kw, g.stride = stride, g.pad = pad;
  return g;
}

std::string describe(const PoolGeom& g) {
  return "n" + std::to_string(g.n) + " c" + std::to_string(g.c) + " " + std::to_string(g.h) + "x" +
         std::to_string(g.w) + " window " + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
         " stride" + std::to_string(g.stride) + " pad" + std::to_string(g.pad);
}

// A row's output must not depend on the rows beside it: any subset of a batch, in any order and
// of any size, gives the same bits per row (OpenBLAS's AVX2 kernels give a row other bits at
// another position or row count; distillation's cached teacher logits need the invariance).
template <class T>
void expect_batch_invariant_forward() {
  for (auto [in, out] : {std::pair<int, int>{64, 10}, {83, 10}, {400, 120}, {512, 100}}) {
    const int batch = 130;
    const auto x = random_vector<T>(size_t(batch) * in, 11), w = random_vector<T>(size_t(out) * in, 12);
    const auto bias = random_vector<T>(size_t(out), 13);
    std::vector<T> y(size_t(batch) * out);
    kd::cpu::linear_forward<T>({batch, in, out}, x.data(), w.data(), bias.data(), y.data());
    for (int rows : {1, 7, 31, 32, 33, 64, 100}) {
      std::vector<T> xs(size_t(rows) * in), ys(size_t(rows) * out);
      // rows taken backwards from the end, so each sits at another position than in the batch
      for (int r = 0; r < rows; ++r)
        std::copy_n(x.begin() + int64_t(batch - 1 - r) * in, in, xs.begin() + int64_t(r) * in);
      kd::cpu::linear_forward<T>({rows, in, out}, xs.data(), w.data(), bias.data(), ys.data());
      int differ = 0;
      for (int r = 0; r < rows; ++r)
        differ += std::memcmp(ys.data() + int64_t(r) * out, y.data() + int64_t(batch - 1 - r) * out,
                              sizeof(T) * size_t(out)) != 0;
      EXPECT_EQ(differ, 0) << rows << " of " << batch << " rows, " << in << " -> " << out
                           << type_name<T>();
    }
  }
}

TEST(LinearKernel, CpuForwardIsBatchInvariant) {
  EngineThreading threading;
  expect_batch_invariant_forward<float>();
  expect_batch_invariant_forward<double>();
}

TEST(PoolKernel, AvgPoolHandComputedCountsPadding) {
  std::vector<double> x(16);
  for (int i = 0; i < 16; ++i) x[i] = i + 1;  // 4x4: 1..16
  const PoolGeom plain = pool(1, 1, 4, 4, 2, 2, 2, 0), padded = pool(1, 1, 4, 4, 3, 3, 2, 1);
  const std::vector<double> plain_want = {3.5, 5.5, 11.5, 13.5};
  const std::vector<double> padded_want = {14.0 / 9, 30.0 / 9, 57.0 / 9, 99.0 / 9};  // divide by 9
  for (int impl = 0; impl < 2; ++impl) {
    auto fwd = impl ? kd::cpu::avg_pool2d_forward<double> : kd::ref::avg_pool2d_forward<double>;
    std::vector<double> y(4);
    fwd(plain, x.data(), y.data());
    expect_close(y, plain_want, 1e-15, impl ? "cpu 2x2" : "ref 2x2");
    fwd(padded, x.data(), y.data());
    expect_close(y, padded_want, 1e-15, impl ? "cpu 3x3 pad" : "ref 3x3 pad");
    // Backward: each output spreads dy/9 over its window, padding included in the divisor.
    auto bwd = impl ? kd::cpu::avg_pool2d_backward<double> : kd::ref::avg_pool2d_backward<double>;
    std::vector<double> dx(16, 1.0);
    const std::vector<double> dy = {9, 18, 27, 36};
    bwd(padded, dy.data(), dx.data());
    // x[1][1] lies in all four windows: 1 + (9+18+27+36)/9; x[0][0] only in the first: 1 + 1.
    EXPECT_DOUBLE_EQ(dx[1 * 4 + 1], 11.0);
    EXPECT_DOUBLE_EQ(dx[0], 2.0);
    EXPECT_DOUBLE_EQ(dx[3 * 4 + 3], 1.0 + 4.0);
  }
}

TEST(PoolKernel, MaxPoolFirstMaximumWinsAndPaddingIsIgnored) {
  const std::vector<float> x = {1, 3, 3, 0,  //
                                3, 2, 0, 0,  //
                                5, 5, 1, 1,  //
                                5, 5, 1, 1};
  std::vector<float> negative(16);
  for (int i = 0; i < 16; ++i) negative[i] = -float(i + 1);
  for (int impl = 0; impl < 2; ++impl) {
    auto fwd = impl ? kd::cpu::max_pool2d_forward<float> : kd::ref::max_pool2d_forward<float>;
    std::vector<float> y(4);
    std::vector<int32_t> arg(4);
    fwd(pool(1, 1, 4, 4, 2, 2, 2, 0), x.data(), y.data(), arg.data());
    EXPECT_EQ(y, (std::vector<float>{3, 3, 5, 1})) << impl;
    EXPECT_EQ(arg, (std::vector<int32_t>{1, 2, 8, 10})) << impl;  // first in (ih, iw) order
    // All inputs negative: a counted zero pad would win; it must not.
    fwd(pool(1, 1, 4, 4, 3, 3, 2, 1), negative.data(), y.data(), arg.data());
    EXPECT_EQ(y, (std::vector<float>{-1, -2, -5, -6})) << impl;
    EXPECT_EQ(arg, (std::vector<int32_t>{0, 1, 4, 5})) << impl;
    // A NaN wins its window (propagates), the first NaN if several.
    auto with_nan = x;
    with_nan[5] = std::numeric_limits<float>::quiet_NaN();
    with_nan[4] = std::numeric_limits<float>::quiet_NaN();
    fwd(pool(1, 1, 4, 4, 2, 2, 2, 0), with_nan.data(), y.data(), arg.data());
    EXPECT_TRUE(std::isnan(y[0])) << impl;
    EXPECT_EQ(arg[0], 4) << impl;
    EXPECT_EQ(y[1], 3.0f) << impl;
  }
}

TEST(PoolKernel, MaxPoolBackwardAccumulatesAtArgmax) {
  // Overlapping 3x3 windows, stride 1: the single large element wins all four windows.
  std::vector<double> x(16, 0.0);
  x[1 * 4 + 2] = 10;
  const PoolGeom g = pool(1, 1, 4, 4, 3, 3, 1, 0);
  for (int impl = 0; impl < 2; ++impl) {
    std::vector<double> y(4), dx(16, 0.5);
    std::vector<int32_t> arg(4);
    (impl ? kd::cpu::max_pool2d_forward<double>
          : kd::ref::max_pool2d_forward<double>)(g, x.data(), y.data(), arg.data());
    const std::vector<double> dy = {1, 2, 3, 4};
    (impl ? kd::cpu::max_pool2d_backward<double>
          : kd::ref::max_pool2d_backward<double>)(g, dy.data(), arg.data(), dx.data());
    EXPECT_DOUBLE_EQ(dx[1 * 4 + 2], 0.5 + 10) << impl;
    double others = 0;
    for (int i = 0; i < 16; ++i)
      if (i != 6) others += dx[i];
    EXPECT_DOUBLE_EQ(others, 15 * 0.5) << impl;
  }
}

// Awkward geometries: batch 1, odd channels, h != w, kh != kw, stride 1/2/3, pad 0/1, LeNet's 2x2.
const std::vector<PoolGeom> kPoolGeoms = {
    pool(1, 3, 7, 5, 2, 2, 2, 0), pool(2, 5, 9, 6, 3, 3, 2, 1),   pool(1, 1, 5, 8, 3, 2, 1, 1),
    pool(3, 2, 6, 6, 2, 3, 3, 1), pool(4, 6, 28, 28, 2, 2, 2, 0), pool(2, 7, 3, 3, 3, 3, 1, 1),
};

// Inputs quantised to {-1, 0, 1} so that max-pool windows hold ties.
template <class T>
std::vector<T> tied_vector(size_t n, uint64_t seed) {
  auto v = random_vector<T>(n, seed);
  for (T& e : v) e = std::round(e);
  return v;
}

template <class T>
void check_pool_cpu_vs_ref(const PoolGeom& g) {
  const size_t nx = size_t(g.n) * g.c * g.h * g.w, ny = size_t(g.n) * g.c * g.p() * g.q();
  const std::string what = describe(g) + type_name<T>();
  const auto x = random_vector<T>(nx, 21), dy = random_vector<T>(ny, 22),
             dx0 = random_vector<T>(nx, 23);
  std::vector<T> y_ref(ny), y_cpu(ny);
  kd::ref::avg_pool2d_forward(g, x.data(), y_ref.data());
  kd::cpu::avg_pool2d_forward(g, x.data(), y_cpu.data());
  expect_close(y_cpu, y_ref, tolerance<T>(), "avg forward " + what);
  auto dx_ref = dx0, dx_cpu = dx0;
  kd::ref::avg_pool2d_backward(g, dy.data(), dx_ref.data());
  kd::cpu::avg_pool2d_backward(g, dy.data(), dx_cpu.data());
  expect_close(dx_cpu, dx_ref, tolerance<T>(), "avg backward " + what);
  for (const auto& input : {x, tied_vector<T>(nx, 24)}) {
    std::vector<int32_t> arg_ref(ny), arg_cpu(ny);
    kd::ref::max_pool2d_forward(g, input.data(), y_ref.data(), arg_ref.data());
    kd::cpu::max_pool2d_forward(g, input.data(), y_cpu.data(), arg_cpu.data());
    EXPECT_TRUE(bitwise_equal(y_cpu, y_ref)) << "max forward " << what;
    EXPECT_EQ(arg_cpu, arg_ref) << "argmax " << what;
    dx_ref = dx0, dx_cpu = dx0;
    kd::ref::max_pool2d_backward(g, dy.data(), arg_ref.data(), dx_ref.data());
    kd::cpu::max_pool2d_backward(g, dy.data(), arg_cpu.data(), dx_cpu.data());
    expect_close(dx_cpu, dx_ref, tolerance<T>(), "max backward " + what);
  }
}

TEST(PoolKernel, CpuMatchesRefOnAwkwardGeometries) {
  for (const PoolGeom& g : kPoolGeoms) {
    check_pool_cpu_vs_ref<float>(g);
    check_pool_cpu_vs_ref<double>(g);
  }
}

TEST(PoolKernel, GlobalAvgPoolHandComputedAndCpuMatchesRef) {
  const std::vector<double> x = {1, 2, 3, 4, 5, -5, 0, 5, 10, 0};  // n=1, c=2, hw=5
  for (int impl = 0; impl < 2; ++impl) {
    std::vector<double> y(2), dx(10, 1.0);
    (impl ? kd::cpu::global_avg_pool_forward<double>
          : kd::ref::global_avg_pool_forward<double>)(1, 2, 5, x.data(), y.data());
    EXPECT_EQ(y, (std::vector<double>{3, 2})) << impl;
    const std::vector<double> dy = {5, -10};
    (impl ? kd::cpu::global_avg_pool_backward<double>
          : kd::ref::global_avg_pool_backward<double>)(1, 2, 5, dy.data(), dx.data());
    EXPECT_EQ(dx, (std::vector<double>{2, 2, 2, 2, 2, -1, -1, -1, -1, -1})) << impl;
  }
  for (int hw : {1, 3, 64, 49}) {
    const int n = 3, c = 5;
    const auto x2 = random_vector<float>(size_t(n) * c * hw, 31),
               dy2 = random_vector<float>(n * c, 32);
    std::vector<float> y_ref(n * c), y_cpu(n * c);
    kd::ref::global_avg_pool_forward(n, c, hw, x2.data(), y_ref.data());
    kd::cpu::global_avg_pool_forward(n, c, hw, x2.data(), y_cpu.data());
    expect_close(y_cpu, y_ref, 1e-6, "global forward hw " + std::to_string(hw));
    auto dx_ref = random_vector<float>(x2.size(), 33), dx_cpu = dx_ref;
    kd::ref::global_avg_pool_backward(n, c, hw, dy2.data(), dx_ref.data());
    kd::cpu::global_avg_pool_backward(n, c, hw, dy2.data(), dx_cpu.data());
    expect_close(dx_cpu, dx_ref, 1e-6, "global backward hw " + std::to_string(hw));
  }
}

TEST(PoolKernel, CpuIsBitwiseThreadCountIndependent) {
  EngineThreading threading;
  const PoolGeom g = pool(3, 7, 9, 6, 3, 3, 2, 1);
  const size_t nx = size_t(g.n) * g.c * g.h * g.w, ny = size_t(g.n) * g.c * g.p() * g.q();
  const auto x = random_vector<float>(nx, 41), dy = random_vector<float>(ny, 42);
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    std::vector<float> y(ny), ym(ny), dx = random_vector<float>(nx, 43), yg(g.n * g.c);
    std::vector<int32_t> arg(ny);
    kd::cpu::avg_pool2d_forward(g, x.data(), y.data());
    kd::cpu::avg_pool2d_backward(g, dy.data(), dx.data());
    kd::cpu::max_pool2d_forward(g, x.data(), ym.data(), arg.data());
    kd::cpu::max_pool2d_backward(g, dy.data(), arg.data(), dx.data());
    kd::cpu::global_avg_pool_forward(g.n, g.c, g.h * g.w, x.data(), yg.data());
    kd::cpu::global_avg_pool_backward(g.n, g.c, g.h * g.w, yg.data(), dx.data());
    std::vector<float> all = y;
    for (const auto* part : {&ym, &dx, &yg}) all.insert(all.end(), part->begin(), part->end());
    results.push_back(all);
  }
  EXPECT_TRUE(bitwise_equal(results[0], results[1]));
  EXPECT_TRUE(bitwise_equal(results[0], results[2]));
}

TEST(PoolKernel, RejectsBadGeometry) {
  std::vector<float> buf(256, 0.f);
  std::vector<int32_t> arg(256);
  const PoolGeom wide_pad = pool(1, 1, 4, 4, 2, 2, 2, 2), too_big = pool(1, 1, 2, 2, 5, 5, 1, 0);
  for (const PoolGeom& g : {wide_pad, too_big}) {
    EXPECT_THROW(kd::cpu::max_pool2d_forward(g, buf.data(), buf.data(), arg.data()), kd::Error);
    EXPECT_THROW(kd::ref::max_pool2d_forward(g, buf.data(), buf.data(), arg.data()), kd::Error);
    EXPECT_THROW(kd::cpu::avg_pool2d_forward(g, buf.data(), buf.data()), kd::Error);
  }
  EXPECT_THROW(kd::cpu::global_avg_pool_forward(1, 1, 0, buf.data(), buf.data()), kd::Error);
  EXPECT_THROW(kd::cpu::linear_forward(LinearGeom{-1, 2, 2}, buf.data(), buf.data(),
                                       static_cast<float*>(nullptr), buf.data()),
               kd::Error);
}

}  // namespace
