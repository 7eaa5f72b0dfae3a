// Tests for kernels/normalization.h: cpu:: batch norm and group norm against ref:: on awkward
// shapes (float and double, forward values, saved statistics, running statistics, and backward
// accumulation into prefilled gradients), central-difference gradient checks in double, hand cases
// (PyTorch's running-statistics update, groups=1 normalizing each sample), and bitwise
// independence from the OpenMP thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "base/check.h"
#include "kernels/normalization.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using namespace kernel_testing;

// forward(x, gamma, beta) = <dy, y>; checks the analytic dx, dgamma, dbeta against it.
using NormFunctional = std::function<double(const std::vector<double>&,
                                            const std::vector<double>&,
                                            const std::vector<double>&)>;
void expect_gradients_match(const NormFunctional& forward, const std::vector<double>& x,
                            const std::vector<double>& gamma, const std::vector<double>& beta,
                            const std::vector<double>& dx, const std::vector<double>& dgamma,
                            const std::vector<double>& dbeta) {
  using V = std::vector<double>;
  EXPECT_LT(gradient_error([&](const V& v) { return forward(v, gamma, beta); }, x, dx), 1e-6)
      << "dx";
  EXPECT_LT(gradient_error([&](const V& v) { return forward(x, v, beta); }, gamma, dgamma), 1e-6)
      << "dgamma";
  EXPECT_LT(gradient_error([&](const V& v) { return forward(x, gamma, v); }, beta, dbeta), 1e-6)
      << "dbeta";
}

size_t numel(const NormGeom& g) { return size_t(g.n) * g.c * g.hw; }

// batch 1, hw = 1 (m = n), odd channels, PreResNet-like planes.
const NormGeom kBnGeoms[] = {{1, 3, 5},   {2, 7, 1},  {5, 16, 33},
                             {6, 19, 7}, {3, 5, 64}, {4, 2, 1024}};

template <class T>
void check_batchnorm_against_ref(double tol) {
  uint64_t seed = 100;
  for (const NormGeom& g : kBnGeoms) {
    SCOPED_TRACE("n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) +
                 " hw=" + std::to_string(g.hw));
    const size_t len = numel(g);
    // Offset mean (3 +- 2): the one-pass statistics must not cancel.
    auto x = uniform<T>(len, seed++, 1, 5), dy = uniform<T>(len, seed++, -1, 1);
    auto gamma = uniform<T>(g.c, seed++, 0.5, 1.5), beta = uniform<T>(g.c, seed++, -1, 1);
    auto rm0 = uniform<T>(g.c, seed++, -1, 1), rv0 = uniform<T>(g.c, seed++, 0.5, 2);
    const T eps = T(1e-5), momentum = T(0.1);

    std::vector<T> yr(len), yc(len), mr(g.c), mc(g.c), ir(g.c), ic(g.c);
    std::vector<T> rmr = rm0, rmc = rm0, rvr = rv0, rvc = rv0;
    ref::batchnorm_forward_train<T>(g, x.data(), gamma.data(), beta.data(), eps, momentum,
                                    yr.data(), mr.data(), ir.data(), rmr.data(), rvr.data(),
                                    nullptr, false);
    cpu::batchnorm_forward_train<T>(g, x.data(), gamma.data(), beta.data(), eps, momentum,
                                    yc.data(), mc.data(), ic.data(), rmc.data(), rvc.data(),
                                    nullptr, false);
    expect_close(yc, yr, tol, "train y");
    expect_close(mc, mr, tol, "save_mean");
    expect_close(ic, ir, tol, "save_invstd");
    expect_close(rmc, rmr, tol, "running_mean");
    expect_close(rvc, rvr, tol, "running_var");

    // Backward accumulates into prefilled gradients.
    auto dx0 = uniform<T>(len, seed++, -1, 1), dg0 = uniform<T>(g.c, seed++, -1, 1);
    auto db0 = uniform<T>(g.c, seed++, -1, 1);
    std::vector<T> dxr = dx0, dxc = dx0, dgr = dg0, dgc = dg0, dbr = db0, dbc = db0;
    ref::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), mr.data(), ir.data(),
                                     dxr.data(), dgr.data(), dbr.data(), true, nullptr);
    cpu::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), mr.data(), ir.data(),
                                     dxc.data(), dgc.data(), dbc.data(), true, nullptr);
    expect_close(dxc, dxr, tol, "train dx");
    {  // assigned dx: equals the accumulated one minus what it started from, NaN never read
      std::vector<T> set_r(len, T(NAN)), set_c(len, T(NAN)), g_r = dg0, b_r = db0, g_c = dg0,
                     b_c = db0;
      ref::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), mr.data(), ir.data(),
                                       set_r.data(), g_r.data(), b_r.data(), false, nullptr);
      cpu::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), mr.data(), ir.data(),
                                       set_c.data(), g_c.data(), b_c.data(), false, nullptr);
      expect_close(set_c, set_r, tol, "train dx assigned");
      std::vector<T> diff(len);
      for (size_t i = 0; i < diff.size(); ++i) diff[i] = dxr[i] - dx0[i];
      expect_close(set_r, diff, tol * 10, "assigned = accumulated - start");
    }
    expect_close(dgc, dgr, tol * 10, "train dgamma");
    expect_close(dbc, dbr, tol * 10, "train dbeta");

    ref::batchnorm_forward_eval<T>(g, x.data(), gamma.data(), beta.data(), rm0.data(), rv0.data(),
                                   eps, yr.data());
    cpu::batchnorm_forward_eval<T>(g, x.data(), gamma.data(), beta.data(), rm0.data(), rv0.data(),
                                   eps, yc.data());
    expect_close(yc, yr, tol, "eval y");
    dxr = dxc = dx0, dgr = dgc = dg0, dbr = dbc = db0;
    ref::batchnorm_backward_eval<T>(g, x.data(), dy.data(), gamma.data(), rm0.data(), rv0.data(),
                                    eps, dxr.data(), dgr.data(), dbr.data());
    cpu::batchnorm_backward_eval<T>(g, x.data(), dy.data(), gamma.data(), rm0.data(), rv0.data(),
                                    eps, dxc.data(), dgc.data(), dbc.data());
    expect_close(dxc, dxr, tol, "eval dx");
    expect_close(dgc, dgr, tol * 10, "eval dgamma");
    expect_close(dbc, dbr, tol * 10, "eval dbeta");
  }
}

TEST(BatchNormKernel, TrainAndEvalMatchRef) {
  check_batchnorm_against_ref<float>(2e-5);
  check_batchnorm_against_ref<double>(1e-12);
}

// batchnorm + ReLU fused: ref:: forward is relu(ref:: batchnorm) bit for bit, and its backward
// with relu_out is the unfused backward of dy masked by the output (to rounding); cpu:: matches
// ref::.
template <class T>
void check_fused_relu(double tol) {
  uint64_t seed = 700;
  for (const NormGeom& g : kBnGeoms) {
    SCOPED_TRACE("n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) +
                 " hw=" + std::to_string(g.hw));
    const size_t len = numel(g);
    auto x = uniform<T>(len, seed++, -1, 3), dy = uniform<T>(len, seed++, -1, 1);
    auto gamma = uniform<T>(g.c, seed++, 0.5, 1.5), beta = uniform<T>(g.c, seed++, -1, 1);
    std::vector<T> plain(len), fused(len), fused_cpu(len), m(g.c), s(g.c);
    ref::batchnorm_forward_train<T>(g, x.data(), gamma.data(), beta.data(), T(1e-5), T(0.1),
                                    plain.data(), m.data(), s.data(), nullptr, nullptr, nullptr,
                                    false);
    ref::batchnorm_forward_train<T>(g, x.data(), gamma.data(), beta.data(), T(1e-5), T(0.1),
                                    fused.data(), m.data(), s.data(), nullptr, nullptr, nullptr,
                                    true);
    size_t zeros = 0;
    for (size_t i = 0; i < len; ++i) {
      ASSERT_EQ(fused[i], plain[i] < T(0) ? T(0) : plain[i]) << "ref fused forward, i=" << i;
      zeros += fused[i] == T(0);
    }
    if (len >= 8) {
      EXPECT_GT(zeros, 0u) << "the ReLU never cut anything: a weak case";
    }
    std::vector<T> mc(g.c), sc(g.c);
    cpu::batchnorm_forward_train<T>(g, x.data(), gamma.data(), beta.data(), T(1e-5), T(0.1),
                                    fused_cpu.data(), mc.data(), sc.data(), nullptr, nullptr,
                                    nullptr, true);
    expect_close(fused_cpu, fused, tol, "cpu fused forward");

    std::vector<T> masked(len);
    for (size_t i = 0; i < len; ++i) masked[i] = fused[i] > T(0) ? dy[i] : T(0);
    std::vector<T> dx_plain(len), dx_ref(len), dx_cpu(len), dg1(g.c, T(0)), db1(g.c, T(0)),
        dg2(g.c, T(0)), db2(g.c, T(0)), dg3(g.c, T(0)), db3(g.c, T(0));
    ref::batchnorm_backward_train<T>(g, x.data(), masked.data(), gamma.data(), m.data(), s.data(),
                                     dx_plain.data(), dg1.data(), db1.data(), false, nullptr);
    ref::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), m.data(), s.data(),
                                     dx_ref.data(), dg2.data(), db2.data(), false, fused.data());
    // Equal up to rounding: the compiler may contract the two call sites' products differently.
    expect_close(dx_ref, dx_plain, tol, "ref fused backward dx");
    expect_close(dg2, dg1, tol * 10, "ref fused backward dgamma");
    expect_close(db2, db1, tol * 10, "ref fused backward dbeta");
    cpu::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), m.data(), s.data(),
                                     dx_cpu.data(), dg3.data(), db3.data(), false, fused.data());
    expect_close(dx_cpu, dx_ref, tol, "cpu fused backward dx");
    expect_close(dg3, dg2, tol * 10, "cpu fused backward dgamma");
    expect_close(db3, db2, tol * 10, "cpu fused backward dbeta");
  }
}

TEST(BatchNormKernel, FusedReluMatchesBatchNormThenRelu) {
  check_fused_relu<float>(1e-4);
  check_fused_relu<double>(1e-11);
}

TEST(BatchNormKernel, RunningStatisticsFollowPyTorch) {
  // One channel, n=2, hw=2, x = 1..4: mean 2.5, biased var 1.25, unbiased var 5/3.
  const NormGeom g{2, 1, 2};
  const double x[] = {1, 2, 3, 4}, gamma = 2, beta = 0.5, eps = 1e-5;
  double y[4], mean, invstd, rm = 1.0, rv = 2.0;
  int64_t tracked = 7;
  cpu::batchnorm_forward_train<double>(g, x, &gamma, &beta, eps, 0.1, y, &mean, &invstd, &rm, &rv,
                                       &tracked, false);
  EXPECT_EQ(tracked, 8) << "num_batches_tracked counts the batch";
  EXPECT_DOUBLE_EQ(mean, 2.5);
  EXPECT_NEAR(invstd, 1 / std::sqrt(1.25 + eps), 1e-15);
  EXPECT_NEAR(rm, 0.9 * 1.0 + 0.1 * 2.5, 1e-15);
  EXPECT_NEAR(rv, 0.9 * 2.0 + 0.1 * (5.0 / 3.0), 1e-15);
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(y[i], (x[i] - 2.5) / std::sqrt(1.25 + eps) * 2 + 0.5, 1e-14);
  // Null running statistics are allowed (no update requested).
  cpu::batchnorm_forward_train<double>(g, x, &gamma, &beta, eps, 0.1, y, &mean, &invstd, nullptr,
                                       nullptr, nullptr, false);
  // The specification counts the same way.
  ref::batchnorm_forward_train<double>(g, x, &gamma, &beta, eps, 0.1, y, &mean, &invstd, nullptr,
                                       nullptr, &tracked, true);
  EXPECT_EQ(tracked, 9) << "ref:: num_batches_tracked";
}

TEST(BatchNormKernel, RejectsOneValuePerChannelInTraining) {
  const NormGeom g{1, 2, 1};
  double x[2] = {1, 2}, gm[2] = {1, 1}, bt[2] = {0, 0}, y[2], m[2], s[2];
  EXPECT_THROW(cpu::batchnorm_forward_train<double>(g, x, gm, bt, 1e-5, 0.1, y, m, s, nullptr,
                                                    nullptr, nullptr, false),
               Error);
  EXPECT_THROW(ref::batchnorm_forward_train<double>(g, x, gm, bt, 1e-5, 0.1, y, m, s, nullptr,
                                                    nullptr, nullptr, false),
               Error);
}

// Gradient of <dy, y> with respect to x, gamma and beta, all at once.
TEST(BatchNormKernel, TrainGradientMatchesCentralDifferences) {
  const NormGeom g{3, 2, 5};
  const size_t len = numel(g);
  auto x = uniform<double>(len, 200, -2, 2), dy = uniform<double>(len, 201, -1, 1);
  auto gamma = uniform<double>(g.c, 202, 0.5, 1.5), beta = uniform<double>(g.c, 203, -1, 1);
  const double eps = 1e-5;
  auto forward = [&](const std::vector<double>& xx, const std::vector<double>& gg,
                     const std::vector<double>& bb) {
    std::vector<double> y(len), m(g.c), s(g.c);
    cpu::batchnorm_forward_train<double>(g, xx.data(), gg.data(), bb.data(), eps, 0.1, y.data(),
                                         m.data(), s.data(), nullptr, nullptr, nullptr, false);
    return dot(dy, y);
  };
  std::vector<double> y(len), m(g.c), s(g.c), dx(len, 0), dg(g.c, 0), db(g.c, 0);
  cpu::batchnorm_forward_train<double>(g, x.data(), gamma.data(), beta.data(), eps, 0.1, y.data(),
                                       m.data(), s.data(), nullptr, nullptr, nullptr, false);
  cpu::batchnorm_backward_train<double>(g, x.data(), dy.data(), gamma.data(), m.data(), s.data(),
                                        dx.data(), dg.data(), db.data(), true, nullptr);
  expect_gradients_match(forward, x, gamma, beta, dx, dg, db);
}

TEST(BatchNormKernel, EvalGradientMatchesCentralDifferences) {
  const NormGeom g{2, 3, 4};
  const size_t len = numel(g);
  auto x = uniform<double>(len, 210, -2, 2), dy = uniform<double>(len, 211, -1, 1);
  auto gamma = uniform<double>(g.c, 212, 0.5, 1.5), beta = uniform<double>(g.c, 213, -1, 1);
  auto rm = uniform<double>(g.c, 214, -1, 1), rv = uniform<double>(g.c, 215, 0.5, 2);
  const double eps = 1e-5;
  auto forward = [&](const std::vector<double>& xx, const std::vector<double>& gg,
                     const std::vector<double>& bb) {
    std::vector<double> y(len);
    cpu::batchnorm_forward_eval<double>(g, xx.data(), gg.data(), bb.data(), rm.data(), rv.data(),
                                        eps, y.data());
    return dot(dy, y);
  };
  std::vector<double> dx(len, 0), dg(g.c, 0), db(g.c, 0);
  cpu::batchnorm_backward_eval<double>(g, x.data(), dy.data(), gamma.data(), rm.data(), rv.data(),
                                       eps, dx.data(), dg.data(), db.data());
  expect_gradients_match(forward, x, gamma, beta, dx, dg, db);
}

// Double outputs expose any reordering of the double sums; float outputs usually would not.
template <class T>
void check_batchnorm_thread_independence() {
  const NormGeom g{9, 20, 200};  // above the parallel threshold; partial chunk and block
  const size_t len = numel(g);
  auto x = uniform<T>(len, 220, -1, 3), dy = uniform<T>(len, 221, -1, 1);
  auto gamma = uniform<T>(g.c, 222, 0.5, 1.5), beta = uniform<T>(g.c, 223, -1, 1);
  std::vector<T> y0, dx0, dg0;
  for_thread_counts([&](int threads) {
    std::vector<T> y(len), m(g.c), s(g.c), rm(g.c, 0), rv(g.c, 1), dx(len, 0), dg(g.c, 0),
        db(g.c, 0);
    cpu::batchnorm_forward_train<T>(g, x.data(), gamma.data(), beta.data(), T(1e-5), T(0.1),
                                    y.data(), m.data(), s.data(), rm.data(), rv.data(), nullptr,
                                    false);
    cpu::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), m.data(), s.data(),
                                     dx.data(), dg.data(), db.data(), true, nullptr);
    cpu::batchnorm_backward_eval<T>(g, x.data(), dy.data(), gamma.data(), rm.data(), rv.data(),
                                    T(1e-5), dx.data(), dg.data(), db.data());
    y.insert(y.end(), rv.begin(), rv.end());
    dg.insert(dg.end(), db.begin(), db.end());
    if (threads == 1) {
      y0 = y, dx0 = dx, dg0 = dg;
    } else {
      EXPECT_TRUE(same_bits(y, y0)) << threads << " threads: forward";
      EXPECT_TRUE(same_bits(dx, dx0)) << threads << " threads: dx";
      EXPECT_TRUE(same_bits(dg, dg0)) << threads << " threads: dgamma/dbeta";
    }
  });
}

TEST(BatchNormKernel, ThreadCountDoesNotChangeBits) {
  check_batchnorm_thread_independence<float>();
  check_batchnorm_thread_independence<double>();
}

// --- group norm ------------------------------------------------------------------------------

const NormGeom kGnGeoms[] = {{1, 4, 9, 1},   {3, 6, 7, 3},  {2, 5, 1, 5},
                             {4, 8, 16, 2}, {2, 12, 25, 4}};

template <class T>
void check_groupnorm_against_ref(double tol) {
  uint64_t seed = 300;
  for (const NormGeom& g : kGnGeoms) {
    SCOPED_TRACE("n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) + " hw=" +
                 std::to_string(g.hw) + " groups=" + std::to_string(g.groups));
    const size_t len = numel(g), stats = size_t(g.n) * g.groups;
    auto x = uniform<T>(len, seed++, 1, 5), dy = uniform<T>(len, seed++, -1, 1);
    auto gamma = uniform<T>(g.c, seed++, 0.5, 1.5), beta = uniform<T>(g.c, seed++, -1, 1);
    std::vector<T> yr(len), yc(len), mr(stats), mc(stats), ir(stats), ic(stats);
    ref::groupnorm_forward<T>(g, x.data(), gamma.data(), beta.data(), T(1e-5), yr.data(),
                              mr.data(), ir.data());
    cpu::groupnorm_forward<T>(g, x.data(), gamma.data(), beta.data(), T(1e-5), yc.data(),
                              mc.data(), ic.data());
    expect_close(yc, yr, tol, "y");
    expect_close(mc, mr, tol, "save_mean");
    expect_close(ic, ir, tol, "save_invstd");
    auto dx0 = uniform<T>(len, seed++, -1, 1), dg0 = uniform<T>(g.c, seed++, -1, 1);
    auto db0 = uniform<T>(g.c, seed++, -1, 1);
    std::vector<T> dxr = dx0, dxc = dx0, dgr = dg0, dgc = dg0, dbr = db0, dbc = db0;
    ref::groupnorm_backward<T>(g, x.data(), dy.data(), gamma.data(), mr.data(), ir.data(),
                               dxr.data(), dgr.data(), dbr.data());
    cpu::groupnorm_backward<T>(g, x.data(), dy.data(), gamma.data(), mr.data(), ir.data(),
                               dxc.data(), dgc.data(), dbc.data());
    expect_close(dxc, dxr, tol, "dx");
    expect_close(dgc, dgr, tol * 10, "dgamma");
    expect_close(dbc, dbr, tol * 10, "dbeta");
  }
}

TEST(GroupNormKernel, ForwardAndBackwardMatchRef) {
  check_groupnorm_against_ref<float>(2e-5);
  check_groupnorm_against_ref<double>(1e-12);
}

TEST(GroupNormKernel, OneGroupNormalizesEachSampleOverChannelsAndPixels) {
  const NormGeom g{3, 5, 7, 1};
  const size_t len = numel(g), per_sample = size_t(g.c) * g.hw;
  auto x = uniform<double>(len, 320, -3, 5);
  for (size_t i = per_sample; i < 2 * per_sample; ++i) x[i] = 100 + 0.01 * x[i];  // offset sample
  std::vector<double> gamma(g.c, 1.0), beta(g.c, 0.0), y(len), m(g.n), s(g.n);
  const double eps = 1e-5;
  cpu::groupnorm_forward<double>(g, x.data(), gamma.data(), beta.data(), eps, y.data(), m.data(),
                                 s.data());
  for (int n = 0; n < g.n; ++n) {
    double mean = 0, var = 0, ymean = 0, yvar = 0;
    for (size_t i = 0; i < per_sample; ++i) mean += x[n * per_sample + i] / per_sample;
    for (size_t i = 0; i < per_sample; ++i) {
      double d = x[n * per_sample + i] - mean;
      var += d * d / per_sample;
      ymean += y[n * per_sample + i] / per_sample;
    }
    for (size_t i = 0; i < per_sample; ++i)
      yvar += std::pow(y[n * per_sample + i] - ymean, 2) / per_sample;
    EXPECT_NEAR(m[n], mean, 1e-12) << "sample " << n;
    EXPECT_NEAR(s[n], 1 / std::sqrt(var + eps), 1e-9 * s[n]) << "sample " << n;
    EXPECT_NEAR(ymean, 0.0, 1e-12) << "sample " << n;
    EXPECT_NEAR(yvar, var / (var + eps), 1e-12) << "sample " << n;
  }
}

TEST(GroupNormKernel, GradientMatchesCentralDifferences) {
  const NormGeom g{2, 6, 5, 3};
  const size_t len = numel(g), stats = size_t(g.n) * g.groups;
  auto x = uniform<double>(len, 330, -2, 2), dy = uniform<double>(len, 331, -1, 1);
  auto gamma = uniform<double>(g.c, 332, 0.5, 1.5), beta = uniform<double>(g.c, 333, -1, 1);
  const double eps = 1e-5;
  auto forward = [&](const std::vector<double>& xx, const std::vector<double>& gg,
                     const std::vector<double>& bb) {
    std::vector<double> y(len), m(stats), s(stats);
    cpu::groupnorm_forward<double>(g, xx.data(), gg.data(), bb.data(), eps, y.data(), m.data(),
                                   s.data());
    return dot(dy, y);
  };
  std::vector<double> y(len), m(stats), s(stats), dx(len, 0), dg(g.c, 0), db(g.c, 0);
  cpu::groupnorm_forward<double>(g, x.data(), gamma.data(), beta.data(), eps, y.data(), m.data(),
                                 s.data());
  cpu::groupnorm_backward<double>(g, x.data(), dy.data(), gamma.data(), m.data(), s.data(),
                                  dx.data(), dg.data(), db.data());
  expect_gradients_match(forward, x, gamma, beta, dx, dg, db);
}

TEST(GroupNormKernel, RejectsGroupsThatDoNotDivideChannels) {
  const NormGeom g{1, 6, 2, 4};
  std::vector<double> x(12, 1.0), gm(6, 1.0), bt(6, 0.0), y(12), m(4), s(4);
  EXPECT_THROW(cpu::groupnorm_forward<double>(g, x.data(), gm.data(), bt.data(), 1e-5, y.data(),
                                              m.data(), s.data()),
               Error);
}

template <class T>
void check_groupnorm_thread_independence() {
  const NormGeom g{6, 12, 500, 4};  // above the parallel threshold
  const size_t len = numel(g), stats = size_t(g.n) * g.groups;
  auto x = uniform<T>(len, 340, -1, 3), dy = uniform<T>(len, 341, -1, 1);
  auto gamma = uniform<T>(g.c, 342, 0.5, 1.5), beta = uniform<T>(g.c, 343, -1, 1);
  std::vector<T> y0, dx0, dg0;
  for_thread_counts([&](int threads) {
    std::vector<T> y(len), m(stats), s(stats), dx(len, 0), dg(g.c, 0), db(g.c, 0);
    cpu::groupnorm_forward<T>(g, x.data(), gamma.data(), beta.data(), T(1e-5), y.data(),
                              m.data(), s.data());
    cpu::groupnorm_backward<T>(g, x.data(), dy.data(), gamma.data(), m.data(), s.data(),
                               dx.data(), dg.data(), db.data());
    y.insert(y.end(), s.begin(), s.end());
    dg.insert(dg.end(), db.begin(), db.end());
    if (threads == 1) {
      y0 = y, dx0 = dx, dg0 = dg;
    } else {
      EXPECT_TRUE(same_bits(y, y0)) << threads << " threads: forward";
      EXPECT_TRUE(same_bits(dx, dx0)) << threads << " threads: dx";
      EXPECT_TRUE(same_bits(dg, dg0)) << threads << " threads: dgamma/dbeta";
    }
  });
}

TEST(GroupNormKernel, ThreadCountDoesNotChangeBits) {
  check_groupnorm_thread_independence<float>();
  check_groupnorm_thread_independence<double>();
}

}  // namespace
}  // namespace kd
