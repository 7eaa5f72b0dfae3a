// Tests for kernels/cuda/linear.cu (cuBLAS GEMMs plus our bias kernels).
// Host, every build (LinearGemmPlan): the row-major -> column-major GEMM mapping of
// kernels/cuda/linear_gemm.h replayed through a plain column-major GEMM loop against ref::, with
// the leading dimensions BLAS demands: proves the arguments cuBLAS receives without a GPU.
// Device (CudaLinear*): cuda:: against ref:: in float and double on awkward sizes, forward
// assignment over garbage, backward accumulation into prefilled gradients, the empty inner
// dimension, bitwise-repeatable backward, the TF32 mode, and one counted launch per library call.
// Float tolerance 1e-4 relative with TF32 off: plain FP32 FMA sums of at most 400 products of
// values in [-1, 1] stay near 1e-6; TF32 (10-bit mantissa) would need ~1e-2 and gets its own test.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/linear_gemm.h"
#include "kernels/linear.h"
#include "tests/kernel_testing.h"
#include "tests/cuda_testing.h"

namespace kd {
namespace {

using namespace kernel_testing;

// {batch, in, out}: ones, batch 1, out 1, odd primes, LeNet's 400x120 and 84x10.
const LinearGeom kGeoms[] = {{1, 1, 1},     {1, 7, 3},     {3, 5, 1},
                             {13, 37, 11},  {64, 400, 120}, {5, 84, 10}};

std::string label(const LinearGeom& g) {
  return "batch=" + std::to_string(g.batch) + " in=" + std::to_string(g.in) +
         " out=" + std::to_string(g.out);
}

// C = op(A) op(B) + beta C, column-major, in double, as BLAS defines it.
void replay(const linear_gemm::ColumnMajorGemm& p, const std::vector<double>& a,
            const std::vector<double>& b, std::vector<double>& c, double beta) {
  const int64_t a_cols = p.trans_a ? p.m : p.k, a_rows = p.trans_a ? p.k : p.m;
  const int64_t b_cols = p.trans_b ? p.k : p.n, b_rows = p.trans_b ? p.n : p.k;
  // BLAS argument rules, and each operand is exactly the packed array handed over.
  ASSERT_GE(p.lda, a_rows);
  ASSERT_GE(p.ldb, b_rows);
  ASSERT_GE(p.ldc, p.m);
  ASSERT_EQ(int64_t(p.lda) * a_cols, int64_t(a.size()));
  ASSERT_EQ(int64_t(p.ldb) * b_cols, int64_t(b.size()));
  ASSERT_EQ(int64_t(p.ldc) * p.n, int64_t(c.size()));
  for (int j = 0; j < p.n; ++j)
    for (int i = 0; i < p.m; ++i) {
      double acc = 0;
      for (int l = 0; l < p.k; ++l) {
        const double av = p.trans_a ? a[l + int64_t(i) * p.lda] : a[i + int64_t(l) * p.lda];
        const double bv = p.trans_b ? b[j + int64_t(l) * p.ldb] : b[l + int64_t(j) * p.ldb];
        acc += av * bv;
      }
      double& out = c[i + int64_t(j) * p.ldc];
      out = acc + beta * out;
    }
}

TEST(LinearGemmPlan, ColumnMajorCallsReproduceRef) {
  uint64_t seed = 7000;
  for (const LinearGeom& g : kGeoms) {
    SCOPED_TRACE(label(g));
    const size_t nx = size_t(g.batch) * g.in, nw = size_t(g.out) * g.in,
                 ny = size_t(g.batch) * g.out;
    auto x = uniform<double>(nx, seed++, -1, 1), w = uniform<double>(nw, seed++, -1, 1);
    auto dy = uniform<double>(ny, seed++, -1, 1);
    auto y_ref = uniform<double>(ny, seed++, -1, 1), y_plan = y_ref;
    ref::linear_forward<double>(g, x.data(), w.data(), nullptr, y_ref.data());
    replay(linear_gemm::forward(g), w, x, y_plan, 0.0);
    expect_close(y_plan, y_ref, 1e-12, "forward");

    auto dx_ref = uniform<double>(nx, seed++, -1, 1), dx_plan = dx_ref;
    ref::linear_backward_data<double>(g, dy.data(), w.data(), dx_ref.data());
    replay(linear_gemm::backward_data(g), w, dy, dx_plan, 1.0);
    expect_close(dx_plan, dx_ref, 1e-12, "backward data");

    auto dw_ref = uniform<double>(nw, seed++, -1, 1), dw_plan = dw_ref;
    ref::linear_backward_weight<double>(g, x.data(), dy.data(), dw_ref.data(), nullptr);
    replay(linear_gemm::backward_weight(g), x, dy, dw_plan, 1.0);
    expect_close(dw_plan, dw_ref, 1e-12, "backward weight");
  }
}

using cuda_testing::DeviceArray;

using cuda_testing::ScopedMathMode;

template <class T>
void check_against_ref(const LinearGeom& g, uint64_t seed, double tol) {
  SCOPED_TRACE(label(g));
  const size_t nx = size_t(g.batch) * g.in, nw = size_t(g.out) * g.in,
               ny = size_t(g.batch) * g.out;
  auto x = uniform<T>(nx, seed, -1, 1), w = uniform<T>(nw, seed + 1, -1, 1);
  auto bias = uniform<T>(g.out, seed + 2, -1, 1), dy = uniform<T>(ny, seed + 3, -1, 1);
  auto garbage = uniform<T>(ny, seed + 4, 50, 60);  // forward must overwrite it
  auto dx0 = uniform<T>(nx, seed + 5, -1, 1), dw0 = uniform<T>(nw, seed + 6, -1, 1);
  auto db0 = uniform<T>(g.out, seed + 7, -1, 1);
  DeviceArray<T> d_x(x), d_w(w), d_bias(bias), d_dy(dy);

  for (bool with_bias : {true, false}) {
    std::vector<T> y_ref(ny);
    ref::linear_forward<T>(g, x.data(), w.data(), with_bias ? bias.data() : nullptr,
                           y_ref.data());
    DeviceArray<T> d_y(garbage);
    cuda_testing::gpu_kernels<T>().linear_forward(g, d_x.get(), d_w.get(), with_bias ? d_bias.get() : nullptr,
                            d_y.get());
    expect_close(d_y.host(), y_ref, tol, with_bias ? "forward with bias" : "forward");
  }

  std::vector<T> dx_ref = dx0, dw_ref = dw0, db_ref = db0;
  ref::linear_backward_data<T>(g, dy.data(), w.data(), dx_ref.data());
  ref::linear_backward_weight<T>(g, x.data(), dy.data(), dw_ref.data(), db_ref.data());
  DeviceArray<T> d_dx(dx0), d_dw(dw0), d_db(db0);
  cuda_testing::gpu_kernels<T>().linear_backward_data(g, d_dy.get(), d_w.get(), d_dx.get());
  cuda_testing::gpu_kernels<T>().linear_backward_weight(g, d_x.get(), d_dy.get(), d_dw.get(), d_db.get());
  expect_close(d_dx.host(), dx_ref, tol, "dx (accumulated)");
  expect_close(d_dw.host(), dw_ref, tol, "dw (accumulated)");
  expect_close(d_db.host(), db_ref, tol, "dbias (accumulated)");
}

TEST(CudaLinear, FloatMatchesRefAndAccumulates) {
  KD_REQUIRE_CUDA();
  ScopedMathMode fp32(false, false);
  uint64_t seed = 7100;
  for (const LinearGeom& g : kGeoms) check_against_ref<float>(g, seed += 10, 1e-4);
}

TEST(CudaLinear, DoubleMatchesRefAndAccumulates) {
  KD_REQUIRE_CUDA();
  uint64_t seed = 7200;
  for (const LinearGeom& g : kGeoms) check_against_ref<double>(g, seed += 10, 1e-10);
}

TEST(CudaLinear, EmptyInnerDimensionAssignsBias) {
  KD_REQUIRE_CUDA();
  const LinearGeom g{3, 0, 4};
  auto bias = uniform<double>(g.out, 7300, -1, 1);
  DeviceArray<double> d_bias(bias), d_y(uniform<double>(12, 7301, 50, 60));
  DeviceArray<double> d_x(1), d_w(1);
  cuda_testing::gpu_kernels<double>().linear_forward(g, d_x.get(), d_w.get(), d_bias.get(), d_y.get());
  std::vector<double> want;
  for (int b = 0; b < g.batch; ++b) want.insert(want.end(), bias.begin(), bias.end());
  expect_close(d_y.host(), want, 0, "y = bias");
}

TEST(CudaLinear, DeterministicBackwardIsBitwiseRepeatable) {
  KD_REQUIRE_CUDA();
  ScopedMathMode det(true, true);  // tf32 requested but deterministic wins
  const LinearGeom g{256, 400, 120};
  DeviceArray<float> d_x(uniform<float>(size_t(g.batch) * g.in, 7400, -1, 1));
  DeviceArray<float> d_dy(uniform<float>(size_t(g.batch) * g.out, 7401, -1, 1));
  std::vector<float> first, first_db;
  for (int run = 0; run < 2; ++run) {
    DeviceArray<float> d_dw(size_t(g.out) * g.in), d_db(g.out);
    cuda_testing::gpu_kernels<float>().linear_backward_weight(g, d_x.get(), d_dy.get(), d_dw.get(), d_db.get());
    if (run == 0) {
      first = d_dw.host();
      first_db = d_db.host();
    } else {
      EXPECT_TRUE(same_bits(d_dw.host(), first)) << "dw differs between identical runs";
      EXPECT_TRUE(same_bits(d_db.host(), first_db)) << "dbias differs between identical runs";
    }
  }
}

// Only that the TF32 path runs and stays within TF32 rounding (inputs rounded to 10 bits).
TEST(CudaLinear, Tf32ModeStaysWithinTf32Rounding) {
  KD_REQUIRE_CUDA();
  ScopedMathMode tf32(false, true);
  const LinearGeom g{64, 400, 120};
  auto x = uniform<float>(size_t(g.batch) * g.in, 7500, -1, 1);
  auto w = uniform<float>(size_t(g.out) * g.in, 7501, -1, 1);
  std::vector<float> y_ref(size_t(g.batch) * g.out);
  ref::linear_forward<float>(g, x.data(), w.data(), nullptr, y_ref.data());
  DeviceArray<float> d_x(x), d_w(w), d_y(y_ref.size());
  cuda_testing::gpu_kernels<float>().linear_forward(g, d_x.get(), d_w.get(), nullptr, d_y.get());
  expect_close(d_y.host(), y_ref, 2e-2, "tf32 forward");
}

TEST(CudaLinear, CountsOneLaunchPerLibraryCallAndKernel) {
  KD_REQUIRE_CUDA();
  const LinearGeom g{4, 6, 5};
  DeviceArray<float> x(24), w(30), bias(5), y(20), dx(24), dw(30), db(5);
  const uint64_t start = cuda_testing::gpu().launch_count();
  cuda_testing::gpu_kernels<float>().linear_forward(g, x.get(), w.get(), bias.get(), y.get());  // GEMM + bias add
  EXPECT_EQ(cuda_testing::gpu().launch_count() - start, 2u);
  cuda_testing::gpu_kernels<float>().linear_backward_data(g, y.get(), w.get(), dx.get());  // GEMM
  EXPECT_EQ(cuda_testing::gpu().launch_count() - start, 3u);
  cuda_testing::gpu_kernels<float>().linear_backward_weight(g, x.get(), y.get(), dw.get(), db.get());  // GEMM + sums
  EXPECT_EQ(cuda_testing::gpu().launch_count() - start, 5u);
}

}  // namespace
}  // namespace kd
