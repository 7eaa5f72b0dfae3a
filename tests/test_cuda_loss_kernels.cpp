// Tests for the CUDA softmax-family ops and losses (kernels/cuda/loss.cu) against ref::.
// Host part (suite LossRowMath, runs everywhere): the per-element formulas and the lane-split
// first-maximum rule of kernels/cuda/row_math.h, run serially on the host in the same lane order
// as a warp, must reproduce ref:: losses and gradients for every DistillKind. Device part
// (suites named Cuda, skipped without a GPU): log_softmax, cross-entropy, every DistillKind at
// tau 1 and 4 (also with tied teacher maxima), ensemble_reduce, forward and backward, float and
// double, on awkward shapes (1x1, cols 1, 1000 classes, rows above one reduction block).
// Tolerances: both sides compute in double, so double results agree to rounding (1e-12 relative);
// float results are one rounding of nearly equal doubles (1 ulp ~ 6e-8; we allow 1e-6).
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <string>
#include <vector>

#include "base/check.h"
#include "kernels/cuda/row_math.h"
#include "kernels/loss.h"
#include "tests/cuda_testing.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using namespace kernel_testing;

const DistillKind kKinds[] = {DistillKind::kForwardCE, DistillKind::kKL,
                              DistillKind::kReverseCE, DistillKind::kSymmetricKL,
                              DistillKind::kBrier,     DistillKind::kHardCE};

std::string kind_name(DistillKind k) {
  const char* names[] = {"ForwardCE", "KL", "ReverseCE", "SymmetricKL", "Brier", "HardCE"};
  return names[int(k)];
}

int first_argmax(const double* z, int cols) {
  int best = 0;
  for (int j = 1; j < cols; ++j)
    if (z[j] > z[best]) best = j;
  return best;
}

// The warp's argmax on the host: 32 lane scans, then the same xor butterfly as warp_rows.cuh.
int lanes_argmax(const double* z, int cols) {
  row_math::ArgMax lane[32];
  for (int l = 0; l < 32; ++l) lane[l] = row_math::lane_argmax(z, cols, l, 32);
  for (int offset = 16; offset > 0; offset /= 2) {
    row_math::ArgMax next[32];
    for (int l = 0; l < 32; ++l) next[l] = row_math::argmax_combine(lane[l], lane[l ^ offset]);
    for (int l = 0; l < 32; ++l) lane[l] = next[l];
  }
  for (int l = 1; l < 32; ++l) EXPECT_EQ(lane[l].index, lane[0].index) << "lanes disagree";
  return lane[0].index;
}

double row_lse(const double* z, int cols, double inv_tau) {
  double mx = -INFINITY, sum = 0;
  for (int j = 0; j < cols; ++j) mx = std::max(mx, z[j] * inv_tau);
  for (int j = 0; j < cols; ++j) sum += std::exp(z[j] * inv_tau - mx);
  return mx + std::log(sum);
}

TEST(LossRowMath, LaneArgmaxIsFirstMaximum) {
  for (int cols : {1, 2, 31, 32, 33, 100, 1000}) {
    // Values in {0, 1, 2, 3}: many ties, the maximum repeated across lanes.
    std::vector<double> z = uniform<double>(cols, 7 + cols, 0, 4);
    for (double& v : z) v = std::floor(v);
    EXPECT_EQ(lanes_argmax(z.data(), cols), first_argmax(z.data(), cols)) << cols;
    std::vector<double> flat(cols, -INFINITY);  // all equal, even -inf: index 0
    EXPECT_EQ(lanes_argmax(flat.data(), cols), 0) << cols;
  }
}

TEST(LossRowMath, DistillFormulasMatchRef) {
  const int rows = 5, cols = 37;
  for (double tau : {1.0, 4.0}) {
    for (DistillKind kind : kKinds) {
      SCOPED_TRACE(kind_name(kind) + " tau " + std::to_string(tau));
      auto t = uniform<double>(rows * cols, 1, -5, 5), s = uniform<double>(rows * cols, 2, -5, 5);
      for (int j = 0; j < cols; j += 3) t[j] = 5;  // tied maxima in row 0
      const double dloss = 0.75, inv_tau = 1 / tau, t2 = tau * tau;
      std::vector<double> want_grad(rows * cols, 0.5), got_grad(rows * cols, 0.5);
      ref::distill_loss_backward<double>(kind, rows, cols, t.data(), s.data(), tau, kernel_testing::Scalar<double>{dloss}.ptr(),
                                         want_grad.data());
      const double want =
          kernel_testing::value_of<double>(ref::distill_loss_forward<double>, kind, rows, cols, t.data(), s.data(), tau);
      double total = 0;
      for (int r = 0; r < rows; ++r) {
        const double *tr = t.data() + r * cols, *sr = s.data() + r * cols;
        const double lse_p = row_lse(tr, cols, inv_tau), lse_q = row_lse(sr, cols, inv_tau);
        const int hard = kind == DistillKind::kHardCE ? lanes_argmax(tr, cols) : -1;
        double sum = 0, e = 0;
        for (int j = 0; j < cols; ++j) {
          const double lp = tr[j] * inv_tau - lse_p, lq = sr[j] * inv_tau - lse_q;
          sum += row_math::distill_term(kind, lp, lq, j == hard);
          if (row_math::distill_needs_expectation(kind))
            e += row_math::distill_expect_term(kind, lp, lq);
        }
        total += row_math::distill_finish(kind, sum, t2, cols);
        for (int k = 0; k < cols; ++k) {
          const double lp = tr[k] * inv_tau - lse_p, lq = sr[k] * inv_tau - lse_q;
          got_grad[r * cols + k] +=
              dloss / rows * inv_tau * row_math::distill_grad(kind, lp, lq, e, k == hard, t2, cols);
        }
      }
      EXPECT_NEAR(total / rows, want, 1e-12 * std::max(1.0, std::fabs(want)));
      expect_close(got_grad, want_grad, 1e-12, "gradient");
    }
  }
}

// --- device ----------------------------------------------------------------------------------
using cuda_testing::DeviceArray;

template <class T>
double tol() {
  return sizeof(T) == 4 ? 1e-6 : 1e-12;
}

struct Shape {
  int rows, cols;
};
// 1x1, one column, below/at/above a warp's width, 1000 classes, and more rows than the
// 1024-thread mean reduction holds at once.
const std::vector<Shape> kShapes = kernel_testing::shapes_for_build(
    std::vector<Shape>{{1, 1}, {1, 2}, {5, 1}, {3, 31}, {7, 33}, {37, 100}, {19, 1000}, {1100, 10}},
    6);

std::string shape_name(Shape s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

template <class T>
T download_scalar(const DeviceArray<T>& a) {
  return a.host().at(0);
}

template <class T>
void check_log_softmax_and_ce() {
  uint64_t seed = 100;
  for (Shape s : kShapes) {
    SCOPED_TRACE(shape_name(s));
    const size_t len = size_t(s.rows) * s.cols;
    auto x = uniform<T>(len, seed++, -8, 8), dy = uniform<T>(len, seed++, -1, 1);
    auto dx0 = uniform<T>(len, seed++, -1, 1);
    auto labels = random_labels(s.rows, s.cols, seed++);
    std::vector<T> y(len), dx_ls = dx0, dx_ce = dx0;
    ref::log_softmax_forward<T>(s.rows, s.cols, x.data(), y.data());
    ref::log_softmax_backward<T>(s.rows, s.cols, y.data(), dy.data(), dx_ls.data());
    const T dloss = T(0.75);
    const T loss = kernel_testing::value_of<T>(ref::cross_entropy_forward<T>, s.rows, s.cols, x.data(), labels.data());
    ref::cross_entropy_backward<T>(s.rows, s.cols, x.data(), labels.data(), kernel_testing::Scalar<T>{dloss}.ptr(), dx_ce.data());

    DeviceArray<T> x_d(x), dy_d(dy), y_d(std::vector<T>(len, T(1e30))), g_ls(dx0), g_ce(dx0);
    DeviceArray<int32_t> l_d(labels);
    DeviceArray<T> loss_d(std::vector<T>{T(-1)}), dloss_d(std::vector<T>{dloss});
    cuda_testing::gpu_kernels<T>().log_softmax_forward(s.rows, s.cols, x_d.get(), y_d.get());
    expect_close(y_d.host(), y, tol<T>(), "log_softmax y");
    DeviceArray<T> y_ref(y);  // backward from the reference y, as ref:: used
    cuda_testing::gpu_kernels<T>().log_softmax_backward(s.rows, s.cols, y_ref.get(), dy_d.get(), g_ls.get());
    expect_close(g_ls.host(), dx_ls, tol<T>(), "log_softmax dx (accumulated)");
    cuda_testing::gpu_kernels<T>().cross_entropy_forward(s.rows, s.cols, x_d.get(), l_d.get(), loss_d.get());
    EXPECT_NEAR(download_scalar(loss_d), loss, tol<T>() * std::max(1.0, std::fabs(double(loss))));
    cuda_testing::gpu_kernels<T>().cross_entropy_backward(s.rows, s.cols, x_d.get(), l_d.get(), dloss_d.get(),
                                    g_ce.get());
    expect_close(g_ce.host(), dx_ce, tol<T>(), "cross_entropy dx (accumulated)");
  }
}

TEST(CudaLossKernels, LogSoftmaxAndCrossEntropyMatchRef) {
  KD_REQUIRE_CUDA();
  check_log_softmax_and_ce<float>();
  check_log_softmax_and_ce<double>();
}

template <class T>
void check_distill(bool tied_teacher) {
  uint64_t seed = 200;
  for (Shape s : kShapes) {
    const size_t len = size_t(s.rows) * s.cols;
    auto t = uniform<T>(len, seed++, -6, 6), st = uniform<T>(len, seed++, -6, 6);
    if (tied_teacher)  // integers in [-6, 6): many tied maxima per row for kHardCE
      for (T& v : t) v = T(std::floor(double(v)));
    auto g0 = uniform<T>(len, seed++, -1, 1);
    DeviceArray<T> t_d(t), s_d(st), loss_d(1);
    const T dloss = T(-1.25);
    DeviceArray<T> dloss_d(std::vector<T>{dloss});
    // The temperature scales values, not who reads what: the race check runs one.
    const std::vector<T> taus = kernel_testing::kRaceCheckBuild ? std::vector<T>{T(4)}
                                                                 : std::vector<T>{T(1), T(4)};
    for (T tau : taus) {
      for (DistillKind kind : kKinds) {
        SCOPED_TRACE(shape_name(s) + " " + kind_name(kind) + " tau " + std::to_string(double(tau)));
        const T want = kernel_testing::value_of<T>(ref::distill_loss_forward<T>, kind, s.rows, s.cols, t.data(), st.data(), tau);
        std::vector<T> want_g = g0;
        ref::distill_loss_backward<T>(kind, s.rows, s.cols, t.data(), st.data(), tau, kernel_testing::Scalar<T>{dloss}.ptr(),
                                      want_g.data());
        cuda_testing::gpu_kernels<T>().distill_loss_forward(kind, s.rows, s.cols, t_d.get(), s_d.get(), tau,
                                      loss_d.get());
        const T got = download_scalar(loss_d);
        EXPECT_NEAR(got, want, tol<T>() * std::max(1.0, std::fabs(double(want))));
        DeviceArray<T> g_d(g0);
        cuda_testing::gpu_kernels<T>().distill_loss_backward(kind, s.rows, s.cols, t_d.get(), s_d.get(), tau,
                                       dloss_d.get(), g_d.get());
        expect_close(g_d.host(), want_g, tol<T>(), "dstudent (accumulated)");
        // Deterministic: the same call gives the same bits.
        cuda_testing::gpu_kernels<T>().distill_loss_forward(kind, s.rows, s.cols, t_d.get(), s_d.get(), tau,
                                      loss_d.get());
        EXPECT_TRUE(same_bits(std::vector<T>{download_scalar(loss_d)}, std::vector<T>{got}));
      }
    }
  }
}

TEST(CudaLossKernels, DistillLossesMatchRef) {
  KD_REQUIRE_CUDA();
  check_distill<float>(false);
  check_distill<double>(false);
}

TEST(CudaLossKernels, DistillLossesWithTiedTeacherMaxima) {
  KD_REQUIRE_CUDA();
  check_distill<float>(true);
  check_distill<double>(true);
}

template <class T>
void check_ensemble() {
  uint64_t seed = 300;
  for (int members : {1, 3, 5}) {
    for (Shape s : kShapes) {
      SCOPED_TRACE(std::to_string(members) + " members " + shape_name(s));
      const size_t len = size_t(s.rows) * s.cols;
      auto x = uniform<T>(len * members, seed++, -7, 7), dy = uniform<T>(len, seed++, -1, 1);
      auto dx0 = uniform<T>(len * members, seed++, -1, 1);
      std::vector<T> y(len), dx = dx0;
      ref::ensemble_reduce_forward<T>(members, s.rows, s.cols, x.data(), y.data());
      ref::ensemble_reduce_backward<T>(members, s.rows, s.cols, x.data(), y.data(), dy.data(),
                                       dx.data());
      DeviceArray<T> x_d(x), y_d(std::vector<T>(len, T(7))), dy_d(dy), dx_d(dx0);
      cuda_testing::gpu_kernels<T>().ensemble_reduce_forward(members, s.rows, s.cols, x_d.get(), y_d.get());
      expect_close(y_d.host(), y, tol<T>(), "ensemble y");
      DeviceArray<T> y_ref(y);  // backward from the reference y, as ref:: used
      cuda_testing::gpu_kernels<T>().ensemble_reduce_backward(members, s.rows, s.cols, x_d.get(), y_ref.get(), dy_d.get(),
                                        dx_d.get());
      expect_close(dx_d.host(), dx, tol<T>(), "ensemble dx (accumulated)");
    }
  }
}

TEST(CudaLossKernels, EnsembleReduceMatchesRef) {
  KD_REQUIRE_CUDA();
  check_ensemble<float>();
  check_ensemble<double>();
}

// Backward accumulates (twice = two increments), forward assigns whatever the output held, and
// the upstream scalar is read from the device at run time.
TEST(CudaLossKernels, AccumulateAndDeviceScalarSemantics) {
  KD_REQUIRE_CUDA();
  const int rows = 9, cols = 13;
  auto x = uniform<double>(rows * cols, 400, -3, 3), t = uniform<double>(rows * cols, 401, -3, 3);
  auto labels = random_labels(rows, cols, 402);
  DeviceArray<double> x_d(x), t_d(t), g_d(rows * cols), dloss_d(std::vector<double>{1.0});
  DeviceArray<int32_t> l_d(labels);
  std::vector<double> once(rows * cols, 0.0);
  ref::cross_entropy_backward<double>(rows, cols, x.data(), labels.data(), kernel_testing::Scalar<double>{1.0}.ptr(), once.data());
  cuda_testing::gpu_kernels<double>().cross_entropy_backward(rows, cols, x_d.get(), l_d.get(), dloss_d.get(), g_d.get());
  cuda_testing::gpu_kernels<double>().cross_entropy_backward(rows, cols, x_d.get(), l_d.get(), dloss_d.get(), g_d.get());
  std::vector<double> twice = once;
  for (double& v : twice) v *= 2;
  expect_close(g_d.host(), twice, 1e-12, "two accumulations");

  DeviceArray<double> zero_d(std::vector<double>{0.0}), k_d(rows * cols);
  cuda_testing::gpu_kernels<double>().distill_loss_backward(DistillKind::kKL, rows, cols, t_d.get(), x_d.get(), 2.0,
                                      zero_d.get(), k_d.get());
  expect_close(k_d.host(), std::vector<double>(rows * cols, 0.0), 0, "dloss 0 adds nothing");

  // A bad label poisons that row's loss with NaN instead of reading out of bounds.
  std::vector<int32_t> bad = labels;
  bad[4] = cols;
  DeviceArray<int32_t> bad_d(bad);
  DeviceArray<double> loss_d(1);
  cuda_testing::gpu_kernels<double>().cross_entropy_forward(rows, cols, x_d.get(), bad_d.get(), loss_d.get());
  EXPECT_TRUE(std::isnan(download_scalar(loss_d)));
  EXPECT_THROW(cuda_testing::gpu_kernels<double>().distill_loss_forward(DistillKind::kKL, rows, cols, t_d.get(),
                                                  x_d.get(), 0.0, loss_d.get()),
               Error);
}

}  // namespace
}  // namespace kd
