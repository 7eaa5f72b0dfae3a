// The CPU's Winograd F(4x4, 3x3) convolution (kernels/cpu/conv2d_winograd.h) against ref:: run in
// double, which is the specification: forward (assign and accumulate, with and without bias),
// backward data through the transposed filters, and the weight gradient, on shapes that take every
// branch (ragged last tiles, 1x1 planes, one and two vectors of filters or channels, several tile
// blocks per image, several images per block, many weight-gradient groups). Also: cpu:: routes
// these shapes through Winograd and --cpu-conv gemm does not, and results are bitwise independent
// of the thread count and of the batch an image sits in.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/cpu/conv2d_winograd.h"
#include "tests/kernel_testing.h"

namespace {

using kd::ConvGeom;
using kd::cpu::ConvAlgorithm;
using kd::kernel_testing::describe;
using kd::kernel_testing::EngineThreading;
using kd::kernel_testing::geom;
using kd::kernel_testing::conv_w_size;
using kd::kernel_testing::conv_x_size;
using kd::kernel_testing::conv_y_size;
using kd::kernel_testing::ConvProblem;
using kd::kernel_testing::conv_problem;
using kd::kernel_testing::expect_bitwise;
using kd::kernel_testing::ScopedConvAlgorithm;

// Winograd rounds differently from a direct sum (about 1e-5 of the largest output in float); the
// GEMM path's own tests allow 1e-4.
constexpr double kTolerance = 3e-5;

const std::vector<ConvGeom> kShapes = {
    geom(3, 8, 5, 7, 24, 3, 3, 1, 1),     // ragged tiles; 24 filters and 8 channels: one vector
    geom(2, 16, 31, 30, 16, 3, 3, 1, 1),  // ragged 8x8 tiles
    geom(13, 64, 8, 8, 64, 3, 3, 1, 1),   // PreResNet's last stage: several images per block
    geom(2, 32, 1, 1, 8, 3, 3, 1, 1),     // a 1x1 plane: the tile is all padding but one pixel
    geom(3, 16, 32, 32, 32, 3, 3, 1, 1),  // two tile blocks per image
    geom(19, 8, 12, 4, 16, 3, 3, 1, 1),   // 16 weight-gradient groups of uneven sizes
};

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// max |got - want| <= tol * max(1, max |want|): Winograd's error scales with the largest value.
void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol,
                  const std::string& what) {
  kd::kernel_testing::expect_close_to_scale(got, want, tol, what);
}

TEST(ConvWinograd, AppliesToSameThreeByThreeWithChannelsInEights) {
  using kd::cpu::winograd::applies;
  EXPECT_TRUE(applies(geom(1, 16, 8, 8, 16, 3, 3, 1, 1)));
  EXPECT_TRUE(applies(geom(1, 8, 1, 1, 64, 3, 3, 1, 1)));
  EXPECT_TRUE(applies(geom(1, 64, 8, 8, 64, 3, 3, 1, 1)));
  EXPECT_FALSE(applies(geom(1, 64, 8, 8, 128, 3, 3, 1, 1)));  // VGG's wider layers keep GEMM
  EXPECT_FALSE(applies(geom(1, 3, 32, 32, 16, 3, 3, 1, 1)));   // the RGB stem
  EXPECT_FALSE(applies(geom(1, 16, 32, 32, 12, 3, 3, 1, 1)));  // 12 filters
  EXPECT_FALSE(applies(geom(1, 16, 32, 32, 32, 3, 3, 2, 1)));  // stride 2
  EXPECT_FALSE(applies(geom(1, 16, 32, 32, 32, 3, 3, 1, 0)));  // valid padding
  EXPECT_FALSE(applies(geom(1, 16, 32, 32, 32, 1, 1, 1, 0)));  // 1x1
  EXPECT_FALSE(applies(geom(1, 16, 28, 28, 16, 5, 5, 1, 2)));  // 5x5
}

TEST(ConvWinograd, ForwardMatchesRefInDouble) {
  EngineThreading threading;
  for (const ConvGeom& g : kShapes) {
    const ConvProblem p = conv_problem(g);
    std::vector<double> want(conv_y_size(g));
    kd::ref::conv2d_forward<double>(g, to_double(p.x).data(), to_double(p.w).data(),
                                    to_double(p.bias).data(), want.data());
    std::vector<float> y(conv_y_size(g), std::numeric_limits<float>::quiet_NaN());
    kd::cpu::winograd::forward(g, p.x.data(), p.w.data(), p.bias.data(), y.data(), false);
    expect_close(y, want, kTolerance, "forward " + describe(g));

    std::vector<double> want_nobias(conv_y_size(g));
    kd::ref::conv2d_forward<double>(g, to_double(p.x).data(), to_double(p.w).data(), nullptr,
                                    want_nobias.data());
    std::vector<float> acc = p.dy;  // any prefill; accumulate adds to it
    kd::cpu::winograd::forward(g, p.x.data(), p.w.data(), nullptr, acc.data(), true);
    for (size_t i = 0; i < want_nobias.size(); ++i) want_nobias[i] += p.dy[i];
    expect_close(acc, want_nobias, kTolerance, "forward accumulated " + describe(g));

    // cpu:: takes the Winograd path (the same bits), and the GEMM path when asked.
    std::vector<float> routed(conv_y_size(g));
    kd::cpu::conv2d_forward<float>(g, p.x.data(), p.w.data(), p.bias.data(), routed.data());
    expect_bitwise(routed, y, "cpu:: forward is Winograd " + describe(g));
    ScopedConvAlgorithm gemm(ConvAlgorithm::Gemm);
    std::vector<float> by_gemm(conv_y_size(g));
    kd::cpu::conv2d_forward<float>(g, p.x.data(), p.w.data(), p.bias.data(), by_gemm.data());
    expect_close(by_gemm, want, 1e-4, "gemm forward " + describe(g));
    EXPECT_NE(0, std::memcmp(by_gemm.data(), y.data(), y.size() * sizeof(float)))
        << "--cpu-conv gemm still ran Winograd: " << describe(g);
  }
}

TEST(ConvWinograd, BackwardDataAndWeightMatchRefInDouble) {
  EngineThreading threading;
  for (const ConvGeom& g : kShapes) {
    const ConvProblem p = conv_problem(g);
    const auto xd = to_double(p.x), wd = to_double(p.w), dyd = to_double(p.dy);
    std::vector<double> want_dx(conv_x_size(g), 0.0), want_dw(conv_w_size(g), 0.0), want_db(g.k, 0.0);
    kd::ref::conv2d_backward_data<double>(g, dyd.data(), wd.data(), want_dx.data(), false);
    kd::ref::conv2d_backward_weight<double>(g, xd.data(), dyd.data(), want_dw.data(),
                                            want_db.data());
    const std::string what = describe(g);

    std::vector<float> dx(conv_x_size(g), std::numeric_limits<float>::quiet_NaN());
    kd::cpu::conv2d_backward_data<float>(g, p.dy.data(), p.w.data(), dx.data(), false);
    expect_close(dx, want_dx, kTolerance, "dx assigned " + what);
    std::vector<float> dx_acc = p.x;
    kd::cpu::conv2d_backward_data<float>(g, p.dy.data(), p.w.data(), dx_acc.data(), true);
    std::vector<double> want_acc = want_dx;
    for (size_t i = 0; i < want_acc.size(); ++i) want_acc[i] += p.x[i];
    expect_close(dx_acc, want_acc, kTolerance, "dx accumulated " + what);

    // Backward data is the Winograd forward of dy with the flipped, transposed filters.
    std::vector<float> wt(conv_w_size(g));
    for (int k = 0; k < g.k; ++k)
      for (int c = 0; c < g.c; ++c)
        for (int i = 0; i < 9; ++i) wt[(size_t(c) * g.k + k) * 9 + 8 - i] = p.w[(size_t(k) * g.c + c) * 9 + i];
    const ConvGeom t = geom(g.n, g.k, g.h, g.w, g.c, 3, 3, 1, 1);
    std::vector<float> direct(conv_x_size(g));
    kd::cpu::winograd::forward(t, p.dy.data(), wt.data(), nullptr, direct.data(), false);
    expect_bitwise(dx, direct, "cpu:: backward data is Winograd " + what);

    std::vector<float> dw = p.w, db = p.bias;  // accumulates onto a prefill
    kd::cpu::conv2d_backward_weight<float>(g, p.x.data(), p.dy.data(), dw.data(), db.data());
    for (size_t i = 0; i < want_dw.size(); ++i) want_dw[i] += p.w[i];
    for (size_t i = 0; i < want_db.size(); ++i) want_db[i] += p.bias[i];
    expect_close(dw, want_dw, kTolerance, "dw " + what);
    expect_close(db, want_db, kTolerance, "dbias " + what);
    std::vector<float> dw_direct = p.w;
    kd::cpu::winograd::backward_weight(g, p.x.data(), p.dy.data(), dw_direct.data());
    expect_bitwise(dw, dw_direct, "cpu:: backward weight is Winograd " + what);
  }
}

TEST(ConvWinograd, BitwiseIndependentOfThreadsAndBatch) {
  EngineThreading threading;
  for (const ConvGeom& g : {geom(11, 16, 12, 12, 32, 3, 3, 1, 1), geom(23, 64, 8, 8, 64, 3, 3, 1, 1)}) {
    const ConvProblem p = conv_problem(g);
    std::vector<float> y[2], dw[2];
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      y[threads - 1].assign(conv_y_size(g), 0.f);
      dw[threads - 1].assign(conv_w_size(g), 0.f);
      kd::cpu::winograd::forward(g, p.x.data(), p.w.data(), p.bias.data(), y[threads - 1].data(),
                                 false);
      kd::cpu::winograd::backward_weight(g, p.x.data(), p.dy.data(), dw[threads - 1].data());
    }
    expect_bitwise(y[0], y[1], "forward, 1 vs 2 threads " + describe(g));
    expect_bitwise(dw[0], dw[1], "weight gradient, 1 vs 2 threads " + describe(g));
    // Images 3.. on their own give the same bits as inside the whole batch.
    ConvGeom sub = g;
    sub.n = g.n - 3;
    const size_t in = size_t(g.c) * g.h * g.w, out = size_t(g.k) * g.h * g.w;
    std::vector<float> ys(conv_y_size(sub));
    kd::cpu::winograd::forward(sub, p.x.data() + 3 * in, p.w.data(), p.bias.data(), ys.data(),
                               false);
    expect_bitwise(ys, std::vector<float>(y[0].begin() + 3 * out, y[0].end()),
                   "forward of a sub-batch " + describe(g));
  }
}

}  // namespace
