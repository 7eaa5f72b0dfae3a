// Tests for kernels/loss.h: cpu:: against ref:: (float and double, backward accumulating into
// prefilled gradients), central-difference gradient checks in double for every backward
// (log-softmax, cross-entropy, each DistillKind w.r.t. the student, ensemble_reduce w.r.t. all
// members), hand cases and identities from the paper's code, and thread-count independence.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "base/check.h"
#include "kernels/loss.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using namespace kernel_testing;

struct Shape {
  int rows, cols;
};
// rows=1, cols=1, odd sizes, and one large enough for the parallel path.
const Shape kShapes[] = {{1, 1}, {1, 7}, {5, 1}, {37, 100}, {129, 100}};

const DistillKind kKinds[] = {DistillKind::kForwardCE,    DistillKind::kKL,
                              DistillKind::kReverseCE,    DistillKind::kSymmetricKL,
                              DistillKind::kBrier,        DistillKind::kHardCE};

std::string kind_name(DistillKind k) {
  const char* names[] = {"ForwardCE", "KL", "ReverseCE", "SymmetricKL", "Brier", "HardCE"};
  return names[int(k)];
}

// --- log-softmax and cross-entropy ------------------------------------------------------------

template <class T>
void check_softmax_family_against_ref(double tol) {
  uint64_t seed = 1;
  for (Shape s : kShapes) {
    SCOPED_TRACE(std::to_string(s.rows) + "x" + std::to_string(s.cols));
    const size_t len = size_t(s.rows) * s.cols;
    auto x = uniform<T>(len, seed++, -6, 6), dy = uniform<T>(len, seed++, -1, 1);
    auto dx0 = uniform<T>(len, seed++, -1, 1);
    auto labels = random_labels(s.rows, s.cols, seed++);
    std::vector<T> yr(len), yc(len), dxr = dx0, dxc = dx0;
    ref::log_softmax_forward<T>(s.rows, s.cols, x.data(), yr.data());
    cpu::log_softmax_forward<T>(s.rows, s.cols, x.data(), yc.data());
    expect_close(yc, yr, tol, "log_softmax y");
    ref::log_softmax_backward<T>(s.rows, s.cols, yr.data(), dy.data(), dxr.data());
    cpu::log_softmax_backward<T>(s.rows, s.cols, yr.data(), dy.data(), dxc.data());
    expect_close(dxc, dxr, tol, "log_softmax dx");
    T ce_r = kernel_testing::value_of<T>(ref::cross_entropy_forward<T>, s.rows, s.cols, x.data(), labels.data());
    T ce_c = kernel_testing::value_of<T>(cpu::cross_entropy_forward<T>, s.rows, s.cols, x.data(), labels.data());
    EXPECT_NEAR(ce_c, ce_r, tol * std::max(1.0, double(std::fabs(ce_r))));
    dxr = dxc = dx0;
    ref::cross_entropy_backward<T>(s.rows, s.cols, x.data(), labels.data(), kernel_testing::Scalar<T>{T(0.7)}.ptr(), dxr.data());
    cpu::cross_entropy_backward<T>(s.rows, s.cols, x.data(), labels.data(), kernel_testing::Scalar<T>{T(0.7)}.ptr(), dxc.data());
    expect_close(dxc, dxr, tol, "cross_entropy dx");
  }
}

TEST(LogSoftmaxKernel, CpuMatchesRefWithCrossEntropy) {
  check_softmax_family_against_ref<float>(1e-6);
  check_softmax_family_against_ref<double>(1e-13);
}

TEST(LogSoftmaxKernel, GradientMatchesCentralDifferences) {
  const int rows = 3, cols = 6;
  auto x = uniform<double>(rows * cols, 20, -3, 3), dy = uniform<double>(rows * cols, 21, -1, 1);
  auto f = [&](const std::vector<double>& v) {
    std::vector<double> y(v.size());
    cpu::log_softmax_forward<double>(rows, cols, v.data(), y.data());
    return dot(dy, y);
  };
  std::vector<double> y(x.size()), dx(x.size(), 0.0);
  cpu::log_softmax_forward<double>(rows, cols, x.data(), y.data());
  cpu::log_softmax_backward<double>(rows, cols, y.data(), dy.data(), dx.data());
  EXPECT_LT(gradient_error(f, x, dx), 1e-6);
}

TEST(LogSoftmaxKernel, ExtremeLogitsStayFinite) {
  const std::vector<float> x = {1000.0f, 0.0f, -1000.0f};
  std::vector<float> y(3);
  cpu::log_softmax_forward<float>(1, 3, x.data(), y.data());
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], -1000.0f);
  EXPECT_EQ(y[2], -2000.0f);
  const int32_t label = 2;
  EXPECT_FLOAT_EQ(kernel_testing::value_of<float>(cpu::cross_entropy_forward<float>, 1, 3, x.data(), &label), 2000.0f);
}

TEST(CrossEntropyKernel, UniformLogitsGiveLogC) {
  std::vector<double> x(3 * 10, 0.7);
  const std::vector<int32_t> labels = {0, 9, 4};
  EXPECT_NEAR(kernel_testing::value_of<double>(cpu::cross_entropy_forward<double>, 3, 10, x.data(), labels.data()), std::log(10.0),
              1e-15);
  EXPECT_NEAR(kernel_testing::value_of<double>(ref::cross_entropy_forward<double>, 3, 10, x.data(), labels.data()), std::log(10.0),
              1e-15);
  const int32_t only = 0;
  EXPECT_EQ(kernel_testing::value_of<double>(cpu::cross_entropy_forward<double>, 1, 1, x.data(), &only), 0.0);  // one class
}

TEST(CrossEntropyKernel, GradientMatchesCentralDifferences) {
  const int rows = 4, cols = 5;
  const double dloss = 1.7;
  auto x = uniform<double>(rows * cols, 30, -3, 3);
  auto labels = random_labels(rows, cols, 31);
  auto f = [&](const std::vector<double>& v) {
    return dloss * kernel_testing::value_of<double>(cpu::cross_entropy_forward<double>, rows, cols, v.data(), labels.data());
  };
  std::vector<double> dx(x.size(), 0.0);
  cpu::cross_entropy_backward<double>(rows, cols, x.data(), labels.data(), kernel_testing::Scalar<double>{dloss}.ptr(), dx.data());
  EXPECT_LT(gradient_error(f, x, dx), 1e-6);
}

TEST(CrossEntropyKernel, RejectsOutOfRangeLabel) {
  std::vector<float> x(6, 0.0f), dx(6, 0.0f);
  const std::vector<int32_t> bad = {1, 3};
  EXPECT_THROW(kernel_testing::value_of<float>(cpu::cross_entropy_forward<float>, 2, 3, x.data(), bad.data()), Error);
  EXPECT_THROW(cpu::cross_entropy_backward<float>(2, 3, x.data(), bad.data(), kernel_testing::Scalar<float>{1.0f}.ptr(), dx.data()),
               Error);
  EXPECT_THROW(kernel_testing::value_of<float>(ref::cross_entropy_forward<float>, 2, 3, x.data(), bad.data()), Error);
}

// --- distillation losses ----------------------------------------------------------------------

template <class T>
void check_distill_against_ref(double tol) {
  uint64_t seed = 40;
  for (Shape s : kShapes)
    for (double tau : {1.0, 4.0, 0.5})
      for (DistillKind kind : kKinds) {
        SCOPED_TRACE(kind_name(kind) + " tau=" + std::to_string(tau) + " " +
                     std::to_string(s.rows) + "x" + std::to_string(s.cols));
        const size_t len = size_t(s.rows) * s.cols;
        auto t = uniform<T>(len, seed++, -5, 5), st = uniform<T>(len, seed++, -5, 5);
        auto d0 = uniform<T>(len, seed++, -1, 1);
        T lr = kernel_testing::value_of<T>(ref::distill_loss_forward<T>, kind, s.rows, s.cols, t.data(), st.data(), T(tau));
        T lc = kernel_testing::value_of<T>(cpu::distill_loss_forward<T>, kind, s.rows, s.cols, t.data(), st.data(), T(tau));
        EXPECT_NEAR(lc, lr, tol * std::max(1.0, double(std::fabs(lr))));
        std::vector<T> dr = d0, dc = d0;
        ref::distill_loss_backward<T>(kind, s.rows, s.cols, t.data(), st.data(), T(tau), kernel_testing::Scalar<T>{T(0.9)}.ptr(),
                                      dr.data());
        cpu::distill_loss_backward<T>(kind, s.rows, s.cols, t.data(), st.data(), T(tau), kernel_testing::Scalar<T>{T(0.9)}.ptr(),
                                      dc.data());
        expect_close(dc, dr, tol, "dstudent");
      }
}

TEST(DistillLossKernel, CpuMatchesRefEveryKind) {
  check_distill_against_ref<float>(2e-6);
  check_distill_against_ref<double>(1e-12);
}

TEST(DistillLossKernel, GradientMatchesCentralDifferencesEveryKind) {
  const int rows = 3, cols = 5;
  const double dloss = 1.3;
  auto teacher = uniform<double>(rows * cols, 50, -3, 3);
  auto student = uniform<double>(rows * cols, 51, -3, 3);
  for (double tau : {1.0, 4.0})
    for (DistillKind kind : kKinds) {
      auto f = [&](const std::vector<double>& v) {
        return dloss *
               kernel_testing::value_of<double>(cpu::distill_loss_forward<double>, kind, rows, cols, teacher.data(), v.data(), tau);
      };
      std::vector<double> ds(student.size(), 0.0), dr(student.size(), 0.0);
      cpu::distill_loss_backward<double>(kind, rows, cols, teacher.data(), student.data(), tau,
                                         kernel_testing::Scalar<double>{dloss}.ptr(), ds.data());
      ref::distill_loss_backward<double>(kind, rows, cols, teacher.data(), student.data(), tau,
                                         kernel_testing::Scalar<double>{dloss}.ptr(), dr.data());
      EXPECT_LT(gradient_error(f, student, ds), 1e-6) << kind_name(kind) << " tau=" << tau;
      EXPECT_LT(gradient_error(f, student, dr), 1e-6)
          << "ref " << kind_name(kind) << " tau=" << tau;
    }
}

TEST(DistillLossKernel, ForwardCEAndKLShareGradientAtTau1) {
  // The paper code's test: at tau = 1 the two differ by the teacher entropy, a constant.
  const int rows = 4, cols = 7;
  auto t = uniform<double>(rows * cols, 60, -4, 4), s = uniform<double>(rows * cols, 61, -4, 4);
  std::vector<double> g_ce(t.size(), 0.0), g_kl(t.size(), 0.0);
  cpu::distill_loss_backward<double>(DistillKind::kForwardCE, rows, cols, t.data(), s.data(), 1.0,
                                     kernel_testing::Scalar<double>{1.0}.ptr(), g_ce.data());
  cpu::distill_loss_backward<double>(DistillKind::kKL, rows, cols, t.data(), s.data(), 1.0, kernel_testing::Scalar<double>{1.0}.ptr(),
                                     g_kl.data());
  expect_close(g_ce, g_kl, 1e-15, "forward CE vs KL gradient");
}

TEST(DistillLossKernel, ForwardCEIsTauSquaredTimesKLPlusTeacherEntropy) {
  const int rows = 5, cols = 9;
  auto t = uniform<double>(rows * cols, 70, -4, 4), s = uniform<double>(rows * cols, 71, -4, 4);
  for (double tau : {1.0, 2.5, 4.0}) {
    double entropy = 0;  // mean over rows of H(softmax(t / tau))
    for (int r = 0; r < rows; ++r) {
      double z = 0;
      for (int j = 0; j < cols; ++j) z += std::exp(t[r * cols + j] / tau);
      for (int j = 0; j < cols; ++j) {
        double p = std::exp(t[r * cols + j] / tau) / z;
        entropy -= p * std::log(p) / rows;
      }
    }
    double ce = kernel_testing::value_of<double>(cpu::distill_loss_forward<double>, DistillKind::kForwardCE, rows, cols, t.data(),
                                                  s.data(), tau);
    double kl = kernel_testing::value_of<double>(cpu::distill_loss_forward<double>, DistillKind::kKL, rows, cols, t.data(), s.data(),
                                                  tau);
    EXPECT_NEAR(ce, tau * tau * (kl + entropy), 1e-12 * ce) << "tau=" << tau;
  }
}

TEST(DistillLossKernel, IdenticalDistributionsHaveZeroDivergence) {
  const int rows = 3, cols = 8;
  auto z = uniform<double>(rows * cols, 80, -5, 5);
  for (DistillKind kind : {DistillKind::kKL, DistillKind::kSymmetricKL, DistillKind::kBrier}) {
    EXPECT_NEAR(kernel_testing::value_of<double>(cpu::distill_loss_forward<double>, kind, rows, cols, z.data(), z.data(), 2.0), 0.0,
                1e-15)
        << kind_name(kind);
    std::vector<double> g(z.size(), 0.0);
    cpu::distill_loss_backward<double>(kind, rows, cols, z.data(), z.data(), 2.0, kernel_testing::Scalar<double>{1.0}.ptr(), g.data());
    for (double v : g) EXPECT_NEAR(v, 0.0, 1e-15) << kind_name(kind);
  }
}

TEST(DistillLossKernel, TwoClassHandCase) {
  // teacher (0, 0) -> p = (1/2, 1/2); student (log 3, 0) -> q = (3/4, 1/4); tau = 1.
  const double t[] = {0.0, 0.0}, s[] = {std::log(3.0), 0.0};
  auto loss = [&](DistillKind k) { return kernel_testing::value_of<double>(cpu::distill_loss_forward<double>, k, 1, 2, t, s, 1.0); };
  const double fwd = -0.5 * (std::log(0.75) + std::log(0.25));
  EXPECT_NEAR(loss(DistillKind::kForwardCE), fwd, 1e-15);
  EXPECT_NEAR(loss(DistillKind::kKL), fwd - std::log(2.0), 1e-15);
  EXPECT_NEAR(loss(DistillKind::kReverseCE), std::log(2.0), 1e-15);
  const double kl_qp = 0.75 * std::log(1.5) + 0.25 * std::log(0.5);
  EXPECT_NEAR(loss(DistillKind::kSymmetricKL), fwd - std::log(2.0) + kl_qp, 1e-15);
  EXPECT_NEAR(loss(DistillKind::kBrier), (0.0625 + 0.0625) / 2, 1e-15);  // mean over classes too
}

TEST(DistillLossKernel, HardCEUsesFirstTeacherArgmax) {
  // Teacher ties at classes 1 and 2: the first maximum (1) is the label.
  const double t[] = {1, 3, 3, 0}, s[] = {0.5, -1, 2, 0.25};
  const double tau = 2;
  double z = 0;
  for (double v : s) z += std::exp(v / tau);
  const double want = -tau * tau * (s[1] / tau - std::log(z));
  EXPECT_NEAR(kernel_testing::value_of<double>(cpu::distill_loss_forward<double>, DistillKind::kHardCE, 1, 4, t, s, tau), want,
              1e-14);
  EXPECT_NEAR(kernel_testing::value_of<double>(ref::distill_loss_forward<double>, DistillKind::kHardCE, 1, 4, t, s, tau), want,
              1e-14);
  double g[4] = {0, 0, 0, 0};
  cpu::distill_loss_backward<double>(DistillKind::kHardCE, 1, 4, t, s, tau, kernel_testing::Scalar<double>{1.0}.ptr(), g);
  EXPECT_LT(g[1], 0.0);  // only the chosen label is pushed up
  EXPECT_GT(g[2], 0.0);
}

TEST(DistillLossKernel, RejectsNonPositiveTemperature) {
  const float t[] = {0, 1}, s[] = {1, 0};
  EXPECT_THROW(kernel_testing::value_of<float>(cpu::distill_loss_forward<float>, DistillKind::kKL, 1, 2, t, s, 0.0f), Error);
  EXPECT_THROW(kernel_testing::value_of<float>(ref::distill_loss_forward<float>, DistillKind::kKL, 1, 2, t, s, -1.0f), Error);
}

// --- ensemble reduction -----------------------------------------------------------------------

TEST(EnsembleReduceKernel, IdenticalMembersGiveLogSoftmax) {
  const int m = 3, rows = 4, cols = 6;
  auto one = uniform<double>(rows * cols, 90, -5, 5);
  std::vector<double> x;
  for (int i = 0; i < m; ++i) x.insert(x.end(), one.begin(), one.end());
  std::vector<double> y(one.size()), ls(one.size());
  cpu::ensemble_reduce_forward<double>(m, rows, cols, x.data(), y.data());
  cpu::log_softmax_forward<double>(rows, cols, one.data(), ls.data());
  expect_close(y, ls, 1e-14, "ensemble of identical members");
}

TEST(EnsembleReduceKernel, TwoMemberHandCase) {
  // Member A (0, 0) -> (1/2, 1/2); member B (log 3, 0) -> (3/4, 1/4); mean (5/8, 3/8).
  const double x[] = {0.0, 0.0, std::log(3.0), 0.0};
  double y[2];
  cpu::ensemble_reduce_forward<double>(2, 1, 2, x, y);
  EXPECT_NEAR(y[0], std::log(0.625), 1e-15);
  EXPECT_NEAR(y[1], std::log(0.375), 1e-15);
  ref::ensemble_reduce_forward<double>(2, 1, 2, x, y);
  EXPECT_NEAR(y[0], std::log(0.625), 1e-15);
}

TEST(EnsembleReduceKernel, TemperatureIsTheCallersJob) {
  // The kernel has no temperature: the paper tempers the reduced log-mean-prob vector, i.e. the
  // caller passes y to distill_loss with tau, which is NOT the mean of tempered members.
  const double x[] = {4.0, 0.0, -2.0, 0.0, 3.0, 1.0}, s[] = {0.3, -0.2, 0.1};
  const double tau = 4;
  double y[3];
  cpu::ensemble_reduce_forward<double>(2, 1, 3, x, y);
  double zy = 0, zs = 0, z0 = 0, z1 = 0;
  for (int j = 0; j < 3; ++j) {
    zy += std::exp(y[j] / tau), zs += std::exp(s[j] / tau);
    z0 += std::exp(x[j] / tau), z1 += std::exp(x[3 + j] / tau);
  }
  double want = 0, max_gap = 0;
  for (int j = 0; j < 3; ++j) {
    const double p_after = std::exp(y[j] / tau) / zy;
    const double p_members = 0.5 * (std::exp(x[j] / tau) / z0 + std::exp(x[3 + j] / tau) / z1);
    max_gap = std::max(max_gap, std::fabs(p_after - p_members));
    want -= tau * tau * p_after * (s[j] / tau - std::log(zs));
  }
  EXPECT_GT(max_gap, 1e-2) << "the two orders must differ for this test to mean anything";
  EXPECT_NEAR(kernel_testing::value_of<double>(cpu::distill_loss_forward<double>, DistillKind::kForwardCE, 1, 3, y, s, tau), want,
              1e-13);
}

TEST(EnsembleReduceKernel, CpuMatchesRef) {
  uint64_t seed = 100;
  for (int m : {1, 2, 5})
    for (Shape s : kShapes) {
      SCOPED_TRACE("m=" + std::to_string(m) + " " + std::to_string(s.rows) + "x" +
                   std::to_string(s.cols));
      const size_t len = size_t(s.rows) * s.cols;
      auto xd = uniform<double>(m * len, seed++, -6, 6), dyd = uniform<double>(len, seed++, -1, 1);
      auto d0d = uniform<double>(m * len, seed++, -1, 1);
      std::vector<float> xf(xd.begin(), xd.end()), dyf(dyd.begin(), dyd.end());
      std::vector<float> d0f(d0d.begin(), d0d.end());
      std::vector<double> yr(len), yc(len), dr = d0d, dc = d0d;
      ref::ensemble_reduce_forward<double>(m, s.rows, s.cols, xd.data(), yr.data());
      cpu::ensemble_reduce_forward<double>(m, s.rows, s.cols, xd.data(), yc.data());
      expect_close(yc, yr, 1e-13, "double y");
      ref::ensemble_reduce_backward<double>(m, s.rows, s.cols, xd.data(), yr.data(), dyd.data(),
                                            dr.data());
      cpu::ensemble_reduce_backward<double>(m, s.rows, s.cols, xd.data(), yr.data(), dyd.data(),
                                            dc.data());
      expect_close(dc, dr, 1e-13, "double dx");
      std::vector<float> yfr(len), yfc(len), dfr = d0f, dfc = d0f;
      ref::ensemble_reduce_forward<float>(m, s.rows, s.cols, xf.data(), yfr.data());
      cpu::ensemble_reduce_forward<float>(m, s.rows, s.cols, xf.data(), yfc.data());
      expect_close(yfc, yfr, 1e-6, "float y");
      ref::ensemble_reduce_backward<float>(m, s.rows, s.cols, xf.data(), yfr.data(), dyf.data(),
                                           dfr.data());
      cpu::ensemble_reduce_backward<float>(m, s.rows, s.cols, xf.data(), yfr.data(), dyf.data(),
                                           dfc.data());
      expect_close(dfc, dfr, 1e-6, "float dx");
    }
}

TEST(EnsembleReduceKernel, GradientMatchesCentralDifferencesAllMembers) {
  const int m = 3, rows = 2, cols = 5;
  auto x = uniform<double>(m * rows * cols, 110, -3, 3);
  auto dy = uniform<double>(rows * cols, 111, -1, 1);
  auto f = [&](const std::vector<double>& v) {
    std::vector<double> y(rows * cols);
    cpu::ensemble_reduce_forward<double>(m, rows, cols, v.data(), y.data());
    return dot(dy, y);
  };
  std::vector<double> y(rows * cols), dx(x.size(), 0.0);
  cpu::ensemble_reduce_forward<double>(m, rows, cols, x.data(), y.data());
  cpu::ensemble_reduce_backward<double>(m, rows, cols, x.data(), y.data(), dy.data(), dx.data());
  EXPECT_LT(gradient_error(f, x, dx), 1e-6);
}

// --- determinism ------------------------------------------------------------------------------

// Every cpu:: loss output, concatenated, for the current OpenMP thread count.
template <class T>
std::vector<T> all_loss_outputs(int rows, int cols, const std::vector<T>& t,
                                const std::vector<T>& s, const std::vector<T>& dy,
                                const std::vector<int32_t>& labels) {
  const size_t len = size_t(rows) * cols;
  std::vector<T> out, y(len), g(2 * len, T(0));
  cpu::log_softmax_forward<T>(rows, cols, s.data(), y.data());
  cpu::log_softmax_backward<T>(rows, cols, y.data(), dy.data(), g.data());
  out.insert(out.end(), y.begin(), y.end());
  out.push_back(kernel_testing::value_of<T>(cpu::cross_entropy_forward<T>, rows, cols, s.data(), labels.data()));
  cpu::cross_entropy_backward<T>(rows, cols, s.data(), labels.data(), kernel_testing::Scalar<T>{T(0.5)}.ptr(), g.data());
  for (DistillKind kind : kKinds) {
    out.push_back(kernel_testing::value_of<T>(cpu::distill_loss_forward<T>, kind, rows, cols, t.data(), s.data(), T(4)));
    cpu::distill_loss_backward<T>(kind, rows, cols, t.data(), s.data(), T(4), kernel_testing::Scalar<T>{T(1)}.ptr(), g.data());
  }
  std::vector<T> members(t);
  members.insert(members.end(), s.begin(), s.end());
  cpu::ensemble_reduce_forward<T>(2, rows, cols, members.data(), y.data());
  cpu::ensemble_reduce_backward<T>(2, rows, cols, members.data(), y.data(), dy.data(), g.data());
  out.insert(out.end(), y.begin(), y.end());
  out.insert(out.end(), g.begin(), g.end());
  return out;
}

// Double outputs expose any reordering of the double sums; float outputs usually would not.
template <class T>
void check_loss_thread_independence() {
  const int rows = 257, cols = 100;  // above the parallel threshold
  const size_t len = size_t(rows) * cols;
  auto t = uniform<T>(len, 120, -5, 5), s = uniform<T>(len, 121, -5, 5);
  auto dy = uniform<T>(len, 122, -1, 1);
  auto labels = random_labels(rows, cols, 123);
  std::vector<T> one;
  for_thread_counts([&](int threads) {
    std::vector<T> out = all_loss_outputs(rows, cols, t, s, dy, labels);
    if (threads == 1)
      one = out;
    else
      EXPECT_TRUE(same_bits(out, one)) << threads << " threads";
  });
}

TEST(LossKernels, ThreadCountDoesNotChangeBits) {
  check_loss_thread_independence<float>();
  check_loss_thread_independence<double>();
}

}  // namespace
}  // namespace kd
