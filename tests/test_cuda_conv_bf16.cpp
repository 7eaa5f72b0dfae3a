// --precision bf16's convolutions on our GPU kernels (kernels/cuda/conv2d.cu, the _bf16 entries
// of kernels/conv2d.h): the implicit GEMM reading bf16 x, w, residual and dy and writing bf16 y,
// dx and dw, in T (float or double) inside. Their contract is the T entry of the same table on
// the widened operands with each output rounded once, so everything is compared BITWISE against
// the T kernels (FMA, every shape on the implicit GEMM): y with bias, y with residual, dx
// assigned and accumulated (bf16(T(dx) + the T kernel's dx)), dw accumulated the same way, and
// dbias (T) equal; plus the same launches (and, on the emulator, tensor-core instructions) as the
// T kernels. Shapes: the conv suite's (split-K with and without the in-launch fold, 1x1, strides,
// padding). Under --tf32 the float entries run on TF32 tensor cores and the bf16 ones too (a bf16
// value is exact in TF32), with the same contract.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/conv2d.h"
#include "tests/cuda_testing.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using cuda_testing::DeviceArray;
using kernel_testing::bits;
using kernel_testing::describe;
using kernel_testing::geom;
using kernel_testing::same_bits;
using kernel_testing::rounded;
using kernel_testing::uniform;
using kernel_testing::widened;

using kd::kernel_testing::conv_w_size;
using kd::kernel_testing::conv_x_size;
using kd::kernel_testing::conv_y_size;

// bf16(T(old) + add), element by element: an accumulated bf16 output.
template <class T>
std::vector<bf16> added(const std::vector<bf16>& old, const std::vector<T>& add) {
  std::vector<bf16> out(old.size());
  for (size_t i = 0; i < old.size(); ++i) out[i] = to_bf16_rn(T(bf16_to<T>(old[i]) + add[i]));
  return out;
}

// Tensor-core instructions run so far on the emulated device (0 elsewhere).
uint64_t mma_tiles_run() {
  const EmulatorControls* emu = cuda_testing::gpu().emulator;
  return emu ? emu->mma_tiles_run() : 0;
}

// tensor_cores: the math mode puts float convolutions on tensor cores (--tf32).
template <class T>
void check_bf16_conv(const ConvGeom& g, bool tensor_cores = false) {
  const Backend& gpu = cuda_testing::gpu();
  const KernelTable<T>& k = cuda_testing::gpu_kernels<T>();
  const std::vector<bf16> x = rounded(uniform<T>(conv_x_size(g), 1, -1, 1)),
                          w = rounded(uniform<T>(conv_w_size(g), 2, -1, 1)),
                          r = rounded(uniform<T>(conv_y_size(g), 3, -1, 1)),
                          dy = rounded(uniform<T>(conv_y_size(g), 4, -1, 1)),
                          dx0 = rounded(uniform<T>(conv_x_size(g), 5, -1, 1)),
                          dw0 = rounded(uniform<T>(conv_w_size(g), 6, -1, 1));
  const std::vector<T> bias = uniform<T>(g.k, 7, -1, 1), db0 = uniform<T>(g.k, 8, -1, 1);
  DeviceArray<bf16> d_x(x), d_w(w), d_r(r), d_dy(dy);
  DeviceArray<T> d_bias(bias), wx(widened<T>(x)), ww(widened<T>(w)), wr(widened<T>(r)),
      wdy(widened<T>(dy));

  // Forward, with bias and with the residual.
  DeviceArray<bf16> y(conv_y_size(g)), yr(conv_y_size(g));
  DeviceArray<T> y_t(conv_y_size(g)), yr_t(conv_y_size(g));
  uint64_t start = gpu.launch_count(), mma_start = mma_tiles_run();
  k.conv2d_forward_bf16(g, d_x.get(), d_w.get(), d_bias.get(), y.get());
  k.conv2d_forward_residual_bf16(g, d_x.get(), d_w.get(), d_r.get(), yr.get());
  const uint64_t forward16 = gpu.launch_count() - start, mma16 = mma_tiles_run() - mma_start;
  start = gpu.launch_count(), mma_start = mma_tiles_run();
  k.conv2d_forward(g, wx.get(), ww.get(), d_bias.get(), y_t.get());
  k.conv2d_forward_residual(g, wx.get(), ww.get(), wr.get(), yr_t.get());
  EXPECT_EQ(forward16, gpu.launch_count() - start) << "forward launches";
  EXPECT_EQ(mma16, mma_tiles_run() - mma_start) << "forward tensor-core instructions";
  if (tensor_cores && cuda_testing::emulated_device() && g.n > 0) {
    EXPECT_GT(mma16, 0u) << "the bf16 forward did not run on tensor cores";
  }
  EXPECT_EQ(bits(y.host()), bits(rounded(y_t.host()))) << "y = conv + bias";
  EXPECT_EQ(bits(yr.host()), bits(rounded(yr_t.host()))) << "y = conv + residual";

  // Backward: the T kernel's contributions, dx assigned and dw, dbias added to zeros.
  DeviceArray<T> dx_t(conv_x_size(g)), dw_t(std::vector<T>(conv_w_size(g), T(0))), db_t(db0);
  start = gpu.launch_count(), mma_start = mma_tiles_run();
  k.conv2d_backward(g, wx.get(), ww.get(), wdy.get(), dx_t.get(), false, dw_t.get(), db_t.get());
  const uint64_t backward_t = gpu.launch_count() - start,
                 backward_mma_t = mma_tiles_run() - mma_start;
  const std::vector<T> dx_c = dx_t.host(), dw_c = dw_t.host();
  for (int with_dx : {0, 1})
    for (bool accumulate : {false, true}) {
      if (!with_dx && accumulate) continue;
      SCOPED_TRACE(std::string(with_dx ? "dx" : "no dx") + (accumulate ? " accumulated" : ""));
      DeviceArray<bf16> dx(dx0), dw(dw0);
      DeviceArray<T> db(db0);
      start = gpu.launch_count(), mma_start = mma_tiles_run();
      k.conv2d_backward_bf16(g, d_x.get(), d_w.get(), d_dy.get(), with_dx ? dx.get() : nullptr,
                             accumulate, dw.get(), db.get());
      if (with_dx) {
        EXPECT_EQ(gpu.launch_count() - start, backward_t) << "backward launches";
        EXPECT_EQ(mma_tiles_run() - mma_start, backward_mma_t) << "backward mma instructions";
        EXPECT_EQ(bits(dx.host()), bits(accumulate ? added(dx0, dx_c) : rounded(dx_c)));
      }
      EXPECT_EQ(bits(dw.host()), bits(added(dw0, dw_c))) << "dw";
      EXPECT_TRUE(same_bits(db.host(), db_t.host())) << "dbias";
    }
}

TEST(CudaConvBf16, EntriesAreTheFmaKernelsOnWidenedOperandsRoundedOnce) {
  KD_REQUIRE_CUDA();
  const std::vector<ConvGeom> all = {
      geom(1, 3, 7, 5, 5, 3, 3, 1, 1),     geom(2, 5, 6, 9, 7, 2, 3, 2, 0),
      geom(3, 7, 9, 8, 4, 5, 5, 1, 2),     geom(2, 3, 8, 6, 5, 1, 1, 1, 0),
      geom(3, 4, 9, 7, 6, 1, 1, 2, 0),     geom(3, 5, 13, 11, 67, 3, 3, 1, 1),
      geom(2, 67, 9, 7, 70, 3, 3, 1, 1),   geom(1, 1, 1, 1, 1, 1, 1, 1, 0),
      geom(4, 16, 32, 32, 16, 3, 3, 1, 1), geom(4, 16, 32, 32, 32, 1, 1, 2, 0),
      geom(2, 256, 8, 8, 64, 1, 1, 1, 0),
  };
  // The race check stops before the 67-channel, 70-filter shape (test_cuda_conv.cpp says why).
  for (const ConvGeom& g : kernel_testing::shapes_for_build(all, 6)) {
    SCOPED_TRACE(describe(g));
    check_bf16_conv<float>(g);
    if (!kernel_testing::kRaceCheckBuild) check_bf16_conv<double>(g);
  }
}

// With the split-K slices summed by the separate launch (KDLAB_CONV_FOLD=separate; the path of
// weights too large for the in-launch fold), the same contract: bf16(T(dw) + the slices' sum).
TEST(CudaConvBf16, SeparateSplitKFoldKeepsTheContract) {
  KD_REQUIRE_CUDA();
  const cuda_testing::ScopedEnv separate("KDLAB_CONV_FOLD", "separate");
  for (const ConvGeom& g : kernel_testing::shapes_for_build<ConvGeom>(
           {geom(3, 5, 13, 11, 67, 3, 3, 1, 1), geom(4, 16, 32, 32, 16, 3, 3, 1, 1)}, 1)) {
    SCOPED_TRACE(describe(g));
    check_bf16_conv<float>(g);
  }
}

// --tf32: the bf16 entries multiply on tensor cores (register-staged loads into the tensor-core
// tiles), and are still the float entries (now TF32 kernels) on the widened operands, rounded
// once, bit for bit: uneven split-K, 1x1, stride 2, a single output, and N and M tails.
TEST(CudaConvBf16, Tf32ModeRunsTensorCoresWithTheSameContract) {
  KD_REQUIRE_CUDA();
  const cuda_testing::ScopedMathMode tf32(false, true);
  const std::vector<ConvGeom> all = {
      geom(3, 5, 13, 11, 67, 3, 3, 1, 1), geom(2, 5, 6, 9, 7, 2, 3, 2, 0),
      geom(3, 4, 9, 7, 6, 1, 1, 2, 0),    geom(1, 1, 1, 1, 1, 1, 1, 1, 0),
      geom(2, 67, 9, 7, 70, 3, 3, 1, 1)};
  for (const ConvGeom& g : kernel_testing::shapes_for_build(all, 2)) {
    SCOPED_TRACE(describe(g));
    check_bf16_conv<float>(g, true);
  }
}

}  // namespace
}  // namespace kd
