// Tests of our convolution on TF32 tensor cores (--tf32: tf32_gemm_tile in
// kernels/cuda/conv2d.cu). The oracle is ref:: on the inputs rounded to TF32 as cvt.rna does it
// (kd::tf32_round): the tensor core multiplies those exactly and sums in float, so every pass
// must match it within float accumulation error (1e-4 relative to max(1, |want|), as the FMA
// kernel's tests). The bias, the residual and the dx/dw the passes accumulate into stay float.
// Also checked: the path really ran (unrounded ref differs by more than that tolerance on a
// large-K shape), --deterministic keeps it off (bitwise the FMA kernel), and the weight pass's
// split-K fold stays bitwise repeatable. 1x1 stride-1 shapes take the implicit GEMM too (the
// default route; the cuBLAS route's TF32 is cuBLAS's, covered by the cuBLAS tests).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/tf32.h"
#include "tests/cuda_testing.h"
#include "tests/kernel_testing.h"

namespace {

using kd::ConvGeom;
using kd::cuda_testing::DeviceArray;
using kd::cuda_testing::ScopedMathMode;
using kd::kernel_testing::conv_w_size;
using kd::kernel_testing::conv_x_size;
using kd::kernel_testing::conv_y_size;
using kd::kernel_testing::describe;
using kd::kernel_testing::expect_close;
using kd::kernel_testing::geom;
using kd::kernel_testing::same_bits;
using kd::kernel_testing::uniform;

constexpr double kTol = 1e-4;

// Odd sizes (partial M, N and K tiles; K not a multiple of 8), stride 2 and 3, padding 2, a
// 5x5 filter, uneven split-K, a 1x1 weight pass, and PreResNet layers.
const std::vector<ConvGeom> kAllShapes = {
    geom(1, 3, 7, 5, 5, 3, 3, 1, 1),     geom(2, 5, 6, 9, 7, 2, 3, 2, 0),
    geom(3, 7, 9, 8, 4, 5, 5, 1, 2),     geom(2, 2, 10, 11, 3, 3, 1, 3, 1),
    geom(3, 5, 13, 11, 67, 3, 3, 1, 1),  geom(2, 67, 9, 7, 70, 3, 3, 1, 1),
    geom(4, 16, 32, 32, 16, 3, 3, 1, 1), geom(4, 16, 32, 32, 32, 3, 3, 2, 1),
    geom(3, 64, 16, 16, 64, 3, 3, 1, 1), geom(2, 256, 8, 8, 64, 1, 1, 1, 0),
};
// The race check stops before the 67-channel, 70-filter shape (test_cuda_conv.cpp says why).
const std::vector<ConvGeom> kShapes = kd::kernel_testing::shapes_for_build(kAllShapes, 5);

std::vector<float> rounded(std::vector<float> v) {
  for (float& f : v) f = kd::tf32_round(f);
  return v;
}

const kd::KernelTable<float>& gpu() { return kd::cuda_testing::gpu_kernels<float>(); }

struct Inputs {
  std::vector<float> x, w, bias, res, dy, dx0, dw0, db0;
  explicit Inputs(const ConvGeom& g)
      : x(uniform<float>(conv_x_size(g), 1, -1, 1)),
        w(uniform<float>(conv_w_size(g), 2, -1, 1)),
        bias(uniform<float>(size_t(g.k), 3, -1, 1)),
        res(uniform<float>(conv_y_size(g), 8, -1, 1)),
        dy(uniform<float>(conv_y_size(g), 4, -1, 1)),
        dx0(uniform<float>(conv_x_size(g), 5, -1, 1)),
        dw0(uniform<float>(conv_w_size(g), 6, -1, 1)),
        db0(uniform<float>(size_t(g.k), 7, -1, 1)) {}
};

// Every pass of one shape on the device under the current math mode.
struct Results {
  std::vector<float> y, y_res, dx_acc, dx_set, dw, db;
  std::vector<float> both_dx, both_dw, both_db;  // conv2d_backward (device only)
};
Results run_passes(const ConvGeom& g, const Inputs& in) {
  DeviceArray<float> x(in.x), w(in.w), bias(in.bias), res(in.res), dy(in.dy);
  DeviceArray<float> y(std::vector<float>(conv_y_size(g), 777.f)), y_res(conv_y_size(g));
  DeviceArray<float> dx_acc(in.dx0), dw(in.dw0), db(in.db0);
  DeviceArray<float> dx_set(
      std::vector<float>(conv_x_size(g), std::numeric_limits<float>::quiet_NaN()));
  gpu().conv2d_forward(g, x.get(), w.get(), bias.get(), y.get());
  gpu().conv2d_forward_residual(g, x.get(), w.get(), res.get(), y_res.get());
  gpu().conv2d_backward_data(g, dy.get(), w.get(), dx_acc.get(), true);
  gpu().conv2d_backward_data(g, dy.get(), w.get(), dx_set.get(), false);
  gpu().conv2d_backward_weight(g, x.get(), dy.get(), dw.get(), db.get());
  DeviceArray<float> both_dx(in.dx0), both_dw(in.dw0), both_db(in.db0);
  gpu().conv2d_backward(g, x.get(), w.get(), dy.get(), both_dx.get(), true, both_dw.get(),
                        both_db.get());
  return {y.host(),  y_res.host(),   dx_acc.host(),  dx_set.host(), dw.host(),
          db.host(), both_dx.host(), both_dw.host(), both_db.host()};
}

// The same passes by ref:: on the host, from x, w and dy as given.
Results ref_passes(const ConvGeom& g, const Inputs& in, const std::vector<float>& x,
                   const std::vector<float>& w, const std::vector<float>& dy) {
  Results r{std::vector<float>(conv_y_size(g)), std::vector<float>(conv_y_size(g)), in.dx0,
            std::vector<float>(conv_x_size(g)), in.dw0, in.db0, {}, {}, {}};
  kd::ref::conv2d_forward(g, x.data(), w.data(), in.bias.data(), r.y.data());
  kd::ref::conv2d_forward_residual(g, x.data(), w.data(), in.res.data(), r.y_res.data());
  kd::ref::conv2d_backward_data(g, dy.data(), w.data(), r.dx_acc.data(), true);
  kd::ref::conv2d_backward_data(g, dy.data(), w.data(), r.dx_set.data(), false);
  kd::ref::conv2d_backward_weight(g, x.data(), dy.data(), r.dw.data(), r.db.data());
  return r;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])) /
                                std::max(1.0, std::abs(double(b[i]))));
  return worst;
}

TEST(CudaConvTf32, EveryPassMatchesRefOnTf32RoundedInputs) {
  KD_REQUIRE_CUDA();
  const ScopedMathMode tf32(false, true);
  for (const ConvGeom& g : kShapes) {
    const Inputs in(g);
    const Results got = run_passes(g, in);
    Results want = ref_passes(g, in, rounded(in.x), rounded(in.w), rounded(in.dy));
    want.db = ref_passes(g, in, in.x, in.w, in.dy).db;  // dbias sums dy in float, unrounded
    const std::string what = describe(g);
    expect_close(got.y, want.y, kTol, "tf32 forward " + what);
    expect_close(got.y_res, want.y_res, kTol, "tf32 forward + residual " + what);
    expect_close(got.dx_acc, want.dx_acc, kTol, "tf32 backward data " + what);
    expect_close(got.dx_set, want.dx_set, kTol, "tf32 backward data assigned " + what);
    expect_close(got.dw, want.dw, kTol, "tf32 backward weight " + what);
    expect_close(got.db, want.db, kTol, "tf32 dbias " + what);
    // Both passes in one launch: the separate passes' bits.
    EXPECT_TRUE(same_bits(got.both_dx, got.dx_acc)) << "tf32 conv2d_backward dx " << what;
    EXPECT_TRUE(same_bits(got.both_dw, got.dw)) << "tf32 conv2d_backward dw " << what;
    EXPECT_TRUE(same_bits(got.both_db, got.db)) << "tf32 conv2d_backward dbias " << what;
  }
}

// TF32 really rounded the operands: against unrounded ref every GEMM pass is off by more than
// float accumulation could explain (the inputs' 2^-11 rounding, summed over K = 144 products).
TEST(CudaConvTf32, TensorCoresRanAndRoundedTheOperands) {
  KD_REQUIRE_CUDA();
  const ScopedMathMode tf32(false, true);
  const ConvGeom g = geom(4, 16, 32, 32, 16, 3, 3, 1, 1);
  const Inputs in(g);
  const Results got = run_passes(g, in);
  const Results exact = ref_passes(g, in, in.x, in.w, in.dy);
  EXPECT_GT(max_rel_diff(got.y, exact.y), 3 * kTol) << "forward";
  EXPECT_GT(max_rel_diff(got.dx_set, exact.dx_set), 3 * kTol) << "backward data";
  EXPECT_GT(max_rel_diff(got.dw, exact.dw), 3 * kTol) << "backward weight";
  // ... and by less than TF32 rounding allows (relative error 2^-11 per operand).
  EXPECT_LT(max_rel_diff(got.y, exact.y), 3e-2) << "forward";
}

// --deterministic wins over --tf32 (as for cuBLAS and cuDNN): the FMA kernel's bits.
TEST(CudaConvTf32, DeterministicModeKeepsTheFmaKernel) {
  KD_REQUIRE_CUDA();
  const ConvGeom g = geom(2, 67, 9, 7, 70, 3, 3, 1, 1);
  const Inputs in(g);
  Results fp32, det;
  {
    const ScopedMathMode plain(false, false);
    fp32 = run_passes(g, in);
  }
  {
    const ScopedMathMode both(true, true);
    det = run_passes(g, in);
  }
  EXPECT_TRUE(same_bits(det.y, fp32.y));
  EXPECT_TRUE(same_bits(det.dx_acc, fp32.dx_acc));
  EXPECT_TRUE(same_bits(det.dw, fp32.dw));
}

// The weight pass's split-K fold keeps its fixed order on tensor cores: bitwise run to run.
TEST(CudaConvTf32, WeightPassIsBitwiseRepeatable) {
  KD_REQUIRE_CUDA();
  const ScopedMathMode tf32(false, true);
  const ConvGeom g = geom(3, 5, 13, 11, 67, 3, 3, 1, 1);  // several uneven split-K slices
  const Inputs in(g);
  const Results a = run_passes(g, in), b = run_passes(g, in);
  EXPECT_TRUE(same_bits(a.dw, b.dw));
  EXPECT_TRUE(same_bits(a.db, b.db));
  EXPECT_TRUE(same_bits(a.y, b.y));
}

}  // namespace
