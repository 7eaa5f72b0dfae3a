// Tests for the cuDNN paths: kernels/cudnn/conv2d.cu and kernels/cudnn/batchnorm.cu.
// Host, every build (CudnnAlgoPolicy): the algorithm-selection rule of kernels/cudnn/algo_policy.h
// on made-up heuristic lists (order kept, determinism, no TF32 when it is off, no down-conversion).
// Device (CudaCudnn*): conv forward / backward data / backward weight against ref:: and against
// the native cuda:: convolution on awkward shapes (batch 1, odd channels, stride 2, pad 0/1,
// non-square), forward assignment over garbage, backward accumulation into prefilled gradients;
// deterministic mode giving bitwise-equal repeated backward passes; the TF32 path; batch norm
// against ref:: (outputs, saved statistics, PyTorch running statistics with the unbiased
// variance, one or both running buffers absent, eval, accumulating backward, and a backward
// that must use the saved statistics it is given).
// Tolerances: double 1e-10; float 1e-4 relative with TF32 off (CUDNN_FMA_MATH): sums of at most a
// few hundred FP32 products of values in [-1, 1], where even Winograd/FFT algorithms stay near
// 1e-5; TF32 would round inputs to 10 bits and is tested apart at 2e-2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/cudnn/algo_policy.h"
#include "kernels/normalization.h"
#include "tests/kernel_testing.h"
#include "tests/cuda_testing.h"

namespace kd {
namespace {

using namespace kernel_testing;
namespace policy = cudnn::algo_policy;

policy::Candidate cand(int algo, bool supported, bool deterministic, policy::Math math) {
  policy::Candidate c;
  c.algo = algo;
  c.supported = supported;
  c.deterministic = deterministic;
  c.math = math;
  return c;
}

TEST(CudnnAlgoPolicy, DescriptorMathFollowsMathMode) {
  using M = policy::Math;
  EXPECT_EQ(policy::descriptor_math(false, false, false), M::fma);
  EXPECT_EQ(policy::descriptor_math(false, true, false), M::default_math);  // TF32 allowed
  EXPECT_EQ(policy::descriptor_math(false, true, true), M::fma);  // deterministic: no TF32
  EXPECT_EQ(policy::descriptor_math(true, false, false), M::default_math);
  EXPECT_EQ(policy::descriptor_math(true, true, true), M::default_math);
}

TEST(CudnnAlgoPolicy, KeepsCudnnOrderAndFiltersByRequest) {
  using M = policy::Math;
  const std::vector<policy::Candidate> list = {
      cand(5, false, true, M::fma),                        // unsupported
      cand(0, true, false, M::fma),                        // non-deterministic
      cand(6, true, true, M::tensor_op),                   // TF32 tensor cores
      cand(7, true, true, M::tensor_op_allow_conversion),  // may down-convert
      cand(1, true, true, M::default_math),
      cand(3, true, true, M::fma)};
  policy::Request fp32;  // tf32 off, not deterministic
  fp32.descriptor_math = M::fma;
  EXPECT_EQ(policy::ordered_choices(list, fp32), (std::vector<int>{1, 4, 5}));
  policy::Request det = fp32;
  det.deterministic = true;
  EXPECT_EQ(policy::ordered_choices(list, det), (std::vector<int>{4, 5}));
  policy::Request tf32;
  tf32.descriptor_math = M::default_math;
  EXPECT_EQ(policy::ordered_choices(list, tf32), (std::vector<int>{1, 2, 4, 5}));
  // Without TF32 every choice runs as FMA; with it a tensor-op entry keeps its tensor cores.
  EXPECT_EQ(policy::execution_math(list[4], fp32), M::fma);
  EXPECT_EQ(policy::execution_math(list[2], tf32), M::tensor_op);
  EXPECT_EQ(policy::execution_math(list[5], tf32), M::default_math);
  EXPECT_TRUE(policy::ordered_choices({cand(0, true, false, M::fma)}, det).empty());
}

using cuda_testing::DeviceArray;

using cuda_testing::ScopedMathMode;

// {n, c, h, w, k, r, s, stride, pad}
const ConvGeom kConvGeoms[] = {
    {1, 3, 7, 5, 4, 3, 3, 1, 1},     // batch 1, odd channels, non-square
    {2, 5, 9, 9, 3, 3, 3, 2, 0},     // stride 2, pad 0
    {3, 1, 8, 6, 7, 5, 5, 2, 1},     // one input channel, 5x5, stride 2, pad 1
    {2, 16, 12, 12, 8, 1, 1, 1, 0},  // 1x1
    {4, 6, 14, 14, 16, 5, 5, 1, 0},  // LeNet's second layer
    {2, 3, 3, 3, 2, 3, 3, 1, 0}};    // 1x1 output

std::string label(const ConvGeom& g) {
  return "n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) + " h=" + std::to_string(g.h) +
         " w=" + std::to_string(g.w) + " k=" + std::to_string(g.k) + " r=" +
         std::to_string(g.r) + " s=" + std::to_string(g.s) + " stride=" +
         std::to_string(g.stride) + " pad=" + std::to_string(g.pad);
}

struct ConvSizes {
  size_t x, w, y;
  explicit ConvSizes(const ConvGeom& g)
      : x(size_t(g.n) * g.c * g.h * g.w),
        w(size_t(g.k) * g.c * g.r * g.s),
        y(size_t(g.n) * g.k * g.p() * g.q()) {}
};

// Runs the three passes of one implementation (cudnn:: or cuda::) from the same prefilled buffers.
template <class T, class Forward, class BackData, class BackWeight>
void run_conv(const ConvGeom& g, uint64_t seed, Forward fwd, BackData bwd_data,
              BackWeight bwd_weight, std::vector<T>* y, std::vector<T>* dx, std::vector<T>* dw,
              std::vector<T>* db, std::vector<T>* dx_assigned) {
  const ConvSizes n(g);
  DeviceArray<T> x(uniform<T>(n.x, seed, -1, 1)), w(uniform<T>(n.w, seed + 1, -1, 1));
  DeviceArray<T> bias(uniform<T>(g.k, seed + 2, -1, 1)), dy(uniform<T>(n.y, seed + 3, -1, 1));
  DeviceArray<T> d_y(uniform<T>(n.y, seed + 4, 50, 60));  // forward must overwrite it
  DeviceArray<T> d_dx(uniform<T>(n.x, seed + 5, -1, 1)), d_dw(uniform<T>(n.w, seed + 6, -1, 1));
  DeviceArray<T> d_db(uniform<T>(g.k, seed + 7, -1, 1));
  fwd(g, x.get(), w.get(), bias.get(), d_y.get());
  bwd_data(g, dy.get(), w.get(), d_dx.get(), true);
  DeviceArray<T> d_dx_set(std::vector<T>(n.x, T(NAN)));  // assigned: the NaN is never read
  bwd_data(g, dy.get(), w.get(), d_dx_set.get(), false);
  *dx_assigned = d_dx_set.host();
  bwd_weight(g, x.get(), dy.get(), d_dw.get(), d_db.get());
  *y = d_y.host();
  *dx = d_dx.host();
  *dw = d_dw.host();
  *db = d_db.host();
}

template <class T>
void check_conv(double tol) {
  uint64_t seed = 8000;
  for (const ConvGeom& g : kConvGeoms) {
    SCOPED_TRACE(label(g));
    seed += 10;
    const ConvSizes n(g);
    auto x = uniform<T>(n.x, seed, -1, 1), w = uniform<T>(n.w, seed + 1, -1, 1);
    auto bias = uniform<T>(g.k, seed + 2, -1, 1), dy = uniform<T>(n.y, seed + 3, -1, 1);
    std::vector<T> y_ref(n.y), dx_ref = uniform<T>(n.x, seed + 5, -1, 1);
    std::vector<T> dw_ref = uniform<T>(n.w, seed + 6, -1, 1);
    std::vector<T> db_ref = uniform<T>(g.k, seed + 7, -1, 1);
    ref::conv2d_forward<T>(g, x.data(), w.data(), bias.data(), y_ref.data());
    ref::conv2d_backward_data<T>(g, dy.data(), w.data(), dx_ref.data(), true);
    ref::conv2d_backward_weight<T>(g, x.data(), dy.data(), dw_ref.data(), db_ref.data());

    std::vector<T> dx_set_ref(n.x);
    ref::conv2d_backward_data<T>(g, dy.data(), w.data(), dx_set_ref.data(), false);
    std::vector<T> y, dx, dw, db, y_nat, dx_nat, dw_nat, db_nat, dx_set, dx_set_nat;
    run_conv<T>(g, seed, cuda_testing::cudnn_kernels<T>().conv2d_forward, cuda_testing::cudnn_kernels<T>().conv2d_backward_data,
                cuda_testing::cudnn_kernels<T>().conv2d_backward_weight, &y, &dx, &dw, &db, &dx_set);
    run_conv<T>(g, seed, cuda_testing::gpu_kernels<T>().conv2d_forward, cuda_testing::gpu_kernels<T>().conv2d_backward_data,
                cuda_testing::gpu_kernels<T>().conv2d_backward_weight, &y_nat, &dx_nat, &dw_nat, &db_nat,
                &dx_set_nat);
    expect_close(dx_set, dx_set_ref, tol, "cudnn dx (assigned) vs ref");
    expect_close(dx_set_nat, dx_set_ref, tol, "native dx (assigned) vs ref");
    expect_close(y, y_ref, tol, "cudnn forward vs ref");
    expect_close(dx, dx_ref, tol, "cudnn dx (accumulated) vs ref");
    expect_close(dw, dw_ref, tol, "cudnn dw (accumulated) vs ref");
    expect_close(db, db_ref, tol, "cudnn dbias (accumulated) vs ref");
    expect_close(y, y_nat, tol, "cudnn forward vs native");
    expect_close(dx, dx_nat, tol, "cudnn dx vs native");
    expect_close(dw, dw_nat, tol, "cudnn dw vs native");
    expect_close(db, db_nat, tol, "cudnn dbias vs native");
  }
}

TEST(CudaCudnnConv, FloatMatchesRefAndNative) {
  KD_REQUIRE_CUDA();
  if (!cuda_testing::gpu().has_cudnn) GTEST_SKIP() << "the GPU backend was built without cuDNN";
  ScopedMathMode fp32(false, false);
  check_conv<float>(1e-4);
}

TEST(CudaCudnnConv, DoubleMatchesRefAndNative) {
  KD_REQUIRE_CUDA();
  if (!cuda_testing::gpu().has_cudnn) GTEST_SKIP() << "the GPU backend was built without cuDNN";
  check_conv<double>(1e-10);
}

// A shape big enough that the fastest backward algorithms would be the atomics-based ones.
// Launches per cuDNN-path call, as kernels/cudnn/ issues them: a cuDNN call each, plus our kernel
// for what cuDNN does not do (the residual add, the bias gradient, batchnorm's ReLU) and the
// bias add as a second cuDNN call. On a GPU this counts the real path; on the grid emulator it
// holds the emulated path to the same structure, so its launch counts and graph nodes are the
// real ones.
TEST(CudaCudnnConv, LaunchesPerCallAreTheRealPathsOnes) {
  KD_REQUIRE_CUDA();
  if (!cuda_testing::gpu().has_cudnn) GTEST_SKIP() << "the GPU backend was built without cuDNN";
  const auto& k = cuda_testing::cudnn_kernels<float>();
  const ConvGeom g = kernel_testing::geom(2, 3, 6, 6, 4, 3, 3, 1, 1);
  const ConvSizes n(g);
  DeviceArray<float> x(uniform<float>(n.x, 1, -1, 1)), w(uniform<float>(n.w, 2, -1, 1)),
      bias(uniform<float>(size_t(g.k), 3, -1, 1)), res(uniform<float>(n.y, 4, -1, 1)), y(n.y),
      y_res(n.y), dy(uniform<float>(n.y, 5, -1, 1)), dx(n.x), dw(n.w), db(size_t(g.k));
  auto launches = [](const std::function<void()>& call) {
    const uint64_t before = cuda_testing::gpu().launch_count();
    call();
    cuda_testing::gpu().synchronize();
    return cuda_testing::gpu().launch_count() - before;
  };
  EXPECT_EQ(launches([&] { k.conv2d_forward(g, x.get(), w.get(), nullptr, y.get()); }), 1u);
  EXPECT_EQ(launches([&] { k.conv2d_forward(g, x.get(), w.get(), bias.get(), y.get()); }), 2u);
  auto residual = [&] { k.conv2d_forward_residual(g, x.get(), w.get(), res.get(), y_res.get()); };
  // Uncounted: the fold's first call zeroes its bias buffer (a memset, once per process).
  residual();
  EXPECT_EQ(launches(residual), 1u) << "the residual folded into cuDNN's call (the default)";
  const std::vector<float> folded = y_res.host();
  {
    const cuda_testing::ScopedEnv fold("KDLAB_CUDNN_RESIDUAL", "fold");
    EXPECT_EQ(launches(residual), 1u);
  }
  {
    const cuda_testing::ScopedEnv bad("KDLAB_CUDNN_RESIDUAL", "fused");
    try {
      residual();
      ADD_FAILURE() << "no error";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(
                    "KDLAB_CUDNN_RESIDUAL: expected separate or fold, got 'fused'"),
                std::string::npos)
          << e.what();
    }
  }
  {
    const cuda_testing::ScopedEnv separate("KDLAB_CUDNN_RESIDUAL", "separate");
    EXPECT_EQ(launches(residual), 2u) << "cuDNN's convolution, then our add";
  }
  {  // double has no fused configuration: always the two launches
    DeviceArray<double> xd(uniform<double>(n.x, 1, -1, 1)), wd(uniform<double>(n.w, 2, -1, 1)),
        rd(uniform<double>(n.y, 4, -1, 1)), yd(n.y);
    EXPECT_EQ(launches([&] {
                cuda_testing::cudnn_kernels<double>().conv2d_forward_residual(
                    g, xd.get(), wd.get(), rd.get(), yd.get());
              }),
              2u);
  }
  EXPECT_EQ(launches([&] { k.conv2d_backward_data(g, dy.get(), w.get(), dx.get(), false); }), 1u);
  EXPECT_EQ(launches([&] { k.conv2d_backward_weight(g, x.get(), dy.get(), dw.get(), nullptr); }),
            1u);
  EXPECT_EQ(launches([&] { k.conv2d_backward_weight(g, x.get(), dy.get(), dw.get(), db.get()); }),
            2u);
  // The residual path's values: the bias-free convolution plus the residual, bit for bit when
  // separate (y_res holds the last separate call's); folded, cuDNN's own algorithm rounds it.
  k.conv2d_forward(g, x.get(), w.get(), nullptr, y.get());
  const std::vector<float> plain = y.host(), r = res.host(), separate = y_res.host();
  for (size_t i = 0; i < plain.size(); ++i) {
    ASSERT_EQ(separate[i], plain[i] + r[i]) << i;
    ASSERT_NEAR(folded[i], plain[i] + r[i], 1e-5f * (1.f + std::fabs(plain[i] + r[i]))) << i;
  }

  const NormGeom bn{2, 3, 20};
  const size_t len = size_t(bn.n) * bn.c * bn.hw;
  DeviceArray<float> bx(uniform<float>(len, 6, -1, 1)), gamma(std::vector<float>(3, 1.f)),
      beta(std::vector<float>(3, 0.f)), by(len), m(3), s(3), bdx(len), dg(3), dbeta(3);
  const auto& kb = cuda_testing::cudnn_kernels<float>();
  // cuDNN has neither a fused ReLU nor a batch count: one launch of ours does either or both.
  DeviceArray<int64_t> tracked(std::vector<int64_t>{0});
  for (bool relu : {false, true})
    for (bool count : {false, true})
      EXPECT_EQ(launches([&] {
                  kb.batchnorm_forward_train(bn, bx.get(), gamma.get(), beta.get(), 1e-5f, 0.1f,
                                             by.get(), m.get(), s.get(), nullptr, nullptr,
                                             count ? tracked.get() : nullptr, relu);
                }),
                1u + (relu || count))
          << "relu " << relu << ", counted " << count;
  EXPECT_EQ(tracked.host()[0], 2) << "num_batches_tracked";
  EXPECT_EQ(launches([&] {
              kb.batchnorm_backward_train(bn, bx.get(), by.get(), gamma.get(), m.get(), s.get(),
                                          bdx.get(), dg.get(), dbeta.get(), false, nullptr);
            }),
            1u);
}

TEST(CudaCudnnConv, DeterministicBackwardIsBitwiseRepeatable) {
  KD_REQUIRE_CUDA();
  if (!cuda_testing::gpu().has_cudnn) GTEST_SKIP() << "the GPU backend was built without cuDNN";
  ScopedMathMode det(true, true);  // tf32 requested, deterministic wins
  const ConvGeom g{16, 32, 16, 16, 32, 3, 3, 1, 1};
  const ConvSizes n(g);
  DeviceArray<float> x(uniform<float>(n.x, 8100, -1, 1)), w(uniform<float>(n.w, 8101, -1, 1));
  DeviceArray<float> dy(uniform<float>(n.y, 8102, -1, 1));
  std::vector<float> dw_first, dx_first, db_first;
  for (int run = 0; run < 3; ++run) {
    DeviceArray<float> dw(n.w), dx(n.x), db(g.k);
    cuda_testing::cudnn_kernels<float>().conv2d_backward_weight(g, x.get(), dy.get(), dw.get(), db.get());
    cuda_testing::cudnn_kernels<float>().conv2d_backward_data(g, dy.get(), w.get(), dx.get(), true);
    if (run == 0) {
      dw_first = dw.host();
      dx_first = dx.host();
      db_first = db.host();
      continue;
    }
    EXPECT_TRUE(same_bits(dw.host(), dw_first)) << "dw differs in run " << run;
    EXPECT_TRUE(same_bits(dx.host(), dx_first)) << "dx differs in run " << run;
    EXPECT_TRUE(same_bits(db.host(), db_first)) << "dbias differs in run " << run;
  }
  std::vector<float> dw_ref(n.w), db_ref(g.k);
  ref::conv2d_backward_weight<float>(g, uniform<float>(n.x, 8100, -1, 1).data(),
                                     uniform<float>(n.y, 8102, -1, 1).data(), dw_ref.data(),
                                     db_ref.data());
  // Against the largest |dw|: a Winograd algorithm (cuDNN's, or the CPU's the emulator runs)
  // errs by a fraction of it even on small elements.
  kernel_testing::expect_close_to_scale(dw_first, dw_ref, 1e-4, "deterministic dw vs ref");
}

// Only that the TF32 path runs and stays within TF32 rounding.
TEST(CudaCudnnConv, Tf32ModeStaysWithinTf32Rounding) {
  KD_REQUIRE_CUDA();
  if (!cuda_testing::gpu().has_cudnn) GTEST_SKIP() << "the GPU backend was built without cuDNN";
  ScopedMathMode tf32(false, true);
  const ConvGeom g{4, 6, 14, 14, 16, 5, 5, 1, 0};
  const ConvSizes n(g);
  auto x = uniform<float>(n.x, 8200, -1, 1), w = uniform<float>(n.w, 8201, -1, 1);
  std::vector<float> y_ref(n.y);
  ref::conv2d_forward<float>(g, x.data(), w.data(), nullptr, y_ref.data());
  DeviceArray<float> d_x(x), d_w(w), d_y(n.y);
  cuda_testing::cudnn_kernels<float>().conv2d_forward(g, d_x.get(), d_w.get(), nullptr, d_y.get());
  expect_close(d_y.host(), y_ref, 2e-2, "tf32 forward");
}

// {n, c, hw}: batch 1, hw 1, odd channels, offset means.
const NormGeom kBnGeoms[] = {{1, 3, 5}, {2, 7, 1}, {5, 16, 33}, {6, 19, 7}, {3, 5, 64}};

template <class T>
void check_batchnorm(double tol) {
  uint64_t seed = 9000;
  for (const NormGeom& g : kBnGeoms) {
    SCOPED_TRACE("n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) +
                 " hw=" + std::to_string(g.hw));
    seed += 20;
    const size_t len = size_t(g.n) * g.c * g.hw;
    auto x = uniform<T>(len, seed, 1, 5), dy = uniform<T>(len, seed + 1, -1, 1);
    auto gamma = uniform<T>(g.c, seed + 2, 0.5, 1.5), beta = uniform<T>(g.c, seed + 3, -1, 1);
    auto rm0 = uniform<T>(g.c, seed + 4, -1, 1), rv0 = uniform<T>(g.c, seed + 5, 0.5, 2);
    const T eps = T(1e-3), momentum = T(0.1);  // eps large enough to matter

    std::vector<T> y(len), mean(g.c), invstd(g.c), rm = rm0, rv = rv0;
    ref::batchnorm_forward_train<T>(g, x.data(), gamma.data(), beta.data(), eps, momentum,
                                    y.data(), mean.data(), invstd.data(), rm.data(), rv.data(),
                                    nullptr, false);
    DeviceArray<T> d_x(x), d_dy(dy), d_gamma(gamma), d_beta(beta), d_rm(rm0), d_rv(rv0);
    DeviceArray<T> d_y(uniform<T>(len, seed + 6, 50, 60)), d_mean(g.c), d_invstd(g.c);
    cuda_testing::cudnn_kernels<T>().batchnorm_forward_train(g, d_x.get(), d_gamma.get(), d_beta.get(), eps, momentum,
                                      d_y.get(), d_mean.get(), d_invstd.get(), d_rm.get(),
                                      d_rv.get(), nullptr, false);
    expect_close(d_y.host(), y, tol, "train y");
    expect_close(d_mean.host(), mean, tol, "save_mean");
    expect_close(d_invstd.host(), invstd, tol, "save_invstd = 1/sqrt(var + eps)");
    expect_close(d_rm.host(), rm, tol, "running_mean");
    expect_close(d_rv.host(), rv, tol, "running_var (unbiased)");

    // Running buffers absent: both, or only the variance (cuDNN needs a partner for the mean).
    std::vector<T> rm_only = rm0, unused_mean(g.c), unused_invstd(g.c), y2(len);
    ref::batchnorm_forward_train<T>(g, x.data(), gamma.data(), beta.data(), eps, momentum,
                                    y2.data(), unused_mean.data(), unused_invstd.data(),
                                    rm_only.data(), nullptr, nullptr, false);
    DeviceArray<T> d_rm_only(rm0), d_y2(len);
    cuda_testing::cudnn_kernels<T>().batchnorm_forward_train(g, d_x.get(), d_gamma.get(), d_beta.get(), eps, momentum,
                                      d_y2.get(), d_mean.get(), d_invstd.get(), d_rm_only.get(),
                                      nullptr, nullptr, false);
    expect_close(d_rm_only.host(), rm_only, tol, "running_mean alone");
    cuda_testing::cudnn_kernels<T>().batchnorm_forward_train(g, d_x.get(), d_gamma.get(), d_beta.get(), eps, momentum,
                                      d_y2.get(), d_mean.get(), d_invstd.get(), nullptr, nullptr,
                                      nullptr, false);
    expect_close(d_y2.host(), y, tol, "train y without running buffers");

    std::vector<T> y_eval(len);
    ref::batchnorm_forward_eval<T>(g, x.data(), gamma.data(), beta.data(), rm0.data(),
                                   rv0.data(), eps, y_eval.data());
    DeviceArray<T> d_rm0(rm0), d_rv0(rv0), d_y_eval(uniform<T>(len, seed + 7, 50, 60));
    cuda_testing::cudnn_kernels<T>().batchnorm_forward_eval(g, d_x.get(), d_gamma.get(), d_beta.get(), d_rm0.get(),
                                     d_rv0.get(), eps, d_y_eval.get());
    expect_close(d_y_eval.host(), y_eval, tol, "eval y");

    // Backward accumulates, from the ref's saved statistics, and from deliberately wrong ones:
    // both must agree with ref::, which proves cuDNN uses what it is given.
    for (double scale : {1.0, 1.5}) {
      std::vector<T> istd = invstd;
      for (T& v : istd) v = T(v * scale);
      auto dx = uniform<T>(len, seed + 8, -1, 1), dg = uniform<T>(g.c, seed + 9, -1, 1);
      auto db = uniform<T>(g.c, seed + 10, -1, 1);
      DeviceArray<T> d_dx(dx), d_dg(dg), d_db(db), d_m(mean), d_istd(istd);
      ref::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), mean.data(),
                                       istd.data(), dx.data(), dg.data(), db.data(), true, nullptr);
      cuda_testing::cudnn_kernels<T>().batchnorm_backward_train(g, d_x.get(), d_dy.get(), d_gamma.get(), d_m.get(),
                                         d_istd.get(), d_dx.get(), d_dg.get(), d_db.get(), true, nullptr);
      const std::string what = scale == 1.0 ? " (saved stats)" : " (scaled invstd)";
      expect_close(d_dx.host(), dx, tol, "dx accumulated" + what);
      expect_close(d_dg.host(), dg, tol * 10, "dgamma accumulated" + what);
      expect_close(d_db.host(), db, tol * 10, "dbeta accumulated" + what);
      // Assigned dx (beta 0): NaN in the buffer must not leak through.
      std::vector<T> dx_set(len), dg2 = dg, db2 = db;
      ref::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), mean.data(),
                                       istd.data(), dx_set.data(), dg2.data(), db2.data(), false, nullptr);
      DeviceArray<T> d_dx_set(std::vector<T>(len, T(NAN)));
      cuda_testing::cudnn_kernels<T>().batchnorm_backward_train(
          g, d_x.get(), d_dy.get(), d_gamma.get(), d_m.get(), d_istd.get(), d_dx_set.get(),
          d_dg.get(), d_db.get(), false, nullptr);
      expect_close(d_dx_set.host(), dx_set, tol, "dx assigned" + what);
    }
  }
}

TEST(CudaCudnnBatchNorm, FloatMatchesRef) {
  KD_REQUIRE_CUDA();
  if (!cuda_testing::gpu().has_cudnn) GTEST_SKIP() << "the GPU backend was built without cuDNN";
  check_batchnorm<float>(1e-4);
}

// cuDNN's batchnorm has no fused ReLU: with relu the table runs ours after it; a fused ReLU's
// backward is refused (the op masks dy itself).
TEST(CudaCudnnBatchNorm, ReluForwardMatchesRefAndFusedBackwardIsRefused) {
  KD_REQUIRE_CUDA();
  if (!cuda_testing::gpu().has_cudnn) GTEST_SKIP() << "the GPU backend was built without cuDNN";
  const NormGeom g{4, 3, 50};
  const size_t len = size_t(g.n) * g.c * g.hw;
  auto x = uniform<float>(len, 71, -1, 3), gamma = uniform<float>(g.c, 72, 0.5, 1.5),
       beta = uniform<float>(g.c, 73, -1, 1);
  std::vector<float> y(len), m(g.c), s(g.c);
  ref::batchnorm_forward_train<float>(g, x.data(), gamma.data(), beta.data(), 1e-5f, 0.1f,
                                      y.data(), m.data(), s.data(), nullptr, nullptr, nullptr,
                                      true);
  DeviceArray<float> d_x(x), d_gamma(gamma), d_beta(beta), d_y(len), d_m(g.c), d_s(g.c),
      d_dx(len), d_dg(g.c), d_db(g.c);
  cuda_testing::cudnn_kernels<float>().batchnorm_forward_train(
      g, d_x.get(), d_gamma.get(), d_beta.get(), 1e-5f, 0.1f, d_y.get(), d_m.get(), d_s.get(),
      nullptr, nullptr, nullptr, true);
  expect_close(d_y.host(), y, 1e-4, "cudnn batchnorm + relu forward");
  // With the batch count, the same launch (relu_forward_and_count) also adds one to it.
  DeviceArray<float> d_y2(len);
  DeviceArray<int64_t> tracked(std::vector<int64_t>{5});
  cuda_testing::cudnn_kernels<float>().batchnorm_forward_train(
      g, d_x.get(), d_gamma.get(), d_beta.get(), 1e-5f, 0.1f, d_y2.get(), d_m.get(), d_s.get(),
      nullptr, nullptr, tracked.get(), true);
  EXPECT_TRUE(kernel_testing::same_bits(d_y2.host(), d_y.host())) << "counted relu's output";
  EXPECT_EQ(tracked.host()[0], 6);
  EXPECT_THROW(cuda_testing::cudnn_kernels<float>().batchnorm_backward_train(
                   g, d_x.get(), d_y.get(), d_gamma.get(), d_m.get(), d_s.get(), d_dx.get(),
                   d_dg.get(), d_db.get(), false, d_y.get()),
               Error);
}

TEST(CudaCudnnBatchNorm, DoubleMatchesRef) {
  KD_REQUIRE_CUDA();
  if (!cuda_testing::gpu().has_cudnn) GTEST_SKIP() << "the GPU backend was built without cuDNN";
  check_batchnorm<double>(1e-10);
}

}  // namespace
}  // namespace kd
