// The Micro-8 tiles of our implicit-GEMM convolution (64x256 and 128x128, 8x8 micro-tiles;
// kernels/cuda/conv2d.cu, chosen by conv_gemm::fma_tile under KDLAB_CONV_MICRO). Each output sums
// K in the 64x64 tile's order, so every result is compared BITWISE with KDLAB_CONV_MICRO=4 (the
// 4x4 tiles): forward with bias and with the residual, backward data assigned and accumulated,
// the fused backward (dx, dw, dbias), float and the bf16 entries, with the same launches; float
// also against ref:: (1e-4, as tests/test_cuda_conv.cpp). `8` forces the Micro-8 tiles on shapes
// far too small for `auto`; on the emulated GPU the blocks each call ran show which tiles ran
// (bits cannot). A bad value is refused, naming the variable.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/conv2d.h"
#include "kernels/cuda/conv2d_block.h"
#include "tests/cuda_testing.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using cuda_testing::DeviceArray;
using cuda_testing::ScopedEnv;
using kernel_testing::bits;
using kernel_testing::describe;
using kernel_testing::geom;
using kernel_testing::rounded;
using kernel_testing::uniform;

using kd::kernel_testing::conv_w_size;
using kd::kernel_testing::conv_x_size;
using kd::kernel_testing::conv_y_size;

// Every output of one set of calls, as raw bits, with the launches and (emulated) blocks of the
// forward call and of the fused backward call.
struct Outputs {
  std::vector<std::vector<uint16_t>> bf16s;
  std::vector<std::vector<float>> floats;
  uint64_t launches = 0, forward_blocks = 0, backward_blocks = 0;
};

uint64_t blocks_run() {
  const EmulatorControls* emu = cuda_testing::gpu().emulator;
  return emu ? emu->blocks_run() : 0;
}

// The bf16 entries on the same operands, rounded: outputs appended to out.
void run_bf16_convolutions(const ConvGeom& g, const std::vector<float>& x,
                           const std::vector<float>& w, const std::vector<float>& res,
                           const std::vector<float>& dy, const std::vector<float>& dx0,
                           const std::vector<float>& dw0, const float* bias,
                           const std::vector<float>& db0, Outputs* out) {
  const KernelTable<float>& k = cuda_testing::gpu_kernels<float>();
  const std::vector<bf16> x16 = rounded(x), w16 = rounded(w), r16 = rounded(res),
                          dy16 = rounded(dy), dx16_0 = rounded(dx0), dw16_0 = rounded(dw0);
  DeviceArray<bf16> h_x(x16), h_w(w16), h_r(r16), h_dy(dy16), h_y(conv_y_size(g)),
      h_yr(conv_y_size(g)), h_dx(dx16_0), h_dw(dw16_0);
  DeviceArray<float> h_db(db0);
  k.conv2d_forward_bf16(g, h_x.get(), h_w.get(), bias, h_y.get());
  k.conv2d_forward_residual_bf16(g, h_x.get(), h_w.get(), h_r.get(), h_yr.get());
  k.conv2d_backward_bf16(g, h_x.get(), h_w.get(), h_dy.get(), h_dx.get(), true, h_dw.get(),
                         h_db.get());
  out->floats.push_back(h_db.host());
  out->bf16s = {bits(h_y.host()), bits(h_yr.host()), bits(h_dx.host()), bits(h_dw.host())};
}

Outputs run_convolutions(const ConvGeom& g, bool with_bf16) {
  const Backend& gpu = cuda_testing::gpu();
  const KernelTable<float>& k = cuda_testing::gpu_kernels<float>();
  const std::vector<float> x = uniform<float>(conv_x_size(g), 1, -1, 1),
                           w = uniform<float>(conv_w_size(g), 2, -1, 1),
                           res = uniform<float>(conv_y_size(g), 3, -1, 1),
                           dy = uniform<float>(conv_y_size(g), 4, -1, 1),
                           dx0 = uniform<float>(conv_x_size(g), 5, -1, 1),
                           dw0 = uniform<float>(conv_w_size(g), 6, -1, 1),
                           bias = uniform<float>(g.k, 7, -1, 1),
                           db0 = uniform<float>(g.k, 8, -1, 1);
  DeviceArray<float> d_x(x), d_w(w), d_res(res), d_dy(dy), d_bias(bias);
  DeviceArray<float> y(conv_y_size(g)), yr(conv_y_size(g)), dx_set(conv_x_size(g)), dx_acc(dx0),
      dx(conv_x_size(g)), dw(dw0), db(db0);
  Outputs out;
  const uint64_t launches = gpu.launch_count();
  uint64_t blocks = blocks_run();
  k.conv2d_forward(g, d_x.get(), d_w.get(), d_bias.get(), y.get());
  out.forward_blocks = blocks_run() - blocks;
  k.conv2d_forward_residual(g, d_x.get(), d_w.get(), d_res.get(), yr.get());
  k.conv2d_backward_data(g, d_dy.get(), d_w.get(), dx_set.get(), false);
  k.conv2d_backward_data(g, d_dy.get(), d_w.get(), dx_acc.get(), true);
  blocks = blocks_run();
  k.conv2d_backward(g, d_x.get(), d_w.get(), d_dy.get(), dx.get(), false, dw.get(), db.get());
  out.backward_blocks = blocks_run() - blocks;

  out.floats = {y.host(), yr.host(), dx_set.host(), dx_acc.host(), dx.host(), dw.host(),
                db.host()};
  if (with_bf16) {
    // The bf16 entries: the same tiles over bf16 operands.
    run_bf16_convolutions(g, x, w, res, dy, dx0, dw0, d_bias.get(), db0, &out);
  }
  out.launches = gpu.launch_count() - launches;

  // Against ref:: (float): the Micro-4 run is held to it by tests/test_cuda_conv.cpp too.
  const std::string what = describe(g);
  std::vector<float> want(conv_y_size(g));
  ref::conv2d_forward(g, x.data(), w.data(), bias.data(), want.data());
  kernel_testing::expect_close(out.floats[0], want, 1e-4, "forward " + what);
  ref::conv2d_forward_residual(g, x.data(), w.data(), res.data(), want.data());
  kernel_testing::expect_close(out.floats[1], want, 1e-4, "forward residual " + what);
  std::vector<float> want_dx = dx0;
  ref::conv2d_backward_data(g, dy.data(), w.data(), want_dx.data(), true);
  kernel_testing::expect_close(out.floats[3], want_dx, 1e-4, "backward data " + what);
  return out;
}

// Blocks of the forward GEMM's grid on the tile fma_tile picks under `micro`.
int64_t forward_tiles(const ConvGeom& g, conv_gemm::MicroTiles micro) {
  using namespace conv_gemm;
  const GemmDims fg = forward_gemm(make_dims(g));
  const Grid3 grid = fma_tile_grid(fg, fma_tile(fg, micro));
  return int64_t(grid.x) * grid.y;
}

TEST(CudaConvMicroTiles, AreBitwiseTheFourByFourTilesWithTheSameLaunches) {
  KD_REQUIRE_CUDA();
  // Forward and data passes of 40-48 rows (Micro-8 64x256, one partial tile row), of 64 (several
  // N tiles), of 67-70 and 130-131 rows (128x128, one and two tile rows, stride 2), and a 1x1.
  // Under the race check the first two at batch 1, float only (the bf16 entries run the same
  // block programs), which still span two 64x64 tiles in N.
  const std::vector<ConvGeom> all = {
      geom(3, 40, 9, 10, 48, 3, 3, 1, 1),   geom(2, 67, 9, 8, 70, 3, 3, 1, 1),
      geom(3, 64, 16, 16, 64, 3, 3, 1, 1),  geom(1, 130, 9, 10, 131, 3, 3, 2, 1),
      geom(2, 96, 8, 8, 64, 1, 1, 1, 0),
  };
  for (const ConvGeom& g : kernel_testing::shapes_for_build(all, 2)) {
    SCOPED_TRACE(describe(g));
    Outputs four, eight;
    {
      const ScopedEnv micro("KDLAB_CONV_MICRO", "4");
      four = run_convolutions(g, !kernel_testing::kRaceCheckBuild);
    }
    {
      const ScopedEnv micro("KDLAB_CONV_MICRO", "8");
      eight = run_convolutions(g, !kernel_testing::kRaceCheckBuild);
    }
    EXPECT_EQ(eight.launches, four.launches);
    for (size_t i = 0; i < four.floats.size(); ++i)
      EXPECT_TRUE(kernel_testing::same_bits(eight.floats[i], four.floats[i]))
          << "float output " << i;
    for (size_t i = 0; i < four.bf16s.size(); ++i)
      EXPECT_EQ(eight.bf16s[i], four.bf16s[i]) << "bf16 output " << i;
    if (!cuda_testing::emulated_device()) continue;
    // The forward ran the Micro-8 grid: its blocks scale as the two grids' sizes (the schedule
    // check runs every block the same number of times); the backward ran fewer blocks too.
    const int64_t tiles4 = forward_tiles(g, conv_gemm::MicroTiles::Never),
                  tiles8 = forward_tiles(g, conv_gemm::MicroTiles::Always);
    EXPECT_LT(tiles8, tiles4);
    EXPECT_EQ(int64_t(eight.forward_blocks) * tiles4, int64_t(four.forward_blocks) * tiles8);
    EXPECT_LT(eight.backward_blocks, four.backward_blocks);
  }
}

// The forward blocks of one call under KDLAB_CONV_MICRO=micro.
uint64_t forward_blocks(const ConvGeom& g, const char* micro) {
  const std::vector<float> x = uniform<float>(conv_x_size(g), 1, -1, 1),
                           w = uniform<float>(conv_w_size(g), 2, -1, 1);
  DeviceArray<float> d_x(x), d_w(w), y(conv_y_size(g));
  const ScopedEnv env("KDLAB_CONV_MICRO", micro);
  const uint64_t start = blocks_run();
  cuda_testing::gpu_kernels<float>().conv2d_forward(g, d_x.get(), d_w.get(), nullptr, y.get());
  return blocks_run() - start;
}

TEST(CudaConvMicroTiles, AutoTakesMicroEightOnlyWhereItsGridIsLarge) {
  KD_REQUIRE_CUDA();
  if (!cuda_testing::emulated_device()) GTEST_SKIP() << "counts the emulator's blocks";
  // 64 filters over 32x32 at batch 4: 16 Micro-8 blocks, below kWideTileMinBlocks: 64x64 tiles.
  const ConvGeom small = geom(4, 3, 32, 32, 64, 3, 3, 1, 1);
  EXPECT_EQ(forward_blocks(small, "auto"), forward_blocks(small, "4"));
  EXPECT_EQ(forward_blocks(small, "auto"), 4 * forward_blocks(small, "8"));
  // At batch 64 (one input channel and a 1x1 filter keep the emulator's work small): 256.
  const ConvGeom large = geom(64, 1, 32, 32, 64, 1, 1, 1, 0);
  EXPECT_EQ(forward_blocks(large, "auto"), forward_blocks(large, "8"));
  EXPECT_EQ(forward_blocks(large, "4"), 4 * forward_blocks(large, "auto"));
}

TEST(CudaConvMicroTiles, ABadValueIsRefusedNamingTheVariable) {
  KD_REQUIRE_CUDA();
  const ScopedEnv bad("KDLAB_CONV_MICRO", "16");
  const ConvGeom g = geom(1, 2, 3, 3, 40, 3, 3, 1, 1);
  DeviceArray<float> x(conv_x_size(g)), w(conv_w_size(g)), y(conv_y_size(g));
  try {
    cuda_testing::gpu_kernels<float>().conv2d_forward(g, x.get(), w.get(), nullptr, y.get());
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("KDLAB_CONV_MICRO: expected auto, 8 or 4, got '16'"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace kd
