// Tests of the CUDA implicit-GEMM convolution (kernels/cuda/conv2d.cu) against ref:: and, for
// forward, a naive oracle written here. Every pass in float and double on awkward and
// PreResNet/CIFAR-like shapes: forward must overwrite a pre-filled y; backward data and weight
// must add to pre-filled dx, dw, dbias (and leave dbias alone when it is null). Tolerances per
// element, relative to max(1, |want|): float 1e-4 (float accumulation of up to ~5e3 products of
// values in [-1, 1], split-K partials summed in float), double 1e-10. The weight pass (split-K
// into a workspace) must be bitwise identical run to run. The index maps themselves are proven on
// the host by tests/test_conv_gather.cpp.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <limits>

#include <string>
#include <type_traits>
#include <vector>

#include "tests/cuda_testing.h"
#include "tests/kernel_testing.h"

#include "kernels/conv2d.h"
#include "kernels/cuda/pointwise_gemm.h"

namespace {

using kd::ConvGeom;
using kd::cuda_testing::DeviceArray;
using kd::kernel_testing::expect_close;
using kd::kernel_testing::same_bits;
using kd::kernel_testing::uniform;

using kd::kernel_testing::describe;
using kd::kernel_testing::geom;

// Batch 1, odd channels, non-square images and filters, stride 1/2/3, pad 0/1/2, 1x1/3x3/5x5,
// a 1x1 output, padding wider than the filter, several M and N tiles, uneven split-K slices,
// then the PreResNet/CIFAR layer shapes (3x3 and 1x1, 32x32/16x16/8x8, stride 2 transitions).
const std::vector<ConvGeom> kAllShapes = {
    geom(1, 3, 7, 5, 5, 3, 3, 1, 1),      geom(2, 5, 6, 9, 7, 2, 3, 2, 0),
    geom(3, 7, 9, 8, 4, 5, 5, 1, 2),      geom(2, 3, 8, 6, 5, 1, 1, 1, 0),
    geom(3, 4, 9, 7, 6, 1, 1, 2, 0),      geom(1, 2, 4, 5, 3, 2, 3, 1, 2),
    geom(2, 3, 6, 5, 2, 6, 5, 1, 0),      geom(2, 2, 10, 11, 3, 3, 1, 3, 1),
    geom(2, 3, 5, 6, 4, 1, 1, 1, 2),      geom(1, 3, 3, 3, 2, 3, 3, 1, 0),
    geom(1, 1, 1, 1, 1, 1, 1, 1, 0),      geom(3, 5, 13, 11, 67, 3, 3, 1, 1),
    geom(2, 67, 9, 7, 70, 3, 3, 1, 1),    geom(5, 3, 32, 32, 16, 3, 3, 1, 1),
    geom(4, 16, 32, 32, 16, 3, 3, 1, 1),  geom(4, 16, 32, 32, 32, 3, 3, 2, 1),
    geom(4, 16, 32, 32, 32, 1, 1, 2, 0),  geom(3, 64, 16, 16, 64, 3, 3, 1, 1),
    geom(3, 64, 16, 16, 128, 1, 1, 2, 0), geom(2, 256, 8, 8, 64, 1, 1, 1, 0),
};
// Under the race check the first 12: every feature of the 67-channel, 70-filter shape (two N
// tiles, a reduction of 603 in many K tiles) is in the 67-filter one's passes at a quarter of the
// work, and that shape was most of each suite's ThreadSanitizer time.
const std::vector<ConvGeom> kShapes = kd::kernel_testing::shapes_for_build(kAllShapes, 12);

using kd::kernel_testing::conv_w_size;
using kd::kernel_testing::conv_x_size;
using kd::kernel_testing::conv_y_size;

template <class T>
double tolerance() {
  return sizeof(T) == sizeof(float) ? 1e-4 : 1e-10;
}
template <class T>
const char* type_name() {
  return sizeof(T) == sizeof(float) ? " float" : " double";
}

// y[n,k,oh,ow] = bias[k] + sum_{c,r,s} x[n,c,oh*stride-pad+r,ow*stride-pad+s] w[k,c,r,s], in
// double, independent of ref:: and of the GEMM view.
template <class T>
std::vector<T> oracle_forward(const ConvGeom& g, const std::vector<T>& x, const std::vector<T>& w,
                              const T* bias) {
  const int p = g.p(), q = g.q();
  std::vector<T> y(conv_y_size(g));
  for (int n = 0; n < g.n; ++n)
    for (int k = 0; k < g.k; ++k)
      for (int oh = 0; oh < p; ++oh)
        for (int ow = 0; ow < q; ++ow) {
          double acc = bias ? double(bias[k]) : 0.0;
          for (int c = 0; c < g.c; ++c)
            for (int r = 0; r < g.r; ++r)
              for (int s = 0; s < g.s; ++s) {
                const int ih = oh * g.stride - g.pad + r, iw = ow * g.stride - g.pad + s;
                if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
                  acc += double(x[((size_t(n) * g.c + c) * g.h + ih) * g.w + iw]) *
                         double(w[((size_t(k) * g.c + c) * g.r + r) * g.s + s]);
              }
          y[((size_t(n) * g.k + k) * p + oh) * q + ow] = T(acc);
        }
  return y;
}

// Runs `check` on every route the shape can take: the implicit GEMM, and for 1x1 stride-1
// shapes also cuBLAS (KDLAB_CONV_1X1=cublas).
template <class F>
void on_each_route(const ConvGeom& g, F check) {
  check();
  if (!kd::pointwise_gemm::applies(g)) return;
  SCOPED_TRACE("KDLAB_CONV_1X1=cublas");
  const kd::cuda_testing::ScopedEnv route("KDLAB_CONV_1X1", "cublas");
  check();
}

template <class T>
void check_forward(const ConvGeom& g) {
  const auto x = uniform<T>(conv_x_size(g), 1, -1, 1), w = uniform<T>(conv_w_size(g), 2, -1, 1),
             b = uniform<T>(g.k, 3, -1, 1);
  DeviceArray<T> dx_(x), dw_(w), db_(b);
  for (bool with_bias : {false, true}) {
    const std::string what = describe(g) + type_name<T>() + (with_bias ? " bias" : "");
    const T* bias = with_bias ? b.data() : nullptr;
    std::vector<T> want(conv_y_size(g));
    kd::ref::conv2d_forward(g, x.data(), w.data(), bias, want.data());
    DeviceArray<T> y(std::vector<T>(conv_y_size(g), T(777)));  // forward must overwrite
    kd::cuda_testing::gpu_kernels<T>().conv2d_forward(g, dx_.get(), dw_.get(), with_bias ? db_.get() : nullptr, y.get());
    const auto got = y.host();
    expect_close(got, want, tolerance<T>(), "forward vs ref " + what);
    expect_close(got, oracle_forward(g, x, w, bias), tolerance<T>(), "forward vs oracle " + what);
  }
}

template <class T>
void check_backward_data(const ConvGeom& g) {
  const auto w = uniform<T>(conv_w_size(g), 2, -1, 1), dy = uniform<T>(conv_y_size(g), 4, -1, 1),
             dx0 = uniform<T>(conv_x_size(g), 5, -1, 1);
  std::vector<T> want = dx0;
  kd::ref::conv2d_backward_data(g, dy.data(), w.data(), want.data(), true);
  DeviceArray<T> d_w(w), d_dy(dy), d_dx(dx0);
  kd::cuda_testing::gpu_kernels<T>().conv2d_backward_data(g, d_dy.get(), d_w.get(), d_dx.get(), true);
  expect_close(d_dx.host(), want, tolerance<T>(), "backward data " + describe(g) + type_name<T>());
  // Assigned: every element written, the NaN it held never read (1x1 stride 2 leaves pixels
  // that no output sees; they must become 0).
  std::vector<T> want_set(conv_x_size(g));
  kd::ref::conv2d_backward_data(g, dy.data(), w.data(), want_set.data(), false);
  DeviceArray<T> d_set(std::vector<T>(conv_x_size(g), std::numeric_limits<T>::quiet_NaN()));
  kd::cuda_testing::gpu_kernels<T>().conv2d_backward_data(g, d_dy.get(), d_w.get(), d_set.get(), false);
  expect_close(d_set.host(), want_set, tolerance<T>(),
               "backward data assigned " + describe(g) + type_name<T>());
}

template <class T>
void check_backward_weight(const ConvGeom& g) {
  const auto x = uniform<T>(conv_x_size(g), 1, -1, 1), dy = uniform<T>(conv_y_size(g), 4, -1, 1),
             dw0 = uniform<T>(conv_w_size(g), 6, -1, 1), db0 = uniform<T>(g.k, 7, -1, 1);
  std::vector<T> want_dw = dw0, want_db = db0;
  kd::ref::conv2d_backward_weight(g, x.data(), dy.data(), want_dw.data(), want_db.data());
  const std::string what = describe(g) + type_name<T>();
  DeviceArray<T> d_x(x), d_dy(dy), d_dw(dw0), d_db(db0);
  kd::cuda_testing::gpu_kernels<T>().conv2d_backward_weight(g, d_x.get(), d_dy.get(), d_dw.get(), d_db.get());
  expect_close(d_dw.host(), want_dw, tolerance<T>(), "backward weight dw " + what);
  expect_close(d_db.host(), want_db, tolerance<T>(), "backward weight dbias " + what);

  // Without dbias: dw the same, the (untouched) bias gradient not needed.
  DeviceArray<T> d_dw2(dw0);
  kd::cuda_testing::gpu_kernels<T>().conv2d_backward_weight(g, d_x.get(), d_dy.get(), d_dw2.get(), static_cast<T*>(nullptr));
  expect_close(d_dw2.host(), want_dw, tolerance<T>(), "backward weight, null dbias, " + what);
}

TEST(CudaConvKernels, ForwardMatchesRefAndOracle) {
  KD_REQUIRE_CUDA();
  for (const ConvGeom& g : kShapes) {
    on_each_route(g, [&] {
      check_forward<float>(g);
      check_forward<double>(g);
    });
  }
}

// The residual forward is the forward then add_forward, bit for bit, on the device (the GEMM's
// epilogue adds it, or on the cuBLAS route a second pass); and on cuDNN's table when separate.
// cuDNN's fold (kernels/cudnn/conv2d_fold.cu) runs its own algorithm: close to ref only.
template <class T>
void check_forward_residual(const ConvGeom& g, const kd::KernelTable<T>& table,
                            const std::string& path, bool bitwise_forward_then_add = true) {
  const auto x = uniform<T>(conv_x_size(g), 1, -1, 1), w = uniform<T>(conv_w_size(g), 2, -1, 1),
             res = uniform<T>(conv_y_size(g), 8, -1, 1);
  DeviceArray<T> d_x(x), d_w(w), d_res(res), conv(std::vector<T>(conv_y_size(g)));
  DeviceArray<T> sum(std::vector<T>(conv_y_size(g))), fused(std::vector<T>(conv_y_size(g), T(777)));
  table.conv2d_forward(g, d_x.get(), d_w.get(), nullptr, conv.get());
  kd::cuda_testing::gpu_kernels<T>().add_forward(int64_t(conv_y_size(g)), conv.get(), d_res.get(),
                                                 sum.get());
  table.conv2d_forward_residual(g, d_x.get(), d_w.get(), d_res.get(), fused.get());
  const std::string what = path + " " + describe(g) + type_name<T>();
  if (bitwise_forward_then_add)
    kd::kernel_testing::expect_bitwise(fused.host(), sum.host(), "residual forward " + what);
  std::vector<T> want(conv_y_size(g));
  kd::ref::conv2d_forward_residual(g, x.data(), w.data(), res.data(), want.data());
  // cuDNN's float algorithms (on the emulated GPU, the CPU's Winograd) round differently.
  const bool cudnn_float = path.rfind("cudnn", 0) == 0 && std::is_same<T, float>::value;
  expect_close(fused.host(), want, cudnn_float ? 1e-3 : tolerance<T>(),
               "residual forward vs ref " + what);
}

TEST(CudaConvKernels, ForwardWithResidualIsForwardThenAdd) {
  KD_REQUIRE_CUDA();
  for (const ConvGeom& g : kShapes) {
    on_each_route(g, [&] {
      check_forward_residual<float>(g, kd::cuda_testing::gpu_kernels<float>(), "native");
      check_forward_residual<double>(g, kd::cuda_testing::gpu_kernels<double>(), "native");
    });
    if (!kd::cuda_testing::gpu().has_cudnn) continue;
    check_forward_residual<float>(g, kd::cuda_testing::cudnn_kernels<float>(), "cudnn fold",
                                  /*bitwise_forward_then_add=*/false);
    const kd::cuda_testing::ScopedEnv separate("KDLAB_CUDNN_RESIDUAL", "separate");
    check_forward_residual<float>(g, kd::cuda_testing::cudnn_kernels<float>(), "cudnn");
    check_forward_residual<double>(g, kd::cuda_testing::cudnn_kernels<double>(), "cudnn");
  }
}

TEST(CudaConvKernels, BackwardDataAccumulatesLikeRef) {
  KD_REQUIRE_CUDA();
  for (const ConvGeom& g : kShapes) {
    on_each_route(g, [&] {
      check_backward_data<float>(g);
      check_backward_data<double>(g);
    });
  }
}

TEST(CudaConvKernels, BackwardWeightAccumulatesLikeRef) {
  KD_REQUIRE_CUDA();
  for (const ConvGeom& g : kShapes) {
    check_backward_weight<float>(g);
    check_backward_weight<double>(g);
  }
}

// conv2d_backward is conv2d_backward_data then conv2d_backward_weight, bit for bit (dx assigned
// or accumulated, with and without dbias, without dx), in one launch fewer where it fuses them
// (the implicit GEMM with a data pass), in as many otherwise.
template <class T>
void check_backward_in_one_call(const ConvGeom& g) {
  const auto x = uniform<T>(conv_x_size(g), 1, -1, 1), w = uniform<T>(conv_w_size(g), 2, -1, 1),
             dy = uniform<T>(conv_y_size(g), 4, -1, 1), dx0 = uniform<T>(conv_x_size(g), 5, -1, 1),
             dw0 = uniform<T>(conv_w_size(g), 6, -1, 1), db0 = uniform<T>(g.k, 7, -1, 1);
  const kd::Backend& gpu = kd::cuda_testing::gpu();
  const kd::KernelTable<T>& k = kd::cuda_testing::gpu_kernels<T>();
  DeviceArray<T> d_x(x), d_w(w), d_dy(dy);
  const bool fuses = !(kd::pointwise_gemm::applies(g) && std::getenv("KDLAB_CONV_1X1"));
  for (int with_dx : {0, 1})
    for (bool accumulate : {false, true})
      for (bool with_bias : {false, true}) {
        // The race-check build keeps the variants whose block programs differ.
        if ((!with_dx || kd::kernel_testing::kRaceCheckBuild) && accumulate) continue;
        const std::string what = describe(g) + type_name<T>() + (with_dx ? " dx" : " no dx") +
                                  (accumulate ? " accumulated" : "") + (with_bias ? " bias" : "");
        DeviceArray<T> dx1(dx0), dw1(dw0), db1(db0), dx2(dx0), dw2(dw0), db2(db0);
        T* bias1 = with_bias ? db1.get() : nullptr;
        T* bias2 = with_bias ? db2.get() : nullptr;
        uint64_t start = gpu.launch_count();
        if (with_dx) k.conv2d_backward_data(g, d_dy.get(), d_w.get(), dx1.get(), accumulate);
        k.conv2d_backward_weight(g, d_x.get(), d_dy.get(), dw1.get(), bias1);
        const uint64_t separate = gpu.launch_count() - start;
        start = gpu.launch_count();
        k.conv2d_backward(g, d_x.get(), d_w.get(), d_dy.get(), with_dx ? dx2.get() : nullptr,
                          accumulate, dw2.get(), bias2);
        const uint64_t together = gpu.launch_count() - start;
        EXPECT_TRUE(same_bits(dx2.host(), dx1.host())) << "dx, " << what;
        EXPECT_TRUE(same_bits(dw2.host(), dw1.host())) << "dw, " << what;
        EXPECT_TRUE(same_bits(db2.host(), db1.host())) << "dbias, " << what;
        EXPECT_EQ(together, separate - (with_dx && fuses ? 1 : 0)) << "launches, " << what;
      }
}

TEST(CudaConvKernels, BackwardInOneCallIsBothPassesInOneLaunch) {
  KD_REQUIRE_CUDA();
  // Under the race check: 8 shapes (split-K, several tiles, 1x1), float only (161 s before).
  for (const ConvGeom& g : kd::kernel_testing::shapes_for_build(kAllShapes, 8))
    on_each_route(g, [&] {
      check_backward_in_one_call<float>(g);
      if (!kd::kernel_testing::kRaceCheckBuild) check_backward_in_one_call<double>(g);
    });
}

// Twice the accumulation from the same start gives the same bits; an uneven split-K shape
// (K = 429 in 64-wide slices) and a many-slice one (K = 8 * 32 * 32).
template <class T>
void check_weight_determinism(const ConvGeom& g) {
  const auto x = uniform<T>(conv_x_size(g), 1, -1, 1), dy = uniform<T>(conv_y_size(g), 4, -1, 1),
             dw0 = uniform<T>(conv_w_size(g), 6, -1, 1), db0 = uniform<T>(g.k, 7, -1, 1);
  DeviceArray<T> d_x(x), d_dy(dy);
  std::vector<T> dw[2], db[2];
  for (int run = 0; run < 2; ++run) {
    DeviceArray<T> d_dw(dw0), d_db(db0);
    kd::cuda_testing::gpu_kernels<T>().conv2d_backward_weight(g, d_x.get(), d_dy.get(), d_dw.get(), d_db.get());
    dw[run] = d_dw.host(), db[run] = d_db.host();
  }
  const std::string what = describe(g) + type_name<T>();
  EXPECT_TRUE(same_bits(dw[0], dw[1])) << "dw differs between runs, " << what;
  EXPECT_TRUE(same_bits(db[0], db[1])) << "dbias differs between runs, " << what;
}

TEST(CudaConvKernels, BackwardWeightIsBitwiseDeterministic) {
  KD_REQUIRE_CUDA();
  const std::vector<ConvGeom> shapes = kd::kernel_testing::shapes_for_build(
      std::vector<ConvGeom>{geom(3, 5, 13, 11, 67, 3, 3, 1, 1), geom(8, 16, 32, 32, 16, 3, 3, 1, 1)},
      1);
  for (const ConvGeom& g : shapes) {
    check_weight_determinism<float>(g);
    check_weight_determinism<double>(g);
  }
}

// KDLAB_CONV_FOLD=separate sums the weight pass's split-K slices in a second launch
// (splitk_accumulate_kernel, the path of weights with more tiles than the ticket table): the
// in-launch fold's bits, one launch more, for the separate pass and the fused backward alike.
template <class T>
void check_separate_fold(const ConvGeom& g) {
  const auto x = uniform<T>(conv_x_size(g), 1, -1, 1), w = uniform<T>(conv_w_size(g), 2, -1, 1),
             dy = uniform<T>(conv_y_size(g), 4, -1, 1), dw0 = uniform<T>(conv_w_size(g), 6, -1, 1),
             db0 = uniform<T>(g.k, 7, -1, 1);
  DeviceArray<T> d_x(x), d_w(w), d_dy(dy);
  const kd::Backend& gpu = kd::cuda_testing::gpu();
  const kd::KernelTable<T>& k = kd::cuda_testing::gpu_kernels<T>();
  struct Run {
    std::vector<T> dw, db, dx;
    uint64_t weight_launches = 0, backward_launches = 0;
  };
  auto run = [&] {
    Run r;
    DeviceArray<T> dw(dw0), db(db0);
    uint64_t start = gpu.launch_count();
    k.conv2d_backward_weight(g, d_x.get(), d_dy.get(), dw.get(), db.get());
    r.weight_launches = gpu.launch_count() - start;
    DeviceArray<T> dw2(dw0), db2(db0), dx(conv_x_size(g));
    start = gpu.launch_count();
    k.conv2d_backward(g, d_x.get(), d_w.get(), d_dy.get(), dx.get(), false, dw2.get(), db2.get());
    r.backward_launches = gpu.launch_count() - start;
    EXPECT_TRUE(same_bits(dw2.host(), dw.host())) << "fused backward's dw";
    r.dw = dw.host(), r.db = db.host(), r.dx = dx.host();
    return r;
  };
  const Run in_launch = run();
  const kd::cuda_testing::ScopedEnv separate("KDLAB_CONV_FOLD", "separate");
  const Run apart = run();
  const std::string what = describe(g) + type_name<T>();
  EXPECT_TRUE(same_bits(apart.dw, in_launch.dw)) << "dw, " << what;
  EXPECT_TRUE(same_bits(apart.db, in_launch.db)) << "dbias, " << what;
  EXPECT_TRUE(same_bits(apart.dx, in_launch.dx)) << "dx, " << what;
  EXPECT_EQ(apart.weight_launches, in_launch.weight_launches + 1) << what;
  EXPECT_EQ(apart.backward_launches, in_launch.backward_launches + 1) << what;
  std::vector<T> want = dw0;  // ref:: accumulates too
  kd::ref::conv2d_backward_weight(g, x.data(), dy.data(), want.data(), static_cast<T*>(nullptr));
  expect_close(apart.dw, want, tolerance<T>(), "separate fold vs ref, " + what);
}

TEST(CudaConvKernels, SeparateSplitKFoldHasTheInLaunchFoldsBits) {
  KD_REQUIRE_CUDA();
  // K = 429 in uneven slices; K = 8 * 32 * 32 in many (not under TSan: the same fold kernel).
  for (const ConvGeom& g : kd::kernel_testing::shapes_for_build<ConvGeom>(
           {geom(3, 5, 13, 11, 67, 3, 3, 1, 1), geom(8, 16, 32, 32, 16, 3, 3, 1, 1)}, 1)) {
    check_separate_fold<float>(g);
    if (!kd::kernel_testing::kRaceCheckBuild) check_separate_fold<double>(g);  // same fold code
  }
  const kd::cuda_testing::ScopedEnv bad("KDLAB_CONV_FOLD", "later");
  try {
    check_separate_fold<float>(geom(1, 2, 3, 3, 2, 3, 3, 1, 1));
    ADD_FAILURE() << "no error";
  } catch (const kd::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "KDLAB_CONV_FOLD: expected separate or in-launch, got 'later'"),
              std::string::npos)
        << e.what();
  }
}

// A bottleneck's last convolution (1x1, with the shortcut add): one launch on the implicit GEMM,
// two on the cuBLAS route; any other route name is refused, naming the variable.
TEST(CudaConvKernels, PointwiseRouteSwitch) {
  KD_REQUIRE_CUDA();
  const ConvGeom g = geom(2, 16, 8, 8, 64, 1, 1, 1, 0);
  DeviceArray<float> x(uniform<float>(conv_x_size(g), 1, -1, 1)),
      w(uniform<float>(conv_w_size(g), 2, -1, 1)), res(uniform<float>(conv_y_size(g), 3, -1, 1)),
      y(conv_y_size(g));
  const kd::Backend& gpu = kd::cuda_testing::gpu();
  auto residual_launches = [&] {
    const uint64_t before = gpu.launch_count();
    gpu.f32.conv2d_forward_residual(g, x.get(), w.get(), res.get(), y.get());
    return gpu.launch_count() - before;
  };
  EXPECT_EQ(residual_launches(), 1u) << "implicit GEMM (the default)";
  {
    const kd::cuda_testing::ScopedEnv route("KDLAB_CONV_1X1", "native");
    EXPECT_EQ(residual_launches(), 1u) << "implicit GEMM";
  }
  {
    const kd::cuda_testing::ScopedEnv route("KDLAB_CONV_1X1", "cublas");
    EXPECT_EQ(residual_launches(), 2u) << "cuBLAS, then the add";
  }
  const kd::cuda_testing::ScopedEnv route("KDLAB_CONV_1X1", "cuDNN");
  try {
    residual_launches();
    ADD_FAILURE() << "no error";
  } catch (const kd::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("KDLAB_CONV_1X1: expected native or cublas, got 'cuDNN'"),
              std::string::npos)
        << e.what();
  }
}

// An empty batch launches nothing and touches nothing.
TEST(CudaConvKernels, EmptyBatchIsANoOp) {
  KD_REQUIRE_CUDA();
  const ConvGeom g = geom(0, 3, 5, 5, 4, 3, 3, 1, 1);
  DeviceArray<float> x(size_t(0)), dy(size_t(0)), w(std::vector<float>(conv_w_size(g), 1.f)),
      dw(std::vector<float>(conv_w_size(g), 2.f)), db(std::vector<float>(4, 3.f));
  kd::cuda_testing::gpu_kernels<float>().conv2d_forward(g, x.get(), w.get(), db.get(), dy.get());
  kd::cuda_testing::gpu_kernels<float>().conv2d_backward_data(g, dy.get(), w.get(), x.get(), true);
  kd::cuda_testing::gpu_kernels<float>().conv2d_backward_weight(g, x.get(), dy.get(), dw.get(), db.get());
  EXPECT_EQ(dw.host(), std::vector<float>(conv_w_size(g), 2.f));
  EXPECT_EQ(db.host(), std::vector<float>(4, 3.f));
}

}  // namespace
