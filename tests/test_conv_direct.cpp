// The CPU's direct convolution vectorised across the filters (kernels/cpu/conv2d_direct.h) against
// ref:: run in double, which is the specification: forward (with and without bias), backward data
// (assigned and accumulated) and the weight gradient, on shapes that take every branch (the row forward below 64 taps with every filter
// group size, the filter-vector forward above with one and two filter vectors and several tile
// widths, ragged last tiles, a plane narrower than a tile, non-square filters and padding, one
// filter, 16 uneven weight-gradient groups, the longest tap list). Also: cpu:: routes these shapes through it
// and --cpu-conv gemm does not, and results are bitwise independent of the thread count and of the
// batch an image sits in.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/cpu/conv2d_direct.h"
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

// A float sum over at most 512 taps, against double: within a few 1e-6 of the largest value.
constexpr double kTolerance = 1e-5;

const std::vector<ConvGeom> kShapes = {
    geom(5, 1, 28, 28, 6, 5, 5, 1, 2),    // LeNet-5's first layer: 6 filters, 14-pixel tiles
    geom(3, 6, 14, 14, 16, 5, 5, 1, 0),   // its second: two filter vectors, 5-pixel tiles
    geom(2, 3, 32, 32, 16, 3, 3, 1, 1),   // the RGB stem
    geom(19, 2, 5, 9, 9, 3, 2, 1, 1),     // 9 filters, a 3x2 filter, 16 uneven groups
    geom(4, 56, 6, 6, 1, 3, 3, 1, 0),     // one filter, 504 taps
    geom(2, 4, 3, 3, 12, 2, 2, 1, 3),     // a plane narrower than any tile, padding past r
    geom(3, 5, 11, 17, 8, 5, 3, 1, 2),    // 8 filters, 15 outputs a row: 8-pixel tiles, ragged
    geom(2, 2, 9, 12, 14, 1, 4, 1, 0),    // 1x4 filters, 14 filters in row groups of 6, 6, 2
    geom(2, 8, 6, 14, 16, 3, 3, 1, 0),    // 72 taps, 12 outputs a row: 6-pixel filter tiles
    geom(2, 3, 30, 30, 5, 5, 5, 1, 1),    // 75 taps, 5 filters, 28 outputs a row: 14-pixel tiles
};

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

TEST(ConvDirect, AppliesToStrideOneLayersWithFewFilters) {
  using kd::cpu::direct::applies;
  EXPECT_TRUE(applies(geom(1, 1, 28, 28, 6, 5, 5, 1, 2)));
  EXPECT_TRUE(applies(geom(1, 6, 14, 14, 16, 5, 5, 1, 0)));
  EXPECT_TRUE(applies(geom(1, 3, 32, 32, 16, 3, 3, 1, 1)));
  EXPECT_TRUE(applies(geom(1, 256, 4, 4, 1, 1, 2, 1, 0)));  // 512 taps
  EXPECT_FALSE(applies(geom(1, 6, 14, 14, 17, 5, 5, 1, 0)));  // 17 filters: GEMM rows enough
  EXPECT_FALSE(applies(geom(1, 3, 32, 32, 16, 3, 3, 2, 1)));  // stride 2
  EXPECT_FALSE(applies(geom(1, 16, 8, 8, 16, 1, 1, 1, 0)));   // 1x1: a GEMM with no im2col
  EXPECT_FALSE(applies(geom(1, 57, 8, 8, 16, 3, 3, 1, 1)));   // 513 taps
}

TEST(ConvDirect, ForwardMatchesRefInDouble) {
  EngineThreading threading;
  for (const ConvGeom& g : kShapes) {
    ASSERT_TRUE(kd::cpu::direct::applies(g)) << describe(g);
    const ConvProblem p = conv_problem(g);
    for (bool with_bias : {true, false}) {
      const float* bias = with_bias ? p.bias.data() : nullptr;
      std::vector<double> want(conv_y_size(g));
      const std::vector<double> bd = to_double(p.bias);
      kd::ref::conv2d_forward<double>(g, to_double(p.x).data(), to_double(p.w).data(),
                                      with_bias ? bd.data() : nullptr, want.data());
      std::vector<float> y(conv_y_size(g), std::numeric_limits<float>::quiet_NaN());
      kd::cpu::direct::forward(g, p.x.data(), p.w.data(), bias, y.data());
      const std::string what = (with_bias ? "forward " : "forward without bias ") + describe(g);
      kd::kernel_testing::expect_close_to_scale(y, want, kTolerance, what);

      // cpu:: takes the direct path (the same bits), and the GEMM path when asked.
      std::vector<float> routed(conv_y_size(g));
      kd::cpu::conv2d_forward<float>(g, p.x.data(), p.w.data(), bias, routed.data());
      expect_bitwise(routed, y, "cpu:: " + what + " is direct");
      ScopedConvAlgorithm gemm(ConvAlgorithm::Gemm);
      std::vector<float> by_gemm(conv_y_size(g));
      kd::cpu::conv2d_forward<float>(g, p.x.data(), p.w.data(), bias, by_gemm.data());
      kd::kernel_testing::expect_close_to_scale(by_gemm, want, kTolerance, "gemm " + what);
    }
  }
}

TEST(ConvDirect, WeightGradientMatchesRefInDouble) {
  EngineThreading threading;
  for (const ConvGeom& g : kShapes) {
    const ConvProblem p = conv_problem(g);
    std::vector<double> want_dw(conv_w_size(g), 0.0), want_db(g.k, 0.0);
    kd::ref::conv2d_backward_weight<double>(g, to_double(p.x).data(), to_double(p.dy).data(),
                                            want_dw.data(), want_db.data());
    for (size_t i = 0; i < want_dw.size(); ++i) want_dw[i] += p.w[i];
    for (size_t i = 0; i < want_db.size(); ++i) want_db[i] += p.bias[i];
    const std::string what = describe(g);

    std::vector<float> dw = p.w;  // accumulates onto a prefill
    kd::cpu::direct::backward_weight(g, p.x.data(), p.dy.data(), dw.data());
    kd::kernel_testing::expect_close_to_scale(dw, want_dw, kTolerance, "dw " + what);

    std::vector<float> routed = p.w, db = p.bias;
    kd::cpu::conv2d_backward_weight<float>(g, p.x.data(), p.dy.data(), routed.data(), db.data());
    expect_bitwise(routed, dw, "cpu:: backward weight is direct " + what);
    kd::kernel_testing::expect_close_to_scale(db, want_db, kTolerance, "dbias " + what);

    ScopedConvAlgorithm gemm(ConvAlgorithm::Gemm);
    std::vector<float> by_gemm = p.w, db_gemm = p.bias;
    kd::cpu::conv2d_backward_weight<float>(g, p.x.data(), p.dy.data(), by_gemm.data(),
                                           db_gemm.data());
    kd::kernel_testing::expect_close_to_scale(by_gemm, want_dw, kTolerance, "gemm dw " + what);
  }
}

// Backward data runs 8 images to a vector: the batch of 19 (two full blocks and a short one) and
// those under 8 leave lanes empty.
TEST(ConvDirect, BackwardDataMatchesRefInDouble) {
  EngineThreading threading;
  for (const ConvGeom& g : kShapes) {
    const ConvProblem p = conv_problem(g);
    std::vector<double> want(conv_x_size(g), 0.0);
    kd::ref::conv2d_backward_data<double>(g, to_double(p.dy).data(), to_double(p.w).data(),
                                          want.data(), false);
    const std::string what = describe(g);
    std::vector<float> dx(conv_x_size(g), std::numeric_limits<float>::quiet_NaN());
    kd::cpu::direct::backward_data(g, p.dy.data(), p.w.data(), dx.data(), false);
    kd::kernel_testing::expect_close_to_scale(dx, want, kTolerance, "dx assigned " + what);

    std::vector<float> acc = p.x;  // accumulates onto a prefill
    kd::cpu::direct::backward_data(g, p.dy.data(), p.w.data(), acc.data(), true);
    std::vector<double> want_acc = want;
    for (size_t i = 0; i < want_acc.size(); ++i) want_acc[i] += p.x[i];
    kd::kernel_testing::expect_close_to_scale(acc, want_acc, kTolerance, "dx accumulated " + what);

    // cpu:: takes it from 6 channels (none of these is a "same" convolution with c >= 16, the
    // transposed GEMM's); with fewer it stays with im2col + GEMM, which sums in another order.
    std::vector<float> routed(conv_x_size(g), std::numeric_limits<float>::quiet_NaN());
    kd::cpu::conv2d_backward_data<float>(g, p.dy.data(), p.w.data(), routed.data(), false);
    ASSERT_EQ(g.c >= 6, kd::cpu::direct::backward_data_applies(g)) << what;
    if (g.c >= 6) {
      expect_bitwise(routed, dx, "cpu:: backward data is direct " + what);
    } else {
      kd::kernel_testing::expect_close_to_scale(routed, want, kTolerance, "gemm dx " + what);
    }
  }
}

// The GEMM path sums the weight gradient in another order (its forward on LeNet's shapes happens
// to give the same bits: OpenBLAS's small kernel also sums the taps in order): its dw differs from the
// direct path's in the bits, which shows --cpu-conv gemm really leaves it.
TEST(ConvDirect, GemmSwitchLeavesTheDirectPath) {
  EngineThreading threading;
  // 40 images: groups of 2 or 3, which the direct path sums image by image, the GEMM in one run.
  for (const ConvGeom& g : {geom(40, 1, 28, 28, 6, 5, 5, 1, 2), geom(40, 6, 14, 14, 16, 5, 5, 1, 0)}) {
    const ConvProblem p = conv_problem(g);
    std::vector<float> direct(conv_w_size(g), 0.f), by_gemm(conv_w_size(g), 0.f);
    kd::cpu::conv2d_backward_weight<float>(g, p.x.data(), p.dy.data(), direct.data(), nullptr);
    ScopedConvAlgorithm gemm(ConvAlgorithm::Gemm);
    kd::cpu::conv2d_backward_weight<float>(g, p.x.data(), p.dy.data(), by_gemm.data(), nullptr);
    EXPECT_NE(0, std::memcmp(direct.data(), by_gemm.data(), direct.size() * sizeof(float)))
        << describe(g);
  }
}

TEST(ConvDirect, BitwiseIndependentOfThreadsAndBatch) {
  EngineThreading threading;
  for (const ConvGeom& g : {geom(11, 6, 14, 14, 16, 5, 5, 1, 0), geom(23, 1, 28, 28, 6, 5, 5, 1, 2)}) {
    const ConvProblem p = conv_problem(g);
    std::vector<float> y[2], dw[2], dx[2];
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      y[threads - 1].assign(conv_y_size(g), 0.f);
      dw[threads - 1].assign(conv_w_size(g), 0.f);
      kd::cpu::direct::forward(g, p.x.data(), p.w.data(), p.bias.data(), y[threads - 1].data());
      kd::cpu::direct::backward_weight(g, p.x.data(), p.dy.data(), dw[threads - 1].data());
      dx[threads - 1].assign(conv_x_size(g), 0.f);
      kd::cpu::direct::backward_data(g, p.dy.data(), p.w.data(), dx[threads - 1].data(), false);
    }
    expect_bitwise(y[0], y[1], "forward, 1 vs 2 threads " + describe(g));
    expect_bitwise(dw[0], dw[1], "weight gradient, 1 vs 2 threads " + describe(g));
    expect_bitwise(dx[0], dx[1], "backward data, 1 vs 2 threads " + describe(g));
    // Images 3.. on their own give the same bits as inside the whole batch.
    ConvGeom sub = g;
    sub.n = g.n - 3;
    const size_t in = size_t(g.c) * g.h * g.w, out = size_t(g.k) * g.p() * g.q();
    std::vector<float> ys(conv_y_size(sub));
    kd::cpu::direct::forward(sub, p.x.data() + 3 * in, p.w.data(), p.bias.data(), ys.data());
    expect_bitwise(ys, std::vector<float>(y[0].begin() + 3 * out, y[0].end()),
                   "forward of a sub-batch " + describe(g));
    std::vector<float> dxs(conv_x_size(sub));
    kd::cpu::direct::backward_data(sub, p.dy.data() + 3 * out, p.w.data(), dxs.data(), false);
    expect_bitwise(dxs, std::vector<float>(dx[0].begin() + 3 * in, dx[0].end()),
                   "backward data of a sub-batch " + describe(g));
  }
}

}  // namespace
