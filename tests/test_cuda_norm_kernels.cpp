// Tests for the CUDA batch norm and group norm (kernels/cuda/normalization.cu) against ref:: on
// awkward shapes, float and double: forward values, saved and running statistics (also with null
// running statistics), backward ACCUMULATION into prefilled gradients, bitwise run-to-run
// equality, and the training-mode refusal of one value per channel. Batch norm's statistics run
// several blocks per channel on large channels (blocks_per_channel in the .cu), with 16-byte
// vector loads where hw allows: shapes below cover many blocks, the vector and the scalar path,
// and the same bits whatever the operands' alignment. Tolerances: float 1e-4 relative
// (statistics are in double on both sides; the per-element passes run in float on coefficients
// rounded to float, a few ulps), double 1e-10 (one-pass shifted moments vs ref::'s two-pass
// variance); tighter ones for the many-block shapes. Needs a device: every test skips without
// one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "base/check.h"
#include "kernels/normalization.h"
#include "tests/cuda_testing.h"
#include "tests/kernel_testing.h"


namespace kd {
namespace {

using namespace kernel_testing;
using cuda_testing::DeviceArray;

size_t numel(const NormGeom& g) { return size_t(g.n) * g.c * g.hw; }

// Sets KDLAB_BN_CLUSTERS for a scope.
class BnClusters : public cuda_testing::ScopedEnv {
 public:
  explicit BnClusters(bool on) : ScopedEnv("KDLAB_BN_CLUSTERS", on ? "1" : "0") {}
};

std::string describe(const NormGeom& g) {
  return "n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) +
         " hw=" + std::to_string(g.hw) + " groups=" + std::to_string(g.groups);
}

// batch 1, hw = 1, odd channels, hw above the block size (one thread walks several samples per
// step), m = 2 (the smallest the unbiased variance allows).
const std::vector<NormGeom> kBnGeoms = {{1, 3, 5},  {2, 7, 1},   {5, 16, 33}, {6, 19, 7},
                                        {3, 5, 64}, {4, 2, 1030}, {1, 1, 2},   {33, 3, 1}};

// Channels large enough for several statistics blocks each (blocks per channel by the .cu's rule
// clamp(ceil(264 / c), 1, n*hw / 4096) in the comments; V = 4 floats or 2 doubles per vector).
// The first two are the race-check build's.
const std::vector<NormGeom> kManyBlockGeoms = {
    {200, 5, 7 * 7},   // 2 blocks, odd planes: scalar loads
    {4100, 2, 2},      // 2 blocks: scalar for float (hw % 4), vector for double
    {64, 3, 32 * 32},  // 16 blocks (8 in clusters), vector path
    {32, 16, 1024},    // PreResNet's first stage at batch 32: 8 blocks
    {16411, 2, 1},     // 4 blocks, hw = 1, m % V != 0: the last vector is partial
    {300, 2, 63},      // 4 blocks, vectors straddle planes
    {512, 64, 16},     // 2 blocks of each of 64 channels
    {3, 300, 4}};      // c >= 264: one block per channel, tiny planes, vector path

// Training forward (with and without running statistics), backward accumulated and assigned,
// eval forward and backward, each against ref::. Statistics and parameter gradients within
// stat_tol, per-element outputs within tol.
template <class T>
void check_batchnorm(const std::vector<NormGeom>& geoms, double tol, double stat_tol) {
  uint64_t seed = 300;
  for (const NormGeom& g : geoms) {
    SCOPED_TRACE(describe(g));
    const size_t len = numel(g);
    // Offset mean (3 +- 2): the one-pass statistics must not cancel.
    auto x = uniform<T>(len, seed++, 1, 5), dy = uniform<T>(len, seed++, -1, 1);
    auto gamma = uniform<T>(g.c, seed++, 0.5, 1.5), beta = uniform<T>(g.c, seed++, -1, 1);
    auto rm0 = uniform<T>(g.c, seed++, -1, 1), rv0 = uniform<T>(g.c, seed++, 0.5, 2);
    auto dx0 = uniform<T>(len, seed++, -1, 1), dg0 = uniform<T>(g.c, seed++, -1, 1);
    auto db0 = uniform<T>(g.c, seed++, -1, 1);
    const T eps = T(1e-5), momentum = T(0.1);

    // Training forward, with running statistics.
    std::vector<T> y(len), mean(g.c), invstd(g.c), rm = rm0, rv = rv0;
    ref::batchnorm_forward_train<T>(g, x.data(), gamma.data(), beta.data(), eps, momentum,
                                    y.data(), mean.data(), invstd.data(), rm.data(), rv.data(),
                                    nullptr, false);
    DeviceArray<T> dx_(x), dgamma_(gamma), dbeta_(beta), dy_(dy), d_y(len), d_mean(g.c),
        d_invstd(g.c), d_rm(rm0), d_rv(rv0);
    cuda_testing::gpu_kernels<T>().batchnorm_forward_train(g, dx_.get(), dgamma_.get(), dbeta_.get(), eps, momentum,
                                     d_y.get(), d_mean.get(), d_invstd.get(), d_rm.get(),
                                     d_rv.get(), nullptr, false);
    expect_close(d_y.host(), y, tol, "train y");
    expect_close(d_mean.host(), mean, stat_tol, "save_mean");
    expect_close(d_invstd.host(), invstd, stat_tol, "save_invstd");
    expect_close(d_rm.host(), rm, stat_tol, "running_mean");
    expect_close(d_rv.host(), rv, stat_tol, "running_var");

    // Null running statistics: same outputs, nothing else touched.
    DeviceArray<T> d_y2(len), d_mean2(g.c), d_invstd2(g.c);
    cuda_testing::gpu_kernels<T>().batchnorm_forward_train(g, dx_.get(), dgamma_.get(), dbeta_.get(), eps, momentum,
                                     d_y2.get(), d_mean2.get(), d_invstd2.get(), nullptr, nullptr,
                                     nullptr, false);
    EXPECT_TRUE(same_bits(d_y2.host(), d_y.host())) << "y without running statistics";
    EXPECT_TRUE(same_bits(d_invstd2.host(), d_invstd.host()));

    // Training backward accumulates into prefilled gradients.
    std::vector<T> dx = dx0, dg = dg0, db = db0;
    ref::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), mean.data(),
                                     invstd.data(), dx.data(), dg.data(), db.data(), true, nullptr);
    DeviceArray<T> d_mean_ref(mean), d_invstd_ref(invstd), d_dx(dx0), d_dg(dg0), d_db(db0);
    cuda_testing::gpu_kernels<T>().batchnorm_backward_train(g, dx_.get(), dy_.get(), dgamma_.get(), d_mean_ref.get(),
                                      d_invstd_ref.get(), d_dx.get(), d_dg.get(), d_db.get(), true, nullptr);
    expect_close(d_dx.host(), dx, tol, "train dx");
    {  // assigned dx: the NaN it held is overwritten, never read
      std::vector<T> dx_set(len), dg_set = dg0, db_set = db0;
      ref::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), mean.data(),
                                       invstd.data(), dx_set.data(), dg_set.data(),
                                       db_set.data(), false, nullptr);
      DeviceArray<T> d_dx_set(std::vector<T>(len, T(NAN))), d_dg_set(dg0), d_db_set(db0);
      cuda_testing::gpu_kernels<T>().batchnorm_backward_train(
          g, dx_.get(), dy_.get(), dgamma_.get(), d_mean_ref.get(), d_invstd_ref.get(),
          d_dx_set.get(), d_dg_set.get(), d_db_set.get(), false, nullptr);
      expect_close(d_dx_set.host(), dx_set, tol, "train dx assigned");
    }
    expect_close(d_dg.host(), dg, stat_tol, "train dgamma");
    expect_close(d_db.host(), db, stat_tol, "train dbeta");

    // Eval forward and backward through the running statistics.
    DeviceArray<T> d_rm0(rm0), d_rv0(rv0), d_ye(len), d_dxe(dx0), d_dge(dg0), d_dbe(db0);
    std::vector<T> ye(len), dxe = dx0, dge = dg0, dbe = db0;
    ref::batchnorm_forward_eval<T>(g, x.data(), gamma.data(), beta.data(), rm0.data(),
                                   rv0.data(), eps, ye.data());
    cuda_testing::gpu_kernels<T>().batchnorm_forward_eval(g, dx_.get(), dgamma_.get(), dbeta_.get(), d_rm0.get(),
                                    d_rv0.get(), eps, d_ye.get());
    expect_close(d_ye.host(), ye, tol, "eval y");
    ref::batchnorm_backward_eval<T>(g, x.data(), dy.data(), gamma.data(), rm0.data(), rv0.data(),
                                    eps, dxe.data(), dge.data(), dbe.data());
    cuda_testing::gpu_kernels<T>().batchnorm_backward_eval(g, dx_.get(), dy_.get(), dgamma_.get(), d_rm0.get(),
                                     d_rv0.get(), eps, d_dxe.get(), d_dge.get(), d_dbe.get());
    expect_close(d_dxe.host(), dxe, tol, "eval dx");
    expect_close(d_dge.host(), dge, stat_tol, "eval dgamma");
    expect_close(d_dbe.host(), dbe, stat_tol, "eval dbeta");
  }
}

// The fused batchnorm + ReLU on the device against ref::'s, forward and backward (the mask read
// from the fused output), dx assigned.
template <class T>
void check_fused_relu_cuda(double tol) {
  uint64_t seed = 900;
  for (const NormGeom& g : {NormGeom{3, 5, 64}, NormGeom{4, 2, 1024}, NormGeom{2, 7, 1},
                            NormGeom{64, 3, 1024}, NormGeom{300, 2, 63}}) {
    SCOPED_TRACE("n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) +
                 " hw=" + std::to_string(g.hw));
    const size_t len = size_t(g.n) * g.c * g.hw;
    auto x = uniform<T>(len, seed++, -1, 3), dy = uniform<T>(len, seed++, -1, 1);
    auto gamma = uniform<T>(g.c, seed++, 0.5, 1.5), beta = uniform<T>(g.c, seed++, -1, 1);
    std::vector<T> y(len), m(g.c), s(g.c), dx(len), dg(g.c, T(0)), db(g.c, T(0));
    ref::batchnorm_forward_train<T>(g, x.data(), gamma.data(), beta.data(), T(1e-5), T(0.1),
                                    y.data(), m.data(), s.data(), nullptr, nullptr, nullptr, true);
    ref::batchnorm_backward_train<T>(g, x.data(), dy.data(), gamma.data(), m.data(), s.data(),
                                     dx.data(), dg.data(), db.data(), false, y.data());
    DeviceArray<T> d_x(x), d_dy(dy), d_gamma(gamma), d_beta(beta), d_y(len), d_m(g.c), d_s(g.c),
        d_dx(std::vector<T>(len, T(NAN))), d_dg(std::vector<T>(g.c, T(0))),
        d_db(std::vector<T>(g.c, T(0)));
    cuda_testing::gpu_kernels<T>().batchnorm_forward_train(
        g, d_x.get(), d_gamma.get(), d_beta.get(), T(1e-5), T(0.1), d_y.get(), d_m.get(),
        d_s.get(), nullptr, nullptr, nullptr, true);
    expect_close(d_y.host(), y, tol, "fused forward");
    // The backward takes ref::'s output and statistics, so the mask is the same one.
    DeviceArray<T> d_y_ref(y), d_m_ref(m), d_s_ref(s);
    cuda_testing::gpu_kernels<T>().batchnorm_backward_train(
        g, d_x.get(), d_dy.get(), d_gamma.get(), d_m_ref.get(), d_s_ref.get(), d_dx.get(),
        d_dg.get(), d_db.get(), false, d_y_ref.get());
    expect_close(d_dx.host(), dx, tol, "fused backward dx");
    expect_close(d_dg.host(), dg, tol * 10, "fused backward dgamma");
    expect_close(d_db.host(), db, tol * 10, "fused backward dbeta");
  }
}

TEST(CudaNormKernels, FusedBatchNormReluMatchesRef) {
  KD_REQUIRE_CUDA();
  check_fused_relu_cuda<float>(1e-4);
  check_fused_relu_cuda<double>(1e-10);
}

TEST(CudaNormKernels, BatchNormMatchesRefFloat) {
  KD_REQUIRE_CUDA();
  check_batchnorm<float>(kBnGeoms, 1e-4, 1e-4);
}

TEST(CudaNormKernels, BatchNormMatchesRefDouble) {
  KD_REQUIRE_CUDA();
  check_batchnorm<double>(kBnGeoms, 1e-10, 1e-10);
}

// Many blocks per channel: the finishing block's sum of the blocks' pairs, the counter reset
// between the consecutive calls check_batchnorm makes (a counter left at a ticket would leave
// the next call's statistics unwritten), both load paths. Statistics are rounded from double on
// both sides, so they agree to a few float ulps.
// Both training paths: thread block clusters (one launch per pass) and the two launches with
// tickets (KDLAB_BN_CLUSTERS=0). The race-check build runs the first two shapes, in clusters.
template <class T>
void check_many_blocks(double tol, double stat_tol) {
  const std::vector<NormGeom> shapes = shapes_for_build(kManyBlockGeoms, 2);
  for (bool clusters : {true, false}) {
    if (kRaceCheckBuild && !clusters) continue;
    SCOPED_TRACE(clusters ? "in clusters" : "two launches");
    const BnClusters path(clusters);
    check_batchnorm<T>(shapes, tol, stat_tol);
  }
}

TEST(CudaNormKernels, BatchNormManyBlocksPerChannelMatchesRefFloat) {
  KD_REQUIRE_CUDA();
  check_many_blocks<float>(1e-5, 1e-6);
}

TEST(CudaNormKernels, BatchNormManyBlocksPerChannelMatchesRefDouble) {
  KD_REQUIRE_CUDA();
  check_many_blocks<double>(1e-12, 1e-12);
}

// per-group 1 (instance norm), groups 1 (layer norm), hw = 1 with batch 1, more channels per
// group than warps in a block (the channel loop wraps), a group larger than the block.
const NormGeom kGnGeoms[] = {{2, 6, 5, 3},  {1, 4, 1, 2},  {3, 8, 33, 1},   {2, 6, 7, 6},
                             {2, 64, 9, 2}, {1, 4, 1500, 2}, {3, 5, 4, 5}};

template <class T>
void check_groupnorm(double tol) {
  uint64_t seed = 600;
  for (const NormGeom& g : kGnGeoms) {
    SCOPED_TRACE(describe(g));
    const size_t len = numel(g), stats = size_t(g.n) * g.groups;
    auto x = uniform<T>(len, seed++, 1, 5), dy = uniform<T>(len, seed++, -1, 1);
    auto gamma = uniform<T>(g.c, seed++, 0.5, 1.5), beta = uniform<T>(g.c, seed++, -1, 1);
    auto dx0 = uniform<T>(len, seed++, -1, 1), dg0 = uniform<T>(g.c, seed++, -1, 1);
    auto db0 = uniform<T>(g.c, seed++, -1, 1);
    const T eps = T(1e-5);

    std::vector<T> y(len), mean(stats), invstd(stats);
    ref::groupnorm_forward<T>(g, x.data(), gamma.data(), beta.data(), eps, y.data(), mean.data(),
                              invstd.data());
    DeviceArray<T> d_x(x), d_dy(dy), d_gamma(gamma), d_beta(beta), d_y(len), d_mean(stats),
        d_invstd(stats);
    cuda_testing::gpu_kernels<T>().groupnorm_forward(g, d_x.get(), d_gamma.get(), d_beta.get(), eps, d_y.get(),
                               d_mean.get(), d_invstd.get());
    expect_close(d_y.host(), y, tol, "gn y");
    expect_close(d_mean.host(), mean, tol, "gn save_mean");
    expect_close(d_invstd.host(), invstd, tol, "gn save_invstd");

    std::vector<T> dx = dx0, dg = dg0, db = db0;
    ref::groupnorm_backward<T>(g, x.data(), dy.data(), gamma.data(), mean.data(), invstd.data(),
                               dx.data(), dg.data(), db.data());
    DeviceArray<T> d_mean_ref(mean), d_invstd_ref(invstd), d_dx(dx0), d_dg(dg0), d_db(db0);
    cuda_testing::gpu_kernels<T>().groupnorm_backward(g, d_x.get(), d_dy.get(), d_gamma.get(), d_mean_ref.get(),
                                d_invstd_ref.get(), d_dx.get(), d_dg.get(), d_db.get());
    expect_close(d_dx.host(), dx, tol, "gn dx");
    expect_close(d_dg.host(), dg, tol, "gn dgamma");
    expect_close(d_db.host(), db, tol, "gn dbeta");
  }
}

TEST(CudaNormKernels, GroupNormMatchesRefFloat) {
  KD_REQUIRE_CUDA();
  check_groupnorm<float>(1e-4);
}

TEST(CudaNormKernels, GroupNormMatchesRefDouble) {
  KD_REQUIRE_CUDA();
  check_groupnorm<double>(1e-10);
}

// Two runs of the training forward and backward on the same inputs give the same bits: the
// reductions have a fixed order and no float atomics.
TEST(CudaNormKernels, BatchNormAndGroupNormAreBitwiseReproducible) {
  KD_REQUIRE_CUDA();
  const NormGeom g{8, 6, 999, 3};  // m = 7992 elements per channel: many per thread
  const size_t len = numel(g);
  auto x = uniform<float>(len, 900, -3, 7), dy = uniform<float>(len, 901, -1, 1);
  auto gamma = uniform<float>(g.c, 902, 0.5, 1.5), beta = uniform<float>(g.c, 903, -1, 1);
  DeviceArray<float> d_x(x), d_dy(dy), d_gamma(gamma), d_beta(beta);
  auto run = [&] {
    DeviceArray<float> y(len), mean(g.c), invstd(g.c), rm(g.c), rv(g.c), dx(len), dg(g.c),
        db(g.c), gy(len), gmean(size_t(g.n) * g.groups), ginv(size_t(g.n) * g.groups),
        gdx(len), gdg(g.c), gdb(g.c);
    cuda_testing::gpu_kernels<float>().batchnorm_forward_train(g, d_x.get(), d_gamma.get(), d_beta.get(), 1e-5f, 0.1f,
                                         y.get(), mean.get(), invstd.get(), rm.get(), rv.get(),
                                         nullptr, false);
    cuda_testing::gpu_kernels<float>().batchnorm_backward_train(g, d_x.get(), d_dy.get(), d_gamma.get(), mean.get(),
                                          invstd.get(), dx.get(), dg.get(), db.get(), true, nullptr);
    cuda_testing::gpu_kernels<float>().groupnorm_forward(g, d_x.get(), d_gamma.get(), d_beta.get(), 1e-5f, gy.get(),
                                   gmean.get(), ginv.get());
    cuda_testing::gpu_kernels<float>().groupnorm_backward(g, d_x.get(), d_dy.get(), d_gamma.get(), gmean.get(),
                                    ginv.get(), gdx.get(), gdg.get(), gdb.get());
    std::vector<std::vector<float>> out = {y.host(),  mean.host(), invstd.host(), rm.host(),
                                           rv.host(), dx.host(),   dg.host(),     db.host(),
                                           gy.host(), gdx.host(),  gdg.host(),    gdb.host()};
    return out;
  };
  const auto first = run(), second = run();
  ASSERT_EQ(first.size(), second.size());
  for (size_t i = 0; i < first.size(); ++i) EXPECT_TRUE(same_bits(first[i], second[i])) << i;
}

// One batch-norm sequence on the device, every tensor operand `offset` elements into its
// allocation (offset 1: not 16-byte aligned, so the scalar loads): training forward with
// running statistics, fused ReLU forward, backward assigned with the ReLU mask, backward
// accumulated, eval backward. Returns every output, the padding dropped.
template <class T>
std::vector<std::vector<T>> batchnorm_sequence(const NormGeom& g, size_t offset) {
  const size_t len = numel(g);
  auto padded = [&](std::vector<T> v) {
    v.insert(v.begin(), offset, T(0));
    return v;
  };
  auto unpadded = [&](const DeviceArray<T>& a) {
    std::vector<T> v = a.host();
    return std::vector<T>(v.begin() + std::ptrdiff_t(offset), v.end());
  };
  const std::vector<T> nan_len(len, T(NAN)), nan_c(size_t(g.c), T(NAN));
  DeviceArray<T> x(padded(uniform<T>(len, 41, -2, 6))), dy(padded(uniform<T>(len, 42, -1, 1))),
      dx0(padded(uniform<T>(len, 43, -1, 1))), y(padded(nan_len)), y_relu(padded(nan_len)),
      dx_set(padded(nan_len)), dx_acc(padded(uniform<T>(len, 43, -1, 1))),
      dx_eval(padded(uniform<T>(len, 43, -1, 1)));
  DeviceArray<T> gamma(uniform<T>(g.c, 44, 0.5, 1.5)), beta(uniform<T>(g.c, 45, -1, 1)),
      rm(uniform<T>(g.c, 46, -1, 1)), rv(uniform<T>(g.c, 47, 0.5, 2)), mean(nan_c),
      invstd(nan_c), mean_r(nan_c), invstd_r(nan_c), dg(std::vector<T>(g.c, T(0))),
      db(std::vector<T>(g.c, T(0))), dg_acc(uniform<T>(g.c, 48, -1, 1)),
      db_acc(uniform<T>(g.c, 49, -1, 1)), dg_eval(std::vector<T>(g.c, T(0))),
      db_eval(std::vector<T>(g.c, T(0)));
  const KernelTable<T>& k = cuda_testing::gpu_kernels<T>();
  const size_t o = offset;
  k.batchnorm_forward_train(g, x.get() + o, gamma.get(), beta.get(), T(1e-5), T(0.1),
                            y.get() + o, mean.get(), invstd.get(), rm.get(), rv.get(), nullptr,
                            false);
  k.batchnorm_forward_train(g, x.get() + o, gamma.get(), beta.get(), T(1e-5), T(0.1),
                            y_relu.get() + o, mean_r.get(), invstd_r.get(), nullptr, nullptr,
                            nullptr,
                            true);
  k.batchnorm_backward_train(g, x.get() + o, dy.get() + o, gamma.get(), mean_r.get(),
                             invstd_r.get(), dx_set.get() + o, dg.get(), db.get(), false,
                             y_relu.get() + o);
  k.batchnorm_backward_train(g, x.get() + o, dy.get() + o, gamma.get(), mean.get(), invstd.get(),
                             dx_acc.get() + o, dg_acc.get(), db_acc.get(), true, nullptr);
  k.batchnorm_backward_eval(g, x.get() + o, dy.get() + o, gamma.get(), rm.get(), rv.get(),
                            T(1e-5), dx_eval.get() + o, dg_eval.get(), db_eval.get());
  return {unpadded(y),      mean.host(),        invstd.host(),  rm.host(),
          rv.host(),        unpadded(y_relu),   mean_r.host(),  invstd_r.host(),
          unpadded(dx_set), dg.host(),          db.host(),      unpadded(dx_acc),
          dg_acc.host(),    db_acc.host(),      unpadded(dx_eval), dg_eval.host(),
          db_eval.host()};
}

// Many blocks per channel: two runs in a row give the same bits (the tickets are back at 0
// after each launch, and every output is written again: NaN-filled outputs would stay NaN),
// and so does a run on misaligned operands, where the vector loads give way to scalar loads of
// the same values in the same order. No output is NaN.
// Both training paths (check_many_blocks); the race-check build runs one shape, in clusters.
template <class T>
void check_many_block_bits() {
  const std::vector<NormGeom> shapes = shapes_for_build(
      std::vector<NormGeom>{NormGeom{4100, 2, 2}, NormGeom{64, 3, 1024}, NormGeom{300, 2, 63},
                            NormGeom{512, 64, 16}, NormGeom{16411, 2, 1}},
      1);
  for (bool clusters : {true, false}) {
    if (kRaceCheckBuild && !clusters) continue;
    const BnClusters path(clusters);
    for (const NormGeom& g : shapes) {
      SCOPED_TRACE(describe(g) + (clusters ? ", in clusters" : ", two launches"));
      const auto first = batchnorm_sequence<T>(g, 0), second = batchnorm_sequence<T>(g, 0),
                 shifted = batchnorm_sequence<T>(g, 1);
      ASSERT_EQ(first.size(), second.size());
      ASSERT_EQ(first.size(), shifted.size());
      for (size_t i = 0; i < first.size(); ++i) {
        SCOPED_TRACE("output " + std::to_string(i));
        for (T v : first[i]) ASSERT_FALSE(std::isnan(double(v)));
        EXPECT_TRUE(same_bits(first[i], second[i])) << "second run";
        EXPECT_TRUE(same_bits(first[i], shifted[i])) << "misaligned operands";
      }
    }
  }
}

TEST(CudaNormKernels, BatchNormManyBlocksIsBitwiseReproducibleAndAlignmentFree) {
  KD_REQUIRE_CUDA();
  check_many_block_bits<float>();
  check_many_block_bits<double>();
}

// Launches of one forward and one backward batch-norm training call; the forward also counts
// the batch into a num_batches_tracked (checked: +1, in those launches).
template <class T>
std::pair<uint64_t, uint64_t> batchnorm_train_launches(const NormGeom& g) {
  const size_t len = numel(g);
  DeviceArray<T> x(uniform<T>(len, 41, -2, 6)), dy(uniform<T>(len, 42, -1, 1)), y(len), dx(len);
  DeviceArray<T> gamma(uniform<T>(g.c, 44, 0.5, 1.5)), beta(uniform<T>(g.c, 45, -1, 1)),
      mean(size_t(g.c)), invstd(size_t(g.c)), dg(std::vector<T>(g.c, T(0))),
      db(std::vector<T>(g.c, T(0)));
  const KernelTable<T>& k = cuda_testing::gpu_kernels<T>();
  DeviceArray<int64_t> tracked(std::vector<int64_t>{41});
  const uint64_t start = cuda_testing::gpu().launch_count();
  k.batchnorm_forward_train(g, x.get(), gamma.get(), beta.get(), T(1e-5), T(0.1), y.get(),
                            mean.get(), invstd.get(), nullptr, nullptr, tracked.get(), true);
  const uint64_t forward = cuda_testing::gpu().launch_count();
  EXPECT_EQ(tracked.host()[0], 42) << "num_batches_tracked after one training forward";
  k.batchnorm_backward_train(g, x.get(), dy.get(), gamma.get(), mean.get(), invstd.get(),
                             dx.get(), dg.get(), db.get(), false, y.get());
  return {forward - start, cuda_testing::gpu().launch_count() - forward};
}

// Thread block clusters (sm_90, and the emulated GPU) make each training pass one launch; where
// a channel's blocks fit one portable cluster (at most 8) every output has the two-launch
// kernels' bits, aligned or not. Shapes: 2 (scalar loads), 1, 4, 4 (scalar loads), 2 and 8
// blocks per channel; the race-check build keeps the two small ones, aligned only.
template <class T>
void check_cluster_batchnorm() {
  const std::vector<NormGeom> shapes = shapes_for_build(
      std::vector<NormGeom>{NormGeom{4100, 2, 2}, NormGeom{9, 5, 7}, NormGeom{300, 2, 63},
                            NormGeom{16411, 2, 1}, NormGeom{512, 64, 16}, NormGeom{64, 8, 512}},
      2);
  const std::vector<size_t> offsets =
      kRaceCheckBuild ? std::vector<size_t>{0} : std::vector<size_t>{0, 1};
  for (const NormGeom& g : shapes) {
    SCOPED_TRACE(describe(g));
    for (size_t offset : offsets) {
      SCOPED_TRACE("offset " + std::to_string(offset));
      std::vector<std::vector<T>> clustered, two_launch;
      {
        const BnClusters on(true);
        clustered = batchnorm_sequence<T>(g, offset);
        EXPECT_EQ(batchnorm_train_launches<T>(g), std::make_pair(uint64_t(1), uint64_t(1)));
      }
      {
        const BnClusters off(false);
        two_launch = batchnorm_sequence<T>(g, offset);
        EXPECT_EQ(batchnorm_train_launches<T>(g), std::make_pair(uint64_t(2), uint64_t(2)));
      }
      ASSERT_EQ(clustered.size(), two_launch.size());
      for (size_t i = 0; i < clustered.size(); ++i) {
        SCOPED_TRACE("output " + std::to_string(i));
        for (T v : clustered[i]) ASSERT_FALSE(std::isnan(double(v)));
        EXPECT_TRUE(same_bits(clustered[i], two_launch[i]));
      }
    }
  }
}

TEST(CudaNormKernels, BatchNormInClustersIsOneLaunchWithTheTwoLaunchBits) {
  KD_REQUIRE_CUDA();
  check_cluster_batchnorm<float>();
  check_cluster_batchnorm<double>();
}

TEST(CudaNormKernels, BatchNormClusterSwitchRejectsOtherValues) {
  KD_REQUIRE_CUDA();
  const NormGeom g{4, 2, 3};
  DeviceArray<float> x(uniform<float>(24, 1, -1, 1)), y(24), gm(2), bt(2), m(2), s(2);
  setenv("KDLAB_BN_CLUSTERS", "yes", 1);
  try {
    cuda_testing::gpu_kernels<float>().batchnorm_forward_train(
        g, x.get(), gm.get(), bt.get(), 1e-5f, 0.1f, y.get(), m.get(), s.get(), nullptr, nullptr,
        nullptr,
        false);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("KDLAB_BN_CLUSTERS: expected 0 or 1, got 'yes'"),
              std::string::npos)
        << e.what();
  }
  unsetenv("KDLAB_BN_CLUSTERS");
}

TEST(CudaNormKernels, BatchNormRejectsOneValuePerChannelInTraining) {
  KD_REQUIRE_CUDA();
  const NormGeom g{1, 2, 1};
  DeviceArray<double> x(2), gm(2), bt(2), y(2), m(2), s(2);
  EXPECT_THROW(cuda_testing::gpu_kernels<double>().batchnorm_forward_train(g, x.get(), gm.get(), bt.get(), 1e-5, 0.1,
                                                     y.get(), m.get(), s.get(), nullptr, nullptr,
                                                     nullptr, false),
               Error);
}

// --precision bf16's batch norm: the _bf16 training entries read and write bf16 activations in
// the T kernels' passes. Their contract is the T kernel of the same table on the widened values
// with each output rounded once, so everything is compared BITWISE: y, dx against the rounded T
// outputs (an accumulated dx: bf16(T(dx) + the T kernel's assigned dx)), the saved and running
// statistics and dgamma, dbeta against the T kernel's own. Both training paths, the launches of
// each (1 and 1 in clusters, 2 and 2 without), the vector path (8-byte bf16 loads for float) and
// the scalar one (odd planes, and every operand one element off alignment).
template <class T>
void check_bf16_batchnorm(const NormGeom& g, size_t offset) {
  const size_t len = numel(g), o = offset;
  auto padded = [&](std::vector<bf16> v) {
    v.insert(v.begin(), offset, bf16{0});
    return v;
  };
  auto unpadded = [&](const DeviceArray<bf16>& a) {
    std::vector<bf16> v = a.host();
    return std::vector<bf16>(v.begin() + std::ptrdiff_t(offset), v.end());
  };
  const std::vector<bf16> x16 = rounded(uniform<T>(len, 51, -2, 6));
  const std::vector<bf16> dy16 = rounded(uniform<T>(len, 52, -1, 1));
  const std::vector<bf16> dx0_16 = rounded(uniform<T>(len, 53, -1, 1));
  const std::vector<T> gamma = uniform<T>(g.c, 54, 0.5, 1.5), beta = uniform<T>(g.c, 55, -1, 1);
  const std::vector<T> rm0 = uniform<T>(g.c, 56, -1, 1), rv0 = uniform<T>(g.c, 57, 0.5, 2);
  const std::vector<T> zeros_c(size_t(g.c), T(0));
  const KernelTable<T>& k = cuda_testing::gpu_kernels<T>();
  DeviceArray<T> d_gamma(gamma), d_beta(beta);

  // The bf16 entries: forward with running statistics and ReLU, backward assigned through the
  // ReLU's mask, backward accumulated without.
  DeviceArray<bf16> x(padded(x16)), dy(padded(dy16)), y(padded(std::vector<bf16>(len))),
      dx_set(padded(std::vector<bf16>(len))), dx_acc(padded(dx0_16));
  DeviceArray<T> mean(size_t(g.c)), invstd(size_t(g.c)), rm(rm0), rv(rv0), dg(zeros_c),
      db(zeros_c), dg2(zeros_c), db2(zeros_c);
  DeviceArray<int64_t> tracked(std::vector<int64_t>{7});
  const uint64_t start = cuda_testing::gpu().launch_count();
  k.batchnorm_forward_train_bf16(g, x.get() + o, d_gamma.get(), d_beta.get(), T(1e-5), T(0.1),
                                 y.get() + o, mean.get(), invstd.get(), rm.get(), rv.get(),
                                 tracked.get(), true);
  const uint64_t forward = cuda_testing::gpu().launch_count() - start;
  k.batchnorm_backward_train_bf16(g, x.get() + o, dy.get() + o, d_gamma.get(), mean.get(),
                                  invstd.get(), dx_set.get() + o, dg.get(), db.get(), false,
                                  y.get() + o);
  const uint64_t backward = cuda_testing::gpu().launch_count() - start - forward;
  k.batchnorm_backward_train_bf16(g, x.get() + o, dy.get() + o, d_gamma.get(), mean.get(),
                                  invstd.get(), dx_acc.get() + o, dg2.get(), db2.get(), true,
                                  nullptr);
  EXPECT_EQ(tracked.host()[0], 8);

  // The T kernels on the widened values (the ReLU mask from the rounded y, as the bf16 backward
  // reads it).
  DeviceArray<T> wx(widened<T>(x16)), wdy(widened<T>(dy16)), wy(len), wdx(len), wdx2(len);
  DeviceArray<T> mean_t(size_t(g.c)), invstd_t(size_t(g.c)), rm_t(rm0), rv_t(rv0), dg_t(zeros_c),
      db_t(zeros_c), dg2_t(zeros_c), db2_t(zeros_c);
  k.batchnorm_forward_train(g, wx.get(), d_gamma.get(), d_beta.get(), T(1e-5), T(0.1), wy.get(),
                            mean_t.get(), invstd_t.get(), rm_t.get(), rv_t.get(), nullptr, true);
  const std::vector<bf16> y16 = unpadded(y);
  DeviceArray<T> wy_rounded(widened<T>(y16));
  k.batchnorm_backward_train(g, wx.get(), wdy.get(), d_gamma.get(), mean_t.get(),
                             invstd_t.get(), wdx.get(), dg_t.get(), db_t.get(), false,
                             wy_rounded.get());
  k.batchnorm_backward_train(g, wx.get(), wdy.get(), d_gamma.get(), mean_t.get(),
                             invstd_t.get(), wdx2.get(), dg2_t.get(), db2_t.get(), false,
                             nullptr);

  EXPECT_EQ(bits(y16), bits(rounded(wy.host()))) << "y";
  EXPECT_TRUE(same_bits(mean.host(), mean_t.host())) << "save_mean";
  EXPECT_TRUE(same_bits(invstd.host(), invstd_t.host())) << "save_invstd";
  EXPECT_TRUE(same_bits(rm.host(), rm_t.host())) << "running_mean";
  EXPECT_TRUE(same_bits(rv.host(), rv_t.host())) << "running_var";
  EXPECT_EQ(bits(unpadded(dx_set)), bits(rounded(wdx.host()))) << "dx assigned";
  EXPECT_TRUE(same_bits(dg.host(), dg_t.host())) << "dgamma";
  EXPECT_TRUE(same_bits(db.host(), db_t.host())) << "dbeta";
  std::vector<T> sum = wdx2.host();
  for (size_t i = 0; i < len; ++i) sum[i] = bf16_to<T>(dx0_16[i]) + sum[i];
  EXPECT_EQ(bits(unpadded(dx_acc)), bits(rounded(sum))) << "dx accumulated";
  EXPECT_TRUE(same_bits(dg2.host(), dg2_t.host())) << "dgamma, no mask";
  const uint64_t launches = std::getenv("KDLAB_BN_CLUSTERS") &&
                                    std::string(std::getenv("KDLAB_BN_CLUSTERS")) == "0"
                                ? 2
                                : 1;
  EXPECT_EQ(forward, launches);
  EXPECT_EQ(backward, launches);
}

template <class T>
void check_bf16_batchnorm_shapes() {
  const std::vector<NormGeom> shapes = shapes_for_build(
      std::vector<NormGeom>{NormGeom{4, 3, 8}, NormGeom{5, 3, 7}, NormGeom{64, 3, 1024},
                            NormGeom{300, 2, 63}, NormGeom{16411, 2, 1}},
      2);
  const std::vector<size_t> offsets =
      kRaceCheckBuild ? std::vector<size_t>{0} : std::vector<size_t>{0, 1};
  for (bool clusters : {true, false}) {
    if (kRaceCheckBuild && !clusters) continue;
    const BnClusters path(clusters);
    for (const NormGeom& g : shapes)
      for (size_t offset : offsets) {
        SCOPED_TRACE(describe(g) + (clusters ? ", in clusters" : ", two launches") +
                     ", offset " + std::to_string(offset));
        check_bf16_batchnorm<T>(g, offset);
      }
  }
}

TEST(CudaNormKernels, Bf16TrainingEntriesAreTheTKernelsRoundedOnce) {
  KD_REQUIRE_CUDA();
  check_bf16_batchnorm_shapes<float>();
  check_bf16_batchnorm_shapes<double>();
}

}  // namespace
}  // namespace kd
