// Tests for kernels/elementwise.h and kernels/optimizer.h: cpu:: against ref:: (bitwise: these
// are elementwise, so the fast path must not change a single bit), relu's gradient by central
// differences, and SGD/Adam trajectories against hand-computed numbers and the PyTorch formulas
// re-evaluated here in double.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "base/check.h"
#include "kernels/elementwise.h"
#include "kernels/optimizer.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using namespace kernel_testing;

// Lengths: empty, single, odd, and one above the parallel threshold.
const int64_t kLengths[] = {0, 1, 7, 100003};

template <class T>
void check_elementwise_bitwise() {
  for (int64_t n : kLengths) {
    SCOPED_TRACE("n=" + std::to_string(n));
    auto a = uniform<T>(n, 1, -1, 1), b = uniform<T>(n, 2, -1, 1);
    auto dx0 = uniform<T>(n, 3, -1, 1);
    std::vector<T> r(n), c(n);
    ref::relu_forward<T>(n, a.data(), r.data());
    cpu::relu_forward<T>(n, a.data(), c.data());
    EXPECT_TRUE(same_bits(r, c)) << "relu_forward";
    std::vector<T> rdx = dx0, cdx = dx0;
    ref::relu_backward<T>(n, r.data(), b.data(), rdx.data(), true);
    cpu::relu_backward<T>(n, r.data(), b.data(), cdx.data(), true);
    EXPECT_TRUE(same_bits(rdx, cdx)) << "relu_backward";
    std::vector<T> rset(n, T(NAN)), cset(n, T(NAN));  // assigning never reads dx
    ref::relu_backward<T>(n, r.data(), b.data(), rset.data(), false);
    cpu::relu_backward<T>(n, r.data(), b.data(), cset.data(), false);
    EXPECT_TRUE(same_bits(rset, cset)) << "relu_backward assign";
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(rset[i], r[i] > T(0) ? b[i] : T(0)) << "relu_backward assign, i=" << i;
    ref::add_forward<T>(n, a.data(), b.data(), r.data());
    cpu::add_forward<T>(n, a.data(), b.data(), c.data());
    EXPECT_TRUE(same_bits(r, c)) << "add_forward";
    ref::accumulate<T>(n, T(0.3), a.data(), r.data());
    cpu::accumulate<T>(n, T(0.3), a.data(), c.data());
    EXPECT_TRUE(same_bits(r, c)) << "accumulate";
    ref::scale<T>(n, T(-1.7), r.data());
    cpu::scale<T>(n, T(-1.7), c.data());
    EXPECT_TRUE(same_bits(r, c)) << "scale";
    ref::fill<T>(n, T(2.5), r.data());
    cpu::fill<T>(n, T(2.5), c.data());
    EXPECT_TRUE(same_bits(r, c)) << "fill";
  }
}

TEST(ElementwiseKernel, CpuMatchesRefBitwise) {
  check_elementwise_bitwise<float>();
  check_elementwise_bitwise<double>();
}

TEST(ElementwiseKernel, HandValuesAndAccumulation) {
  std::vector<float> x = {-1.5f, 0.0f, 2.0f, NAN}, y(4);
  cpu::relu_forward<float>(4, x.data(), y.data());
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 2.0f);
  EXPECT_TRUE(std::isnan(y[3])) << "relu must propagate NaN";
  // relu_backward accumulates: dx starts at 10, only y > 0 passes dy through.
  std::vector<float> dy = {1, 2, 3, 4}, dx(4, 10.0f);
  cpu::relu_backward<float>(3, y.data(), dy.data(), dx.data(), true);
  EXPECT_EQ(dx[0], 10.0f);
  EXPECT_EQ(dx[1], 10.0f);
  EXPECT_EQ(dx[2], 13.0f);
  std::vector<double> a = {1, 2, 3}, b = {10, 20, 30}, s(3);
  cpu::add_forward<double>(3, a.data(), b.data(), s.data());
  EXPECT_EQ(s[2], 33.0);
  cpu::accumulate<double>(3, 0.5, a.data(), s.data());  // s += 0.5 a
  EXPECT_EQ(s[1], 23.0);
  cpu::scale<double>(3, 2.0, s.data());
  EXPECT_EQ(s[0], 23.0);
  cpu::fill<double>(2, -1.0, s.data());
  EXPECT_EQ(s[1], -1.0);
  EXPECT_EQ(s[2], 69.0);  // untouched past n
}

TEST(ElementwiseKernel, ReluGradientMatchesCentralDifferences) {
  const int n = 41;
  auto x = uniform<double>(n, 4, -1, 1), dy = uniform<double>(n, 5, -1, 1);
  for (double& v : x)
    if (std::fabs(v) < 0.1) v += v < 0 ? -0.1 : 0.1;  // stay away from the kink
  std::vector<double> y(n), dx(n, 0.0);
  cpu::relu_forward<double>(n, x.data(), y.data());
  cpu::relu_backward<double>(n, y.data(), dy.data(), dx.data(), true);
  const double h = 1e-6;
  double num2 = 0, err2 = 0;
  for (int i = 0; i < n; ++i) {
    auto f = [&](double xi) {
      std::vector<double> xp = x, yp(n);
      xp[i] = xi;
      cpu::relu_forward<double>(n, xp.data(), yp.data());
      double s = 0;
      for (int j = 0; j < n; ++j) s += dy[j] * yp[j];
      return s;
    };
    double numeric = (f(x[i] + h) - f(x[i] - h)) / (2 * h);
    num2 += numeric * numeric;
    err2 += (numeric - dx[i]) * (numeric - dx[i]);
  }
  EXPECT_LT(std::sqrt(err2 / num2), 1e-6);
}

// --- optimizers -----------------------------------------------------------------------------

TEST(OptimizerKernel, SgdHandComputedSteps) {
  // p0 = 1, grads 0.5, -0.25, 0.125; lr 0.1, momentum 0.9, weight decay 1e-4 (worked by hand).
  const double grads[] = {0.5, -0.25, 0.125};
  const double plain[] = {0.94999, 0.9299715001, 0.899445550474999};
  const double nesterov[] = {0.904981, 0.911955705361, 0.8719737578564981};
  for (bool nest : {false, true}) {
    SgdParams h;
    h.lr = 0.1, h.momentum = 0.9, h.weight_decay = 1e-4, h.nesterov = nest;
    double p = 1, buf = 0;
    float pf = 1, buff = 0;
    for (int t = 0; t < 3; ++t) {
      double g = grads[t];
      float gf = float(grads[t]);
      cpu::sgd_update<double>(1, h, t == 0, &p, &g, &buf);
      cpu::sgd_update<float>(1, h, t == 0, &pf, &gf, &buff);
      const double want = nest ? nesterov[t] : plain[t];
      EXPECT_NEAR(p, want, 1e-14) << "nesterov=" << nest << " step " << t;
      EXPECT_NEAR(pf, want, 1e-6) << "nesterov=" << nest << " step " << t;
    }
  }
}

TEST(OptimizerKernel, SgdWithoutMomentumIgnoresBuffer) {
  SgdParams h;
  h.lr = 0.5, h.weight_decay = 0.1;
  double p = 2, g = 1;
  cpu::sgd_update<double>(1, h, false, &p, &g, nullptr);  // buffer never touched
  EXPECT_DOUBLE_EQ(p, 2 - 0.5 * (1 + 0.1 * 2));
}

// lr_device (host memory for the CPU's kernels) replaces lr: the same bits as lr itself.
TEST(OptimizerKernel, SgdReadsTheLearningRateFromLrDeviceWhenSet) {
  for (bool nesterov : {false, true}) {
    SgdParams by_value;
    by_value.lr = 0.037, by_value.momentum = 0.9, by_value.weight_decay = 1e-3;
    by_value.nesterov = nesterov;
    SgdParams by_pointer = by_value;
    const double lr = by_value.lr;
    by_pointer.lr = 5.0;  // ignored
    by_pointer.lr_device = &lr;
    std::vector<float> pa = {1.f, -2.f, 0.5f}, pb = pa, ba(3), bb(3), g = {0.3f, 0.1f, -0.7f};
    for (int t = 0; t < 3; ++t) {
      cpu::sgd_update<float>(3, by_value, t == 0, pa.data(), g.data(), ba.data());
      cpu::sgd_update<float>(3, by_pointer, t == 0, pb.data(), g.data(), bb.data());
    }
    EXPECT_EQ(pa, pb);
    std::vector<float> pr = {1.f, -2.f, 0.5f}, br(3);
    ref::sgd_update<float>(3, by_pointer, true, pr.data(), g.data(), br.data());
    std::vector<float> pv = {1.f, -2.f, 0.5f}, bv(3);
    ref::sgd_update<float>(3, by_value, true, pv.data(), g.data(), bv.data());
    EXPECT_EQ(pr, pv);
  }
}

// AdamParams' device scalars on the host backends: the step and the rate are read from the
// pointers (the step argument and lr ignored), once for a whole multi-tensor call.
TEST(OptimizerKernel, AdamReadsTheStepAndRateFromTheDeviceScalars) {
  AdamParams h;
  h.lr = 1e-2, h.weight_decay = 1e-4;
  int64_t step = 3;
  double lr = 0.02;
  AdamParams on_device = h;
  on_device.lr = 7.0, on_device.step_device = &step, on_device.lr_device = &lr;
  AdamParams plain = h;
  plain.lr = lr;
  const int n = 6;
  const auto g = uniform<float>(n, 3, -1, 1);
  auto p = uniform<float>(n, 4, -1, 1);
  for (bool multi : {false, true}) {
    std::vector<float> a = p, b = p, ma(n, 0.1f), va(n, 0.2f), mb = ma, vb = va;
    if (multi) {
      const int64_t sizes[2] = {2, n - 2};
      float* pa[2] = {a.data(), a.data() + 2};
      float* pm[2] = {ma.data(), ma.data() + 2};
      float* pv[2] = {va.data(), va.data() + 2};
      const float* pg[2] = {g.data(), g.data() + 2};
      cpu::adam_update_multi<float>(2, sizes, pa, pg, pm, pv, on_device, 1);
    } else {
      cpu::adam_update<float>(n, on_device, 1, a.data(), g.data(), ma.data(), va.data());
    }
    ref::adam_update<float>(n, plain, 3, b.data(), g.data(), mb.data(), vb.data());
    EXPECT_EQ(a, b) << (multi ? "multi" : "single");
    EXPECT_EQ(step, 3) << "the step is read, not advanced";
  }
}

TEST(OptimizerKernel, AdamMatchesFormulaInDouble) {
  AdamParams h;
  h.lr = 1e-2, h.beta1 = 0.9, h.beta2 = 0.999, h.eps = 1e-8, h.weight_decay = 1e-4;
  const int n = 5;
  auto p = uniform<double>(n, 6, -1, 1);
  std::vector<double> m(n, 0), v(n, 0), pw = p, mw(n, 0), vw(n, 0);
  std::vector<float> pf(p.begin(), p.end()), mf(n, 0), vf(n, 0);
  // Step 1 by hand: m_hat = g and v_hat = g^2, so every parameter moves by ~lr * sign(g).
  for (int64_t step = 1; step <= 3; ++step) {
    auto g = uniform<double>(n, 10 + step, -1, 1);
    std::vector<float> gf(g.begin(), g.end());
    cpu::adam_update<double>(n, h, step, p.data(), g.data(), m.data(), v.data());
    cpu::adam_update<float>(n, h, step, pf.data(), gf.data(), mf.data(), vf.data());
    for (int i = 0; i < n; ++i) {
      double gi = g[i] + h.weight_decay * pw[i];
      mw[i] = h.beta1 * mw[i] + (1 - h.beta1) * gi;
      vw[i] = h.beta2 * vw[i] + (1 - h.beta2) * gi * gi;
      double m_hat = mw[i] / (1 - std::pow(h.beta1, double(step)));
      double v_hat = vw[i] / (1 - std::pow(h.beta2, double(step)));
      double before = pw[i];
      pw[i] -= h.lr * m_hat / (std::sqrt(v_hat) + h.eps);
      if (step == 1) {
        EXPECT_NEAR(before - pw[i], h.lr * (gi > 0 ? 1 : -1), 1e-8);
      }
      EXPECT_NEAR(p[i], pw[i], 1e-14) << "step " << step << " i " << i;
      EXPECT_NEAR(pf[i], pw[i], 2e-6) << "step " << step << " i " << i;
      EXPECT_NEAR(m[i], mw[i], 1e-15);
      EXPECT_NEAR(v[i], vw[i], 1e-15);
    }
  }
}

TEST(OptimizerKernel, AdamRejectsStepZero) {
  AdamParams h;
  double p = 0, g = 0, m = 0, v = 0;
  EXPECT_THROW(cpu::adam_update<double>(1, h, 0, &p, &g, &m, &v), Error);
  EXPECT_THROW(ref::adam_update<double>(1, h, 0, &p, &g, &m, &v), Error);
}

TEST(OptimizerKernel, CpuMatchesRefBitwiseFloat) {
  const int64_t n = 70001;  // above the parallel threshold, odd
  auto p0 = uniform<float>(n, 20, -1, 1);
  for (int variant = 0; variant < 4; ++variant) {
    SgdParams h;
    h.lr = 0.05, h.weight_decay = 1e-4;
    h.momentum = variant == 0 ? 0.0 : 0.9;
    h.nesterov = variant == 2;
    if (variant == 3) h.weight_decay = 0;
    std::vector<float> pr = p0, pc = p0, br(n, 0), bc(n, 0);
    for (int t = 0; t < 3; ++t) {
      auto g = uniform<float>(n, 30 + t, -1, 1);
      ref::sgd_update<float>(n, h, t == 0, pr.data(), g.data(), br.data());
      cpu::sgd_update<float>(n, h, t == 0, pc.data(), g.data(), bc.data());
    }
    EXPECT_TRUE(same_bits(pr, pc)) << "sgd variant " << variant;
    EXPECT_TRUE(same_bits(br, bc)) << "sgd buffer variant " << variant;
  }
  AdamParams h;
  h.weight_decay = 1e-4;
  std::vector<float> pr = p0, pc = p0, mr(n, 0), mc(n, 0), vr(n, 0), vc(n, 0);
  for (int64_t step = 1; step <= 3; ++step) {
    auto g = uniform<float>(n, 40 + step, -1, 1);
    ref::adam_update<float>(n, h, step, pr.data(), g.data(), mr.data(), vr.data());
    cpu::adam_update<float>(n, h, step, pc.data(), g.data(), mc.data(), vc.data());
  }
  EXPECT_TRUE(same_bits(pr, pc)) << "adam param";
  EXPECT_TRUE(same_bits(mr, mc) && same_bits(vr, vc)) << "adam moments";
}

}  // namespace
}  // namespace kd
