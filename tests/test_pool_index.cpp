// Host tests of the index helpers behind the CUDA pool and norm kernels (kernels/cuda/pool_index.h,
// kernels/cuda/plane_walk.h): the same inline code the kernels run, exercised here without a
// device. Every pool op is rebuilt from the per-element helpers and must equal ref:: BIT FOR BIT
// (same summation order), on awkward geometries: overlapping windows (kernel 3 stride 2 pad 1),
// stride > kernel (uncovered inputs), non-square windows, a one-row input, ties and NaNs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cuda/plane_walk.h"
#include "kernels/cuda/pool_index.h"
#include "kernels/pool.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using namespace kernel_testing;
using cuda::IndexRange;

// {n, c, h, w, kh, kw, stride, pad}
const PoolGeom kGeoms[] = {
    {2, 3, 7, 9, 3, 3, 2, 1},  // overlapping windows, odd sizes, non-square input
    {1, 2, 8, 8, 2, 2, 2, 0},  // the common case
    {1, 3, 5, 6, 3, 3, 1, 1},  // stride 1: every input under up to 9 windows
    {2, 1, 6, 7, 3, 2, 2, 1},  // non-square window
    {1, 2, 7, 8, 2, 2, 3, 0},  // stride > kernel: some inputs under no window
    {1, 1, 1, 7, 1, 3, 2, 0},  // a single row
    {3, 1, 4, 4, 4, 4, 1, 2},  // window = input, maximal padding
};

std::string describe(const PoolGeom& g) {
  return "n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) + " " + std::to_string(g.h) +
         "x" + std::to_string(g.w) + " k=" + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
         " s=" + std::to_string(g.stride) + " pad=" + std::to_string(g.pad);
}

TEST(PoolIndex, ReachIsTheInverseOfWindow) {
  for (int k = 1; k <= 5; ++k)
    for (int stride = 1; stride <= 4; ++stride)
      for (int pad = 0; 2 * pad <= k; ++pad)
        for (int extent = 1; extent <= 9; ++extent) {
          if (extent + 2 * pad < k) continue;
          const int out = (extent + 2 * pad - k) / stride + 1;
          for (int i = 0; i < extent; ++i) {
            const IndexRange reach = cuda::pool_reach(i, stride, pad, k, out);
            for (int o = 0; o < out; ++o) {
              const IndexRange win = cuda::pool_window(o, stride, pad, k, extent);
              ASSERT_LT(win.lo, win.hi) << "empty window o=" << o;
              const bool covers = win.lo <= i && i < win.hi;
              const bool reached = reach.lo <= o && o < reach.hi;
              ASSERT_EQ(covers, reached) << "k=" << k << " stride=" << stride << " pad=" << pad
                                         << " extent=" << extent << " i=" << i << " o=" << o;
            }
          }
        }
}

// Inputs from a few levels so windows hold ties (first maximum must win).
template <class T>
std::vector<T> tied_values(size_t n, uint64_t seed) {
  std::vector<T> v = uniform<T>(n, seed, 0, 5);
  for (T& e : v) e = std::floor(e);
  return v;
}

template <class T>
void check_forward_bitwise() {
  uint64_t seed = 10;
  for (const PoolGeom& g : kGeoms) {
    SCOPED_TRACE(describe(g));
    const cuda::PoolDims d = cuda::pool_dims(g);
    const int64_t planes = int64_t(g.n) * g.c, hw = int64_t(g.h) * g.w, pq = int64_t(d.p) * d.q;
    for (int variant = 0; variant < 2; ++variant) {
      std::vector<T> x = variant == 0 ? uniform<T>(planes * hw, seed++, -2, 2)
                                      : tied_values<T>(planes * hw, seed++);
      if (variant == 1) x[hw / 2] = std::numeric_limits<T>::quiet_NaN();  // plane 0
      std::vector<T> y_ref(planes * pq), y(planes * pq), m_ref(planes * pq), m(planes * pq);
      std::vector<int32_t> a_ref(planes * pq), a(planes * pq);
      ref::avg_pool2d_forward(g, x.data(), y_ref.data());
      ref::max_pool2d_forward(g, x.data(), m_ref.data(), a_ref.data());
      for (int64_t pl = 0; pl < planes; ++pl)
        for (int oh = 0; oh < d.p; ++oh)
          for (int ow = 0; ow < d.q; ++ow) {
            const int64_t o = pl * pq + oh * d.q + ow;
            y[o] = cuda::avg_pool_at(d, x.data() + pl * hw, oh, ow);
            a[o] = cuda::max_pool_argmax_at(d, x.data() + pl * hw, oh, ow);
            m[o] = x[pl * hw + a[o]];
          }
      EXPECT_TRUE(same_bits(y, y_ref)) << "avg forward, variant " << variant;
      EXPECT_TRUE(same_bits(m, m_ref)) << "max forward, variant " << variant;
      EXPECT_EQ(a, a_ref) << "argmax, variant " << variant;
    }
  }
}

TEST(PoolIndex, ForwardFromHelpersEqualsRefBitwiseFloat) { check_forward_bitwise<float>(); }
TEST(PoolIndex, ForwardFromHelpersEqualsRefBitwiseDouble) { check_forward_bitwise<double>(); }

// The gather backward (each input pulls from the outputs that reach it) against ref::'s scatter,
// accumulating into prefilled dx.
template <class T>
void check_backward_bitwise() {
  uint64_t seed = 50;
  for (const PoolGeom& g : kGeoms) {
    SCOPED_TRACE(describe(g));
    const cuda::PoolDims d = cuda::pool_dims(g);
    const int64_t planes = int64_t(g.n) * g.c, hw = int64_t(g.h) * g.w, pq = int64_t(d.p) * d.q;
    const std::vector<T> x = tied_values<T>(planes * hw, seed++);
    const std::vector<T> dy = uniform<T>(planes * pq, seed++, -1, 1);
    const std::vector<T> dx0 = uniform<T>(planes * hw, seed++, -1, 1);
    std::vector<T> y(planes * pq);
    std::vector<int32_t> argmax(planes * pq);
    ref::max_pool2d_forward(g, x.data(), y.data(), argmax.data());

    std::vector<T> avg_ref = dx0, max_ref = dx0, avg = dx0, max = dx0;
    ref::avg_pool2d_backward(g, dy.data(), avg_ref.data());
    ref::max_pool2d_backward(g, dy.data(), argmax.data(), max_ref.data());
    for (int64_t pl = 0; pl < planes; ++pl)
      for (int ih = 0; ih < g.h; ++ih)
        for (int iw = 0; iw < g.w; ++iw) {
          const int64_t k = pl * hw + ih * g.w + iw;
          avg[k] = cuda::avg_pool_grad_at(d, dy.data() + pl * pq, ih, iw, avg[k]);
          max[k] = cuda::max_pool_grad_at(d, dy.data() + pl * pq, argmax.data() + pl * pq, ih,
                                          iw, max[k]);
        }
    EXPECT_TRUE(same_bits(avg, avg_ref)) << "avg backward";
    EXPECT_TRUE(same_bits(max, max_ref)) << "max backward";
    // The check can fail: the backward changed dx somewhere.
    EXPECT_FALSE(same_bits(avg, dx0));
  }
}

TEST(PoolIndex, GatherBackwardEqualsRefScatterBitwiseFloat) { check_backward_bitwise<float>(); }
TEST(PoolIndex, GatherBackwardEqualsRefScatterBitwiseDouble) { check_backward_bitwise<double>(); }

TEST(PlaneWalk, TracksRowAndColumnLikeDivision) {
  for (int cols : {1, 2, 7, 32, 33, 256, 1000})
    for (int64_t step : {1, 5, 32, 256, 512})
      for (int64_t start : {int64_t(0), int64_t(1), step - 1, int64_t(300)}) {
        if (start < 0) continue;
        cuda::PlaneWalk walk(start, step, cols);
        for (int64_t j = start; j < start + 40 * step; j += step, walk.next()) {
          ASSERT_EQ(walk.row, j / cols) << "cols=" << cols << " step=" << step << " j=" << j;
          ASSERT_EQ(walk.col, j % cols) << "cols=" << cols << " step=" << step << " j=" << j;
        }
      }
}

}  // namespace
}  // namespace kd
