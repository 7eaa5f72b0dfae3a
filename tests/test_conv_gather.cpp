// Host proof of the CUDA implicit-GEMM convolution (kernels/cuda/conv2d.cu) without a GPU: the
// index maps (kernels/cuda/conv2d_gather.h) and the per-thread block program
// (kernels/cuda/conv2d_block.h) are the very functions the kernel calls. Checked here: (1) each
// pass as a naive triple-loop GEMM over the gather/output maps equals ref:: (double, 1e-12
// relative to max(1, |want|)), every output written exactly once and every gathered offset inside
// its tensor; (2) the block program run block by block, thread by thread, with the kernel's
// double-buffered K loop and NaN-poisoned shared tiles, equals ref:: (double 1e-12; float 1e-4,
// float accumulation over <= ~1e3 terms), on every tile shape, with A in packs and one by one;
// (3) the tensor-core variant of the block program (kernels/cuda/conv2d_mma.h: cp.async tile
// placement, fragment indices, MmaLayout epilogue), with each m16n8k8 done on the host from the
// PTX ISA's fragment layout, written out here independently of the emulator's version.
// test_conv_tile_plan.cpp checks the placements, the split-K plan and the tile rule.
// Not named *Cuda*: runs everywhere. Unproven here: __syncthreads placement (the grid emulator's
// race check), launch limits, the real hardware.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/cuda/conv2d_block.h"
#include "kernels/cuda/conv2d_mma.h"
#include "tests/kernel_testing.h"

namespace {

using kd::ConvGeom;
using kd::kernel_testing::expect_close;
using kd::kernel_testing::uniform;
using namespace kd::conv_gemm;

using kd::kernel_testing::describe;
using kd::kernel_testing::geom;

// Every stride 1/2/3 x pad 0/1/2 x filter 1x1, 3x3, 5x5, 2x3, 3x1, 1x4 on rotating awkward
// images (batch 1, odd channels, non-square), plus shapes with several M and N tiles, uneven
// split-K slices, a 1x1 output, more than 256 output pixels, a filter as large as the input.
std::vector<ConvGeom> geometries() {
  const int shapes[5][5] = {
      {1, 3, 7, 5, 5}, {2, 5, 6, 9, 7}, {3, 1, 9, 8, 2}, {1, 7, 5, 5, 3}, {2, 2, 8, 11, 1}};
  const int filters[6][2] = {{1, 1}, {3, 3}, {5, 5}, {2, 3}, {3, 1}, {1, 4}};
  std::vector<ConvGeom> out;
  int next = 0;
  for (int stride : {1, 2, 3})
    for (int pad : {0, 1, 2})
      for (const auto& f : filters) {
        const int* sh = shapes[next++ % 5];
        const ConvGeom g = geom(sh[0], sh[1], sh[2], sh[3], sh[4], f[0], f[1], stride, pad);
        if (g.h + 2 * pad >= g.r && g.w + 2 * pad >= g.s) out.push_back(g);
      }
  for (const ConvGeom& g : {geom(2, 67, 9, 7, 70, 3, 3, 1, 1), geom(3, 5, 13, 11, 67, 3, 3, 1, 1),
                            geom(2, 16, 16, 16, 16, 3, 3, 1, 1), geom(2, 8, 17, 17, 9, 3, 3, 2, 1),
                            geom(1, 3, 3, 3, 2, 3, 3, 1, 0), geom(1, 2, 20, 19, 3, 1, 1, 1, 0),
                            geom(2, 3, 6, 5, 2, 6, 5, 1, 0), geom(1, 1, 1, 1, 1, 1, 1, 1, 0),
                            geom(1, 4, 2, 3, 5, 3, 3, 2, 2), geom(3, 9, 8, 8, 33, 1, 1, 2, 0)})
    out.push_back(g);
  return out;
}

using kd::kernel_testing::conv_w_size;
using kd::kernel_testing::conv_x_size;
using kd::kernel_testing::conv_y_size;

// Random tensors of one geometry, and ref:: results on them (dx, dw, dbias start pre-filled).
template <class T>
struct Case {
  ConvGeom g;
  std::vector<T> x, w, bias, dy, dx0, dw0, db0, y_ref, dx_ref, dw_ref, db_ref;
  explicit Case(const ConvGeom& geo) : g(geo) {
    x = uniform<T>(conv_x_size(g), 1, -1, 1), w = uniform<T>(conv_w_size(g), 2, -1, 1);
    bias = uniform<T>(g.k, 3, -1, 1), dy = uniform<T>(conv_y_size(g), 4, -1, 1);
    dx0 = uniform<T>(conv_x_size(g), 5, -1, 1), dw0 = uniform<T>(conv_w_size(g), 6, -1, 1);
    db0 = uniform<T>(g.k, 7, -1, 1);
    y_ref.assign(conv_y_size(g), T(0)), dx_ref = dx0, dw_ref = dw0, db_ref = db0;
    kd::ref::conv2d_forward(g, x.data(), w.data(), bias.data(), y_ref.data());
    kd::ref::conv2d_backward_data(g, dy.data(), w.data(), dx_ref.data(), true);
    kd::ref::conv2d_backward_weight(g, x.data(), dy.data(), dw_ref.data(), db_ref.data());
  }
};

// Reads through an offset the maps produced; counts offsets outside the tensor.
struct Checked {
  int bad = 0;
  double at(const std::vector<double>& v, int64_t off) {
    if (off < 0 || off >= int64_t(v.size())) return ++bad, 0.0;
    return v[size_t(off)];
  }
};

TEST(ConvGather, NaiveGemmOverTheMapsMatchesRef) {
  for (const ConvGeom& g : geometries()) {
    const Case<double> cs(g);
    const ConvDims d = checked_dims(g);
    const std::string what = describe(g);
    Checked chk;

    // Forward: y[out(m, col)] = sum_kk A(m, kk) B(kk, col) + bias[m].
    const GemmDims fg = forward_gemm(d);
    std::vector<double> y(conv_y_size(g), std::numeric_limits<double>::quiet_NaN());
    std::vector<int> writes(y.size(), 0);
    for (int col = 0; col < fg.n; ++col) {
      const FwdCol c = forward_col(d, col);
      for (int m = 0; m < fg.m; ++m) {
        double sum = 0;
        for (int kk = 0; kk < fg.k; ++kk) {
          const int64_t xo = forward_x_offset(d, c, split_tap(d, kk));
          if (xo >= 0) sum += chk.at(cs.w, forward_w_offset(d, m, kk)) * chk.at(cs.x, xo);
        }
        const int64_t yo = forward_y_offset(d, c, m);
        ASSERT_TRUE(yo >= 0 && yo < int64_t(y.size())) << what;
        y[size_t(yo)] = sum + cs.bias[m], ++writes[size_t(yo)];
      }
    }
    EXPECT_EQ(std::set<int>(writes.begin(), writes.end()), std::set<int>{1}) << "y " << what;
    expect_close(y, cs.y_ref, 1e-12, "forward " + what);

    // Backward data: dx[out(m, col)] += sum_kk A(m, kk) B(kk, col), A = w, B = dy gathered.
    const GemmDims dg = backward_data_gemm(d);
    std::vector<double> dx = cs.dx0;
    writes.assign(dx.size(), 0);
    for (int col = 0; col < dg.n; ++col) {
      const DataCol c = data_col(d, col);
      for (int m = 0; m < dg.m; ++m) {
        double sum = 0;
        for (int kk = 0; kk < dg.k; ++kk) {
          const Tap t = split_tap(d, kk);
          const int64_t dyo = data_dy_offset(d, c, t);
          if (dyo >= 0) sum += chk.at(cs.w, data_w_offset(d, m, t)) * chk.at(cs.dy, dyo);
        }
        const int64_t xo = data_dx_offset(d, c, m);
        ASSERT_TRUE(xo >= 0 && xo < int64_t(dx.size())) << what;
        dx[size_t(xo)] += sum, ++writes[size_t(xo)];
      }
    }
    EXPECT_EQ(std::set<int>(writes.begin(), writes.end()), std::set<int>{1}) << "dx " << what;
    expect_close(dx, cs.dx_ref, 1e-12, "backward data " + what);

    // Backward weight: slice partials into a workspace, folded in slice order, += into dw.
    const GemmDims wg = backward_weight_gemm(d);
    const SplitK plan = split_k_plan(wg);
    const int64_t mn = int64_t(wg.m) * wg.n;
    std::vector<double> ws(size_t(plan.slices * mn), std::numeric_limits<double>::quiet_NaN());
    for (int z = 0; z < plan.slices; ++z) {
      const KRange kr = k_range(wg, plan.chunk, z);
      for (int m = 0; m < wg.m; ++m)
        for (int col = 0; col < wg.n; ++col) {
          const WgtCol c = weight_col(d, col);
          double sum = 0;
          for (int kk = kr.begin; kk < kr.end; ++kk) {
            const WgtRow row = weight_row(d, kk);
            const int64_t xo = weight_x_offset(d, row, c);
            if (xo >= 0) sum += chk.at(cs.dy, weight_dy_offset(d, row, m)) * chk.at(cs.x, xo);
          }
          ws[size_t(weight_out_offset(wg, z, m, col))] = sum;
        }
    }
    std::vector<double> dw = cs.dw0;
    for (int64_t e = 0; e < mn; ++e) dw[size_t(e)] += splitk_sum(ws.data(), plan.slices, mn, e);
    expect_close(dw, cs.dw_ref, 1e-12, "backward weight " + what);

    // dbias: per-thread strided sums, then the kernel's tree.
    std::vector<double> db = cs.db0;
    for (int k = 0; k < g.k; ++k) {
      std::vector<double> part(kBiasThreads);
      for (int t = 0; t < kBiasThreads; ++t)
        part[t] = bias_thread_sum(d, cs.dy.data(), k, t, kBiasThreads);
      for (int half = kBiasThreads / 2; half > 0; half /= 2)
        for (int t = 0; t < half; ++t) part[t] += part[t + half];
      db[k] += part[0];
    }
    expect_close(db, cs.db_ref, 1e-12, "dbias " + what);
    EXPECT_EQ(chk.bad, 0) << "offsets outside their tensor, " << what;
  }
}

// One m16n8k8 mma of every lane of warp `warp`, on the host: the 16x8 A and 8x8 B rebuilt from
// the lanes' fragments (PTX ISA layout: a[r] = A[g + 8(r%2)][t + 4(r/2)], b[r] = B[t + 4r][g],
// c[r] = C[g + 8(r/2)][2t + r%2], g = lane/4, t = lane%4), multiplied exactly as written.
template <class T, class Regs>
void host_warp_mma(const T* a_tile, const T* b_tile, int warp, int mi, int ni, int ks,
                   std::vector<Regs>& regs) {
  T a[16][8], b[8][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int tid = warp * 32 + lane, g = lane / 4, t = lane % 4;
    for (int r = 0; r < 4; ++r) a[g + 8 * (r % 2)][t + 4 * (r / 2)] = a_tile[a_frag_index(tid, mi, ks, r)];
    for (int r = 0; r < 2; ++r) b[t + 4 * r][g] = b_tile[b_frag_index(tid, ni, ks, r)];
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int tid = warp * 32 + lane, g = lane / 4, t = lane % 4;
    const FragmentRefs<T> c = c_fragment(regs[size_t(tid)].acc, mi, ni);
    for (int r = 0; r < 4; ++r) {
      const int row = g + 8 * (r / 2), col = 2 * t + r % 2;
      for (int k = 0; k < 8; ++k) *c.r[r] += a[row][k] * b[k][col];
    }
  }
}

// How many emulated passes loaded A one element at a time [0] and in packs [1].
int (&a_pack_runs())[2] {
  static int runs[2] = {0, 0};
  return runs;
}

// Runs the kernel's block program on the host: every block of the grid, every thread, the
// double-buffered K loop in the kernel's order, shared tiles poisoned with NaN per block. With
// tensor_cores, tf32_gemm_tile's program (without the TF32 rounding): each load lands
// straight in the [kTileK][kMmaStride] tiles, warps multiply by m16n8k8 fragments, and the
// epilogue reads the accumulators through MmaLayout. Shape: the FMA program's tile (64x64, a
// narrow layer's 16x256 / 32x128, or a Micro-8 64x256 / 128x128). Both programs' loads read
// each K tile's table of decomposed K indices, as the kernels do.
template <class Shape = Tile64, class T, Pass P>
void emulate(const GemmParams<T, P>& params, int slices, bool tensor_cores = false) {
  // A in packs where the kernel's host code would ask for them (conv2d.cu's launches).
  GemmParams<T, P> prm = params;
  prm.a_packs = !tensor_cores && a_packs_allowed<Shape>(prm);
  ++a_pack_runs()[prm.a_packs];
  static_assert(Shape::kM == kTileM || P != Pass::BackwardWeight, "the weight pass is 64x64");
  if (tensor_cores) {
    ASSERT_EQ(Shape::kM, kTileM) << "the tensor-core program is 64x64";
  }
  const Grid3 grid = gemm_grid<Shape>(prm.g, slices);
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const int a_elems = tensor_cores ? kTileK * kMmaStride : kTileK * Shape::kStrideM;
  const int b_elems = tensor_cores ? kTileK * kMmaStride : kTileK * Shape::kStrideN;
  std::vector<T> a_tile[2], b_tile[2];
  std::vector<BCols<P>> cols(kThreads);
  struct ThreadRegs {
    T a[Shape::kLoadsA], b[Shape::kLoadsB], acc[Shape::kMicro][Shape::kMicro];
  };
  std::vector<ThreadRegs> regs(kThreads);
  for (int bz = 0; bz < grid.z; ++bz)
    for (int by = 0; by < grid.y; ++by)
      for (int bx = 0; bx < grid.x; ++bx) {
        const int m0 = by * Shape::kM, n0 = bx * Shape::kN;
        const KRange kr = k_range(prm.g, prm.k_chunk, bz);
        for (int b = 0; b < 2; ++b) a_tile[b].assign(a_elems, nan), b_tile[b].assign(b_elems, nan);
        for (int t = 0; t < kThreads; ++t) {
          cols[t] = make_b_cols<Shape>(prm, t, n0);
          for (auto& row : regs[t].acc)
            for (T& v : row) v = T(0);
        }
        auto load = [&](int k0) {
          KEntry<P> table[kTileK];  // the K tile's decomposed K indices
          for (int j = 0; j < kTileK; ++j) table[j] = k_table_entry<P>(prm.d, k0, j);
          for (int t = 0; t < kThreads; ++t)
            load_stage<Shape>(prm, cols[t], t, m0, k0, kr.end, regs[t].a, regs[t].b, table);
        };
        auto store = [&](int buf) {
          for (int t = 0; t < kThreads; ++t) {
            if (!tensor_cores) {
              store_stage<T, P, Shape>(t, regs[t].a, regs[t].b, a_tile[buf].data(),
                                       b_tile[buf].data(), prm.a_packs);
              continue;
            }
            if constexpr (std::is_same<Shape, Tile64>::value) {
              for (int i = 0; i < kLoads; ++i) {
                a_tile[buf][size_t(a_store_index(t, i))] = regs[t].a[i];
                b_tile[buf][size_t(b_store_index<P>(t, i))] = regs[t].b[i];
              }
            }
          }
        };
        auto multiply = [&](int buf) {
          if (!tensor_cores) {
            for (int t = 0; t < kThreads; ++t)
              mma_tile<Shape>(a_tile[buf].data(), b_tile[buf].data(), t, regs[t].acc);
            return;
          }
          if constexpr (std::is_same<Shape, Tile64>::value) {
            for (int ks = 0; ks < kTileK; ks += 8)
              for (int warp = 0; warp < kThreads / 32; ++warp)
                for (int mi = 0; mi < 2; ++mi)
                  for (int ni = 0; ni < 2; ++ni)
                    host_warp_mma(a_tile[buf].data(), b_tile[buf].data(), warp, mi, ni, ks, regs);
          }
        };
        if (kr.tiles > 0) load(kr.begin), store(0);
        for (int kt = 0; kt < kr.tiles; ++kt) {
          const int cur = kt & 1;
          const bool more = kt + 1 < kr.tiles;
          if (more) load(kr.begin + (kt + 1) * kTileK);
          multiply(cur);
          if (more) store(cur ^ 1);
        }
        for (int t = 0; t < kThreads; ++t) {
          if constexpr (std::is_same<Shape, Tile64>::value) {
            if (tensor_cores) {
              epilogue<MmaLayout>(prm, t, m0, n0, bz, regs[t].acc);
              continue;
            }
          }
          epilogue<FmaLayoutOf<Shape>>(prm, t, m0, n0, bz, regs[t].acc);
        }
      }
}

// An output inside guard zones as long as itself plus a tile row, filled with a sentinel that
// must survive: the block program writes nowhere else.
template <class T>
struct Guarded {
  std::vector<T> buf;
  size_t guard, n;
  Guarded(const std::vector<T>& v, T fill)
      : buf(2 * (v.size() + 4096) + v.size(), fill), guard(v.size() + 4096), n(v.size()) {
    std::copy(v.begin(), v.end(), buf.begin() + long(guard));
  }
  T* ptr() { return buf.data() + guard; }
  std::vector<T> inside() const {
    return std::vector<T>(buf.begin() + long(guard), buf.begin() + long(guard + n));
  }
  bool guards_intact(T fill) const {
    for (size_t i = 0; i < buf.size(); ++i)
      if ((i < guard || i >= guard + n) && !(buf[i] == fill)) return false;
    return true;
  }
};

// An input copy that starts or ends flush against 64 KiB of inaccessible pages: a read past
// either end, even one whose value the kernel would discard (a padded row or column of the
// tile), crashes the test instead of going unnoticed as it might on the GPU.
template <class T>
class Fenced {
 public:
  Fenced(const std::vector<T>& v, bool flush_end) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE)), fence = 16 * page;
    const size_t bytes = v.size() * sizeof(T), data = (bytes + page - 1) / page * page + page;
    total_ = fence + data + fence;
    void* m = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::runtime_error("mmap failed");
    base_ = static_cast<char*>(m);
    mprotect(base_, fence, PROT_NONE);
    mprotect(base_ + fence + data, fence, PROT_NONE);
    char* start = base_ + fence + (flush_end ? data - bytes : 0);
    if (bytes) std::memcpy(start, v.data(), bytes);
    ptr_ = reinterpret_cast<const T*>(start);
  }
  ~Fenced() { munmap(base_, total_); }
  Fenced(const Fenced&) = delete;
  Fenced& operator=(const Fenced&) = delete;
  const T* ptr() const { return ptr_; }

 private:
  char* base_ = nullptr;
  size_t total_ = 0;
  const T* ptr_ = nullptr;
};

template <class T, class Shape = Tile64>
void check_block_program(const ConvGeom& g, double tol, bool flush_end, bool tensor_cores = false) {
  constexpr bool kOtherTile = !std::is_same<Shape, Tile64>::value;
  const Case<T> cs(g);
  const ConvDims d = checked_dims(g);
  const std::string what = describe(g) + (sizeof(T) == 4 ? " float" : " double") +
                           (flush_end ? " inputs flush at end" : " inputs flush at start") +
                           (tensor_cores ? " tensor-core program" : "") +
                           (kOtherTile ? " tile " + std::to_string(Shape::kM) + "x" +
                                             std::to_string(Shape::kN)
                                       : "");
  const T nan = std::numeric_limits<T>::quiet_NaN(), sentinel = T(12345);
  const Fenced<T> x(cs.x, flush_end), w(cs.w, flush_end), bias(cs.bias, flush_end),
      dy(cs.dy, flush_end);

  Guarded<T> y(std::vector<T>(conv_y_size(g), nan), sentinel);
  const GemmDims fg = forward_gemm(d);
  emulate<Shape>(GemmParams<T, Pass::Forward>{d, fg, w.ptr(), x.ptr(), bias.ptr(), y.ptr(), fg.k},
                 1, tensor_cores);
  expect_close(y.inside(), cs.y_ref, tol, "forward " + what);
  EXPECT_TRUE(y.guards_intact(sentinel)) << "forward wrote outside y, " << what;

  Guarded<T> dx(cs.dx0, sentinel);
  const GemmDims dg = backward_data_gemm(d);
  emulate<Shape>(
      GemmParams<T, Pass::BackwardData>{d, dg, w.ptr(), dy.ptr(), nullptr, dx.ptr(), dg.k}, 1,
      tensor_cores);
  expect_close(dx.inside(), cs.dx_ref, tol, "backward data " + what);
  EXPECT_TRUE(dx.guards_intact(sentinel)) << "backward data wrote outside dx, " << what;
  // Assigned: every element of dx written exactly as ref:: from zero, the NaN it held unread.
  Guarded<T> dx_set(std::vector<T>(conv_x_size(g), nan), sentinel);
  GemmParams<T, Pass::BackwardData> assign{d, dg, w.ptr(), dy.ptr(), nullptr, dx_set.ptr(), dg.k};
  assign.accumulate = false;
  emulate<Shape>(assign, 1, tensor_cores);
  std::vector<T> want_set(conv_x_size(g));
  kd::ref::conv2d_backward_data(g, cs.dy.data(), cs.w.data(), want_set.data(), false);
  expect_close(dx_set.inside(), want_set, tol, "backward data assigned " + what);
  EXPECT_TRUE(dx_set.guards_intact(sentinel)) << "assigned backward data wrote outside dx, " << what;
  if (kOtherTile) return;  // the weight pass keeps the 64x64 tile

  const GemmDims wg = backward_weight_gemm(d);
  const SplitK plan = split_k_plan(wg);
  const int64_t mn = int64_t(wg.m) * wg.n;
  Guarded<T> ws(std::vector<T>(size_t(plan.slices * mn), nan), sentinel);
  emulate(
      GemmParams<T, Pass::BackwardWeight>{d, wg, dy.ptr(), x.ptr(), nullptr, ws.ptr(), plan.chunk},
      plan.slices, tensor_cores);
  EXPECT_TRUE(ws.guards_intact(sentinel)) << "backward weight wrote outside workspace, " << what;
  std::vector<T> dw = cs.dw0;
  for (int64_t e = 0; e < mn; ++e) dw[size_t(e)] += splitk_sum(ws.ptr(), plan.slices, mn, e);
  expect_close(dw, cs.dw_ref, tol, "backward weight " + what);
}

TEST(ConvGather, BlockProgramMatchesRefDouble) {
  for (const ConvGeom& g : geometries())
    for (bool flush_end : {false, true}) check_block_program<double>(g, 1e-12, flush_end);
}

TEST(ConvGather, BlockProgramMatchesRefFloat) {
  for (const ConvGeom& g : geometries())
    for (bool flush_end : {false, true}) check_block_program<float>(g, 1e-4, flush_end);
}

// The narrow tiles of 16- and 32-channel layers (forward and data passes): every geometry, so
// also M larger than the tile (several tile rows) and N tails.
TEST(ConvGather, NarrowTileBlockProgramsMatchRef) {
  for (const ConvGeom& g : geometries()) {
    check_block_program<float, TileShape<16>>(g, 1e-4, false);
    check_block_program<float, TileShape<32>>(g, 1e-4, true);
    check_block_program<double, TileShape<16>>(g, 1e-12, true);
    check_block_program<double, TileShape<32>>(g, 1e-12, false);
  }
}

// The Micro-8 tiles (forward and data passes): every geometry, plus a forward and a data pass of
// more than 128 rows, so both tiles also run several tile rows and N tails.
TEST(ConvGather, WideTileBlockProgramsMatchRef) {
  std::vector<ConvGeom> shapes = geometries();
  shapes.push_back(geom(1, 6, 5, 6, 131, 3, 3, 1, 1));
  shapes.push_back(geom(1, 130, 5, 6, 7, 3, 3, 1, 1));
  for (const ConvGeom& g : shapes) {
    check_block_program<float, WideTile64>(g, 1e-4, false);
    check_block_program<float, WideTile128>(g, 1e-4, true);
    check_block_program<double, WideTile64>(g, 1e-12, true);
    check_block_program<double, WideTile128>(g, 1e-12, false);
  }
}

TEST(ConvGather, TensorCoreBlockProgramMatchesRefDouble) {
  for (const ConvGeom& g : geometries()) check_block_program<double>(g, 1e-12, true, true);
}

TEST(ConvGather, TensorCoreBlockProgramMatchesRefFloat) {
  for (const ConvGeom& g : geometries()) check_block_program<float>(g, 1e-4, false, true);
}

// The two shapes above that must take several split-K slices (one uneven) really do.
TEST(ConvGather, SplitKShapesUnderTestAreSplit) {
  const SplitK a =
      split_k_plan(backward_weight_gemm(make_dims(geom(3, 5, 13, 11, 67, 3, 3, 1, 1))));
  EXPECT_GE(a.slices, 2);
  EXPECT_NE(429 % a.chunk, 0);  // the last slice is short
  // ... and at one image, as the race check runs it (kernel_testing::race_check_shape).
  const SplitK one =
      split_k_plan(backward_weight_gemm(make_dims(geom(1, 5, 13, 11, 67, 3, 3, 1, 1))));
  EXPECT_GE(one.slices, 2);
  EXPECT_NE(143 % one.chunk, 0);
  EXPECT_GE(
      split_k_plan(backward_weight_gemm(make_dims(geom(2, 16, 16, 16, 16, 3, 3, 1, 1)))).slices, 2);
}

// The block program loads A in packs where a_packs_allowed says so (the Micro-8 forward on
// aligned w whose rows hold whole packs; the wide-tile test above runs it on many shapes) and one
// element at a time elsewhere, with the same result.
TEST(ConvGather, BlockProgramsRanAInPacksAndOneByOne) {
  const ConvGeom g = geom(2, 16, 6, 6, 64, 3, 3, 1, 1);  // c*r*s = 144
  const Case<float> cs(g);
  const ConvDims d = checked_dims(g);
  std::vector<float> y(conv_y_size(g));
  const int before = a_pack_runs()[1];
  const GemmDims fg = forward_gemm(d);
  const GemmParams<float, Pass::Forward> prm{d, fg, cs.w.data(), cs.x.data(), cs.bias.data(),
                                             y.data(), fg.k};
  emulate<WideTile64>(prm, 1);
  EXPECT_EQ(a_pack_runs()[1], before + 1) << "an aligned Micro-8 forward, c*r*s % 4 == 0";
  expect_close(y, cs.y_ref, 1e-4, "forward in packs");
  EXPECT_FALSE(a_packs_allowed<Tile64>(prm)) << "the 4x4 tiles load one element at a time";
  // The same w one float past a 16-byte boundary: one element at a time, the same result.
  std::vector<float> shifted(cs.w.size() + 1);
  std::copy(cs.w.begin(), cs.w.end(), shifted.begin() + 1);
  GemmParams<float, Pass::Forward> misaligned = prm;
  misaligned.a = shifted.data() + 1;
  EXPECT_FALSE(a_packs_allowed<WideTile64>(misaligned));
  const int one_by_one = a_pack_runs()[0];
  std::fill(y.begin(), y.end(), 0.f);
  emulate<WideTile64>(misaligned, 1);
  EXPECT_EQ(a_pack_runs()[0], one_by_one + 1);
  expect_close(y, cs.y_ref, 1e-4, "forward one by one");
}

}  // namespace
