// The 1x1 convolution's strided-batched GEMM plan (kernels/cuda/pointwise_gemm.h) replayed on the
// host through a column-major GEMM loop that follows BLAS's argument rules, against ref:: in
// double: the only check of the mapping itself without a GPU (the grid emulator then runs the
// same calls through cuBLAS's shim in tests/test_cuda_conv.cpp's 1x1 shapes).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/cuda/pointwise_gemm.h"
#include "tests/kernel_testing.h"

namespace {

using kd::ConvGeom;
using kd::kernel_testing::describe;
using kd::kernel_testing::expect_close;
using kd::kernel_testing::geom;
using kd::kernel_testing::uniform;
namespace pg = kd::pointwise_gemm;

// C_i = op(A_i) op(B_i) + beta C_i for every i, column-major, in double.
void replay(const pg::StridedGemm& p, const std::vector<double>& a, const std::vector<double>& b,
            std::vector<double>& c, double beta) {
  const int64_t a_rows = p.trans_a ? p.k : p.m, a_cols = p.trans_a ? p.m : p.k;
  const int64_t b_rows = p.trans_b ? p.n : p.k, b_cols = p.trans_b ? p.k : p.n;
  ASSERT_GE(p.lda, a_rows);
  ASSERT_GE(p.ldb, b_rows);
  ASSERT_GE(p.ldc, p.m);
  // The last matrix of each operand ends exactly at the end of its array.
  ASSERT_EQ((p.batch - 1) * p.stride_a + int64_t(p.lda) * a_cols, int64_t(a.size()));
  ASSERT_EQ(p.stride_b == 0 ? int64_t(p.ldb) * b_cols
                            : (p.batch - 1) * p.stride_b + int64_t(p.ldb) * b_cols,
            int64_t(b.size()));
  ASSERT_EQ((p.batch - 1) * p.stride_c + int64_t(p.ldc) * p.n, int64_t(c.size()));
  for (int i = 0; i < p.batch; ++i)
    for (int col = 0; col < p.n; ++col)
      for (int row = 0; row < p.m; ++row) {
        double acc = 0;
        for (int l = 0; l < p.k; ++l) {
          const double av = p.trans_a ? a[i * p.stride_a + l + int64_t(row) * p.lda]
                                      : a[i * p.stride_a + row + int64_t(l) * p.lda];
          const double bv = p.trans_b ? b[i * p.stride_b + col + int64_t(l) * p.ldb]
                                      : b[i * p.stride_b + l + int64_t(col) * p.ldb];
          acc += av * bv;
        }
        double& out = c[i * p.stride_c + row + int64_t(col) * p.ldc];
        out = acc + beta * out;
      }
}

TEST(PointwiseGemmPlan, StridedBatchedCallsReproduceRef) {
  uint64_t seed = 9100;
  for (const ConvGeom& g : {geom(1, 1, 1, 1, 1, 1, 1, 1, 0), geom(3, 5, 4, 7, 2, 1, 1, 1, 0),
                            geom(2, 64, 8, 8, 256, 1, 1, 1, 0), geom(4, 16, 3, 1, 9, 1, 1, 1, 0)}) {
    SCOPED_TRACE(describe(g));
    ASSERT_TRUE(pg::applies(g));
    const size_t nx = size_t(g.n) * g.c * g.h * g.w, nw = size_t(g.k) * g.c,
                 ny = size_t(g.n) * g.k * g.h * g.w;
    const auto x = uniform<double>(nx, seed++, -1, 1), w = uniform<double>(nw, seed++, -1, 1),
               dy = uniform<double>(ny, seed++, -1, 1);
    std::vector<double> y_ref(ny), y_plan = uniform<double>(ny, seed++, -1, 1);  // overwritten
    kd::ref::conv2d_forward<double>(g, x.data(), w.data(), nullptr, y_ref.data());
    replay(pg::forward(g), x, w, y_plan, 0.0);
    expect_close(y_plan, y_ref, 1e-12, "forward");

    auto dx_ref = uniform<double>(nx, seed++, -1, 1), dx_plan = dx_ref;  // accumulated onto
    kd::ref::conv2d_backward_data<double>(g, dy.data(), w.data(), dx_ref.data(), true);
    replay(pg::backward_data(g), dy, w, dx_plan, 1.0);
    expect_close(dx_plan, dx_ref, 1e-12, "backward data");
  }
  EXPECT_FALSE(pg::applies(geom(1, 4, 8, 8, 4, 1, 1, 2, 0)));  // stride 2 shortcut
  EXPECT_FALSE(pg::applies(geom(1, 4, 8, 8, 4, 1, 1, 1, 1)));  // padded
  EXPECT_FALSE(pg::applies(geom(1, 4, 8, 8, 4, 3, 3, 1, 1)));
}

}  // namespace
