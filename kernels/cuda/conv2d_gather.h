// Index maps and block program of the CUDA implicit-GEMM convolution (kernels/cuda/conv2d.cu).
// Host-compilable on purpose (no CUDA includes): tests/test_conv_gather.cpp runs these very
// functions on the CPU against ref::, since the GPU kernel can only be compiled here.
// Layouts: x NCHW [n,c,h,w], w OIHW [k,c,r,s], y/dy [n,k,p,q]. The three passes as C = A * B:
//   forward          M = k  N = n*p*q  K = c*r*s  A = w [k, c*r*s]  B = x gathered, 0 in padding
//   backward data    M = c  N = n*h*w  K = k*r*s  A = w[k,c,r,s]    B = dy at (ih+pad-r)/stride
//   backward weight  M = k  N = c*r*s  K = n*p*q  A = dy            B = x gathered; split-K
// Forward ASSIGNS y (+bias); backward data ACCUMULATES into dx; backward weight ASSIGNS slice
// partials into the workspace, which splitk_sum() folds in slice order before += into dw (in the
// same launch, by the block that finishes each tile last).
// Offsets into tensors are int64; GEMM indices are int (the wrappers check they fit).
// Storage: S is the activations' and weights' type (T, or bf16 for --precision bf16): loads widen
// to T (exact), the epilogue rounds each output once (kernels/bf16.h widen/narrow); the shared
// tiles, the products and the split-K workspace are T, so the bits before that rounding are the
// T kernel's on the widened operands.
#pragma once
#include <cstdint>
#include <type_traits>

#include "base/check.h"
#include "kernels/bf16.h"
#include "kernels/conv2d.h"
#include "base/philox.h"  // KD_HOST_DEVICE

namespace kd {
namespace conv_gemm {

// 64x64 output tile, K step 16, 256 threads: each thread owns a 4x4 micro-tile strided by 16 rows
// and 16 columns (conflict-free shared reads, coalesced stores) and loads 4 A and 4 B elements.
// Narrow layers' forward and data passes use 16x256 or 32x128 tiles instead, and wide ones with
// enough blocks 64x256 or 128x128 tiles with 8x8 micro-tiles (TileShape below).
constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kThreads = 256, kMicro = 4, kLoads = 4;
constexpr int kStrideM = kTileM + 1, kStrideN = kTileN + 1;  // +1 spreads stores over banks
static_assert(kTileK * kTileM == kThreads * kLoads && kTileK * kTileN == kThreads * kLoads, "");
static_assert(kThreads == (kTileM / kMicro) * (kTileN / kMicro), "");
// The FMA kernel's tile shapes for the forward and data passes: kM rows (output channels of the
// forward, input channels of the data pass) by kN columns, 256 threads each holding a
// Micro x Micro micro-tile (rows strided by kM / Micro, columns by kN / Micro) and loading
// kLoadsA A and kLoadsB B elements per K tile. Every output's sum runs over K in the same order
// whatever the shape, so the bits are the 64x64 tile's.
// - Micro 4 (a 4096-element tile): 16x256 or 32x128 for 16- or 32-channel layers, which then fill
//   their tile instead of a quarter or half of a 64-row one.
// - Micro 8 (16384 elements: 64x256, 128x128): a thread reads 16 shared values per K step for 64
//   FMAs, against 8 for 16 at Micro 4. One SM reads 32 shared floats a clock and issues 128 FMAs,
//   so the 4x4 micro-tile caps the multiply at half the FMA rate; 8x8 removes that cap, at the
//   price of 4x fewer blocks (kWideTileMinBlocks) and about twice the registers.
// The weight pass and the tensor-core kernel keep 64x64 at Micro 4.
template <int M, int Micro = kMicro>
struct TileShape {
  static constexpr int kM = M, kMicro = Micro, kN = kThreads * Micro * Micro / M;
  static constexpr int kStrideM = kM + 1, kStrideN = kN + 1;
  static constexpr int kLoadsA = kTileK * kM / kThreads, kLoadsB = kTileK * kN / kThreads;
  static_assert(kLoadsA >= 1 && kLoadsA * kThreads == kTileK * kM, "");
  static_assert(kLoadsB * kThreads == kTileK * kN && kN % kMicro == 0, "");
  static_assert((kM / kMicro) * (kN / kMicro) == kThreads, "one micro-tile per thread");
};
using Tile64 = TileShape<kTileM>;
static_assert(Tile64::kLoadsA == kLoads && Tile64::kLoadsB == kLoads, "");
using WideTile64 = TileShape<64, 8>;    // 64x256
using WideTile128 = TileShape<128, 8>;  // 128x128
// A Micro-8 tile is taken only where its grid still has this many blocks (two per SM of a
// 132-SM H100/H200 would be 264; the rule is the shape's alone, like every tile choice).
// PreResNet-56 at batch 128: its 64-channel layers at 32x32 have 512 such blocks and its
// 128-channel ones at 16x16 256; at 8x8 the 64x64 tile's four times more blocks fill the GPU.
constexpr int kWideTileMinBlocks = 256;

// dbias: one block per output channel, so few blocks; many threads per block to hide latency.
constexpr int kBiasThreads = 1024;
// Split-K aims at this many blocks (a shape-only choice), but never slices thinner than
// kSplitMinK (4 K tiles): at 256, the weight pass of a 1x1 stride-2 shortcut (batch 128,
// 32->64 channels, 8x8 out) ran only 32 blocks.
constexpr int kSplitTargetBlocks = 512;
constexpr int kSplitMinK = 64;

// Every size the index maps need, precomputed on the host (ConvGeom::p() is host-only).
struct ConvDims {
  int n, c, h, w, k, r, s, stride, pad, p, q;
  int hw, pq, rs, crs;
};
inline ConvDims make_dims(const ConvGeom& g) {
  ConvDims d{g.n, g.c, g.h, g.w, g.k, g.r, g.s, g.stride, g.pad, 0, 0, 0, 0, 0, 0};
  d.p = g.p(), d.q = g.q();
  d.hw = g.h * g.w, d.pq = d.p * d.q, d.rs = g.r * g.s, d.crs = g.c * d.rs;
  return d;
}

struct GemmDims {
  int m, n, k;
};
inline GemmDims forward_gemm(const ConvDims& d) { return {d.k, d.n * d.pq, d.crs}; }
inline GemmDims backward_data_gemm(const ConvDims& d) { return {d.c, d.n * d.hw, d.k * d.rs}; }
inline GemmDims backward_weight_gemm(const ConvDims& d) { return {d.k, d.crs, d.n * d.pq}; }

// Same refusals as ref::, plus the int ranges the kernels rely on; returns the dims.
inline ConvDims checked_dims(const ConvGeom& g) {
  kd::detail::check_conv_geom(g);
  const int64_t lim = int64_t(1) << 30;  // GEMM indices plus a tile stay far below INT_MAX
  const int64_t p = g.p(), q = g.q(), hw = int64_t(g.h) * g.w, rs = int64_t(g.r) * g.s;
  KD_CHECK(g.n * p * q < lim && g.n * hw < lim && g.c * rs < lim && g.k * rs < lim &&
               g.k < 65535LL * kTileM && g.c < 65535LL * kTileM,
           "conv2d (cuda): shape too large for the implicit GEMM: n=" << g.n << " c=" << g.c
                                                                      << " k=" << g.k);
  return make_dims(g);
}

// A K (or, for backward weight, N) index over (outer, r, s): outer is c (forward, weight
// columns) or k (backward data).
struct Tap {
  int outer, r, s;
};
KD_HOST_DEVICE inline Tap split_tap(const ConvDims& d, int kk) {
  const int outer = kk / d.rs, rem = kk - outer * d.rs;
  const int r = rem / d.s;
  return {outer, r, rem - r * d.s};
}

// ---- forward: columns are output pixels (img, oh, ow) -------------------------------------
struct FwdCol {
  int64_t x_base, y_base;  // x image start; y offset of (img, channel 0, oh, ow)
  int ih0, iw0;            // top-left input pixel of the receptive field (may be negative)
};
KD_HOST_DEVICE inline FwdCol forward_col(const ConvDims& d, int col) {
  const int img = col / d.pq, pq = col - img * d.pq;
  const int oh = pq / d.q, ow = pq - oh * d.q;
  return {int64_t(img) * d.c * d.hw, int64_t(img) * d.k * d.pq + pq, oh * d.stride - d.pad,
          ow * d.stride - d.pad};
}
KD_HOST_DEVICE inline int64_t forward_w_offset(const ConvDims& d, int m, int kk) {
  return int64_t(m) * d.crs + kk;
}
// -1 where the tap falls into the zero padding.
KD_HOST_DEVICE inline int64_t forward_x_offset(const ConvDims& d, const FwdCol& col, Tap t) {
  const int ih = col.ih0 + t.r, iw = col.iw0 + t.s;
  if (ih < 0 || ih >= d.h || iw < 0 || iw >= d.w) return -1;
  return col.x_base + int64_t(t.outer) * d.hw + ih * d.w + iw;
}
KD_HOST_DEVICE inline int64_t forward_y_offset(const ConvDims& d, const FwdCol& col, int m) {
  return col.y_base + int64_t(m) * d.pq;
}

// ---- backward data: columns are input pixels (img, ih, iw), K runs over (k, r, s) ---------
struct DataCol {
  int64_t dy_base, dx_base;  // dy image start; dx offset of (img, channel 0, ih, iw)
  int th, tw;                // ih + pad, iw + pad
};
KD_HOST_DEVICE inline DataCol data_col(const ConvDims& d, int col) {
  const int img = col / d.hw, hw = col - img * d.hw;
  const int ih = hw / d.w, iw = hw - ih * d.w;
  return {int64_t(img) * d.k * d.pq, int64_t(img) * d.c * d.hw + hw, ih + d.pad, iw + d.pad};
}
KD_HOST_DEVICE inline int64_t data_w_offset(const ConvDims& d, int m, Tap t) {
  return (int64_t(t.outer) * d.c + m) * d.rs + t.r * d.s + t.s;
}
// dy[img, k, oh, ow] with oh*stride = ih + pad - r exactly and in range; -1 otherwise.
KD_HOST_DEVICE inline int64_t data_dy_offset(const ConvDims& d, const DataCol& col, Tap t) {
  int oh = col.th - t.r, ow = col.tw - t.s;
  if (oh < 0 || ow < 0) return -1;
  if (d.stride != 1) {
    const int ohs = oh / d.stride, ows = ow / d.stride;
    if (ohs * d.stride != oh || ows * d.stride != ow) return -1;
    oh = ohs, ow = ows;
  }
  if (oh >= d.p || ow >= d.q) return -1;
  return col.dy_base + int64_t(t.outer) * d.pq + oh * d.q + ow;
}
KD_HOST_DEVICE inline int64_t data_dx_offset(const ConvDims& d, const DataCol& col, int m) {
  return col.dx_base + int64_t(m) * d.hw;
}

// ---- backward weight: K runs over output pixels (img, oh, ow), columns over (c, r, s) -----
struct WgtRow {
  int64_t dy_base, x_base;  // dy offset of (img, channel 0, oh, ow); x image start
  int ih0, iw0;
};
KD_HOST_DEVICE inline WgtRow weight_row(const ConvDims& d, int kk) {
  const int img = kk / d.pq, pq = kk - img * d.pq;
  const int oh = pq / d.q, ow = pq - oh * d.q;
  return {int64_t(img) * d.k * d.pq + pq, int64_t(img) * d.c * d.hw, oh * d.stride - d.pad,
          ow * d.stride - d.pad};
}
struct WgtCol {
  int64_t c_off;  // channel plane start within an image
  int r, s;
};
KD_HOST_DEVICE inline WgtCol weight_col(const ConvDims& d, int col) {
  const Tap t = split_tap(d, col);
  return {int64_t(t.outer) * d.hw, t.r, t.s};
}
KD_HOST_DEVICE inline int64_t weight_dy_offset(const ConvDims& d, const WgtRow& row, int m) {
  return row.dy_base + int64_t(m) * d.pq;
}
KD_HOST_DEVICE inline int64_t weight_x_offset(const ConvDims& d, const WgtRow& row,
                                              const WgtCol& col) {
  const int ih = row.ih0 + col.r, iw = row.iw0 + col.s;
  if (ih < 0 || ih >= d.h || iw < 0 || iw >= d.w) return -1;
  return row.x_base + col.c_off + ih * d.w + iw;
}
// dw[k, c, r, s] is row-major [M, N]; so is each workspace slice.
KD_HOST_DEVICE inline int64_t weight_out_offset(const GemmDims& g, int slice, int m, int col) {
  return (int64_t(slice) * g.m + m) * g.n + col;
}

// Split-K of the weight pass, from the shape alone (never the device or timing), so the
// summation order and hence the bits are the same on every run and every GPU.
struct SplitK {
  int slices, chunk;  // chunk: K per slice, a multiple of kTileK; the last slice may be short
};
inline SplitK split_k_plan(const GemmDims& g) {
  const int64_t tiles = int64_t((g.m + kTileM - 1) / kTileM) * ((g.n + kTileN - 1) / kTileN);
  int64_t slices = (kSplitTargetBlocks + tiles - 1) / tiles;
  const int64_t by_k = (int64_t(g.k) + kSplitMinK - 1) / kSplitMinK;
  if (slices > by_k) slices = by_k;
  if (slices < 1) slices = 1;
  int64_t chunk = (g.k + slices - 1) / slices;
  chunk = (chunk + kTileK - 1) / kTileK * kTileK;
  if (chunk < kTileK) chunk = kTileK;
  return {int((g.k + chunk - 1) / chunk), int(chunk)};
}
// Element e of dw's increment: the slices' partials in slice order. Read through volatile so the
// block that folds a tile in the same launch (conv2d.cu's fold_slices) reads other blocks' partials
// from L2, never a stale L1 line.
template <class T>
KD_HOST_DEVICE inline T splitk_sum(const volatile T* ws, int slices, int64_t mn, int64_t e) {
  T sum = ws[e];
  for (int z = 1; z < slices; ++z) sum += ws[z * mn + e];
  return sum;
}

// dbias: thread tid of a block sums dy[img, k, pq] over the flat (img, pq) indices congruent to
// tid modulo nthreads, in increasing order (no division in the loop); the block then folds the
// partials as a tree.
template <class S, class T = S>  // dy stored as S, summed in T
KD_HOST_DEVICE inline T bias_thread_sum(const ConvDims& d, const S* dy, int k, int tid,
                                        int nthreads) {
  const int step_img = nthreads / d.pq, step_pq = nthreads - step_img * d.pq;
  int img = tid / d.pq, pq = tid - img * d.pq;
  T sum = T(0);
  while (img < d.n) {
    sum += widen<T>(dy[(int64_t(img) * d.k + k) * d.pq + pq]);
    img += step_img, pq += step_pq;
    if (pq >= d.pq) pq -= d.pq, ++img;
  }
  return sum;
}

// ---- the block program: what each of the kThreads threads of one block loads, multiplies and
// writes. The kernel adds only shared memory, double buffering and __syncthreads around these.
#if defined(__CUDA_ARCH__)
#define KD_UNROLL _Pragma("unroll")
#else
#define KD_UNROLL
#endif

enum class Pass { Forward, BackwardData, BackwardWeight };

template <class T, Pass P, class S = T>
struct GemmParams {
  // The output array: y or dx (S), or the weight pass's split-K workspace (T).
  using Out = typename std::conditional<P == Pass::BackwardWeight, T, S>::type;
  ConvDims d;
  GemmDims g;
  const S* a;     // forward, backward data: w; backward weight: dy
  const S* b;     // forward, backward weight: x; backward data: dy
  const T* bias;  // forward only; may be null
  Out* out;       // y, dx, or the split-K workspace [slices, M, N]
  int k_chunk;    // K per blockIdx.z slice (a multiple of kTileK when several)
  bool accumulate = true;  // backward data: dx += acc, or dx = acc (every element written once)
  // The FMA kernel loads A four consecutive K at a time (one 16-byte load of float, 8 of bf16;
  // a_pack_pos), where a_packs_allowed says the tile, the pass and the pointer permit it. Beside
  // `accumulate`, in its padding: a bool at the end grew the argument and ptxas then gave the
  // unchanged weight pass 80 registers instead of 64.
  bool a_packs = false;
  // Backward weight: when set, the block that finishes a tile's last slice adds the tile's slices,
  // in slice order (splitk_sum), into it (dw) in the same launch (conv2d.cu's fold_slices).
  S* fold_into = nullptr;
  // Forward: added to every output element after the bias (y = acc + bias + residual), as
  // conv2d_forward then add_forward would round it; may be null.
  const S* residual = nullptr;
};

// The folding launch keeps one ticket per output tile; more tiles (no layer of ours comes near:
// VGG's 512x512x3x3 weight gradient has 8 x 72) fall back to a separate summing launch.
constexpr int kMaxFoldTiles = 4096;

struct Grid3 {
  int x, y, z;  // x over N tiles (no 65535 limit), y over M tiles, z over K slices
};
template <class Shape = Tile64>
inline Grid3 gemm_grid(const GemmDims& g, int slices) {
  return {(g.n + Shape::kN - 1) / Shape::kN, (g.m + Shape::kM - 1) / Shape::kM, slices};
}

// The FMA kernel's tile for a float forward or data pass of GEMM g (conv2d.cu's with_tile_shape
// maps it to the TileShape): the narrow tiles up to 32 rows, then a Micro-8 tile (64x256 up to 64
// rows, 128x128 above) where `micro` allows it, else 64x64. Micro: KDLAB_CONV_MICRO's `auto`
// (a Micro-8 tile where its grid keeps kWideTileMinBlocks blocks), `8` (always) or `4` (never).
enum class MicroTiles { Auto, Always, Never };
enum class FmaTile { Rows16, Rows32, Wide64, Wide128, Square64 };
inline FmaTile fma_tile(const GemmDims& g, MicroTiles micro) {
  if (g.m <= 16) return FmaTile::Rows16;
  if (g.m <= 32) return FmaTile::Rows32;
  if (micro == MicroTiles::Never) return FmaTile::Square64;
  const bool rows64 = g.m <= 64;
  const Grid3 grid = rows64 ? gemm_grid<WideTile64>(g, 1) : gemm_grid<WideTile128>(g, 1);
  if (micro == MicroTiles::Auto && int64_t(grid.x) * grid.y < kWideTileMinBlocks)
    return FmaTile::Square64;
  return rows64 ? FmaTile::Wide64 : FmaTile::Wide128;
}

struct KRange {
  int begin, end, tiles;
};
KD_HOST_DEVICE inline KRange k_range(const GemmDims& g, int k_chunk, int slice) {
  const int begin = slice * k_chunk;
  const int end = g.k - begin < k_chunk ? g.k : begin + k_chunk;
  return {begin, end, end > begin ? (end - begin + kTileK - 1) / kTileK : 0};
}

// Where load i of thread tid goes in the [kTileK][tile] shared arrays. A always runs along K
// (weights are contiguous in K; dy in the weight pass is contiguous in pq). B runs along N for
// forward and backward data (consecutive threads read consecutive pixels) and along K for the
// weight pass (K is the pixel dimension there). In both layouts a thread's kk does not depend
// on i when running along K, and its column does not when running along N.
struct TilePos {
  int kk, mn;
};
KD_HOST_DEVICE inline TilePos a_load_pos(int tid, int i) {
  return {tid % kTileK, tid / kTileK + (kThreads / kTileK) * i};
}
// A in packs (GemmParams::a_packs): load i of thread tid is element i % 4 of its pack i / 4,
// four consecutive K (kk) of one row (mn); the 4 threads of a row cover the K tile's 16.
constexpr int kPack = 4;
KD_HOST_DEVICE inline TilePos a_pack_pos(int tid, int i) {
  constexpr int kRowsPerRound = kThreads / (kTileK / kPack);
  return {kPack * (tid % (kTileK / kPack)) + i % kPack,
          tid / (kTileK / kPack) + kRowsPerRound * (i / kPack)};
}
template <class Shape = Tile64>
KD_HOST_DEVICE inline TilePos b_load_pos(bool along_k, int tid, int i) {
  return along_k ? TilePos{tid % kTileK, tid / kTileK + (kThreads / kTileK) * i}
                 : TilePos{tid / Shape::kN + (kThreads / Shape::kN) * i, tid % Shape::kN};
}
template <Pass P>
constexpr bool kBAlongK = P == Pass::BackwardWeight;
// Micro-tile element (i, j) of thread tid: rows strided by kM / Micro, columns by kN / Micro (16
// and 16 in the 64x64 tile), so a warp's shared reads are broadcasts (A) or consecutive (B).
template <class Shape = Tile64>
KD_HOST_DEVICE inline int micro_row(int tid, int i) {
  return tid / (Shape::kN / Shape::kMicro) + (Shape::kM / Shape::kMicro) * i;
}
template <class Shape = Tile64>
KD_HOST_DEVICE inline int micro_col(int tid, int j) {
  return tid % (Shape::kN / Shape::kMicro) + (Shape::kN / Shape::kMicro) * j;
}
// Which tile element a thread's accumulator acc[i][j] holds: the FMA kernel's micro-tile here;
// the tensor-core kernel's warp fragments in conv2d_mma.h. The epilogue and the weight pass's
// fold take it as a parameter.
template <class Shape>
struct FmaLayoutOf {
  static constexpr int kMicro = Shape::kMicro;
  KD_HOST_DEVICE static int row(int tid, int i) { return micro_row<Shape>(tid, i); }
  KD_HOST_DEVICE static int col(int tid, int j) { return micro_col<Shape>(tid, j); }
};
using FmaLayout = FmaLayoutOf<Tile64>;

// The B columns a thread loads, decomposed once per block: one column along N, kLoads along K.
template <Pass P>
struct BCols {
  using Col = typename std::conditional<
      P == Pass::Forward, FwdCol,
      typename std::conditional<P == Pass::BackwardData, DataCol, WgtCol>::type>::type;
  static constexpr int kCount = kBAlongK<P> ? kLoads : 1;
  Col col[kCount];
  bool ok[kCount];
};
template <class Shape = Tile64, class T, Pass P, class S>
KD_HOST_DEVICE inline BCols<P> make_b_cols(const GemmParams<T, P, S>& prm, int tid,
                                           int n0) {
  static_assert(!kBAlongK<P> || std::is_same<Shape, Tile64>::value, "the weight pass is 64x64");
  BCols<P> c;
  for (int i = 0; i < BCols<P>::kCount; ++i) {
    const int col = n0 + b_load_pos<Shape>(kBAlongK<P>, tid, i).mn;
    c.ok[i] = col < prm.g.n;
    c.col[i] = typename BCols<P>::Col{};
    if (!c.ok[i]) continue;
    if constexpr (P == Pass::Forward) c.col[i] = forward_col(prm.d, col);
    if constexpr (P == Pass::BackwardData) c.col[i] = data_col(prm.d, col);
    if constexpr (P == Pass::BackwardWeight) c.col[i] = weight_col(prm.d, col);
  }
  return c;
}

// Whether the FMA kernel of tile Shape may load GEMM prm's A in packs: a Micro-8 tile's forward
// pass (w's rows hold c*r*s consecutive K, so c*r*s % 4 == 0 keeps every pack inside a row; K
// tiles start at multiples of 16), float or bf16 storage, w aligned to a pack. Only there:
// packs raised the 64x64 forward kernel from 63 to 80 registers (4 to 3 blocks per SM) and gave
// the fused backward kernel, capped at 64, 52-128 bytes of spills (the weight pass's dy runs
// along K too), a trade only a GPU can weigh; the Micro-8 kernels stay at 125 of their 128. Not
// the data pass: w along (k, r, s) for a fixed c is not contiguous.
template <class Shape, Pass P, class S>
constexpr bool kAPacksCompiled = Shape::kMicro == 8 && P == Pass::Forward && sizeof(S) <= 4;
template <class Shape, class T, Pass P, class S>
inline bool a_packs_allowed(const GemmParams<T, P, S>& prm) {
  if constexpr (!kAPacksCompiled<Shape, P, S>) {
    return false;
  } else {
    return prm.d.crs % kPack == 0 &&
           reinterpret_cast<uintptr_t>(prm.a) % (kPack * sizeof(S)) == 0;
  }
}

// A K index kk decomposed: its tap (forward, data: split_tap) or its output pixel (the weight
// pass: weight_row), two integer divisions either way, which a GPU spells in about twenty
// instructions. Every thread of a block loads at the same kTileK values of kk per K tile (B along
// N in the forward and data passes; A and B along K in the weight pass, tid % kTileK), so the FMA
// kernel decomposes each once per block into a shared table, table[j] = the entry of k0 + j, and
// the loads read it; a null table decomposes in place, as the TF32 kernel does.
template <Pass P>
using KEntry = typename std::conditional<P == Pass::BackwardWeight, WgtRow, Tap>::type;
template <Pass P>
KD_HOST_DEVICE inline KEntry<P> k_table_entry(const ConvDims& d, int k0, int j) {
  if constexpr (P == Pass::BackwardWeight) {
    return weight_row(d, k0 + j);
  } else {
    return split_tap(d, k0 + j);
  }
}
template <Pass P>
KD_HOST_DEVICE inline KEntry<P> k_entry_at(const ConvDims& d, const KEntry<P>* table, int k0,
                                           int kk) {
  return table ? table[kk - k0] : k_table_entry<P>(d, kk, 0);
}
// Both kinds of table in one shared array of the FMA kernel's StageTiles.
union KTable {
  Tap tap[kTileK];
  WgtRow row[kTileK];
  template <Pass P>
  KD_HOST_DEVICE KEntry<P>* entries() {
    if constexpr (P == Pass::BackwardWeight) {
      return row;
    } else {
      return tap;
    }
  }
};

// Where the K tile starting at k0 comes from: the element offsets into prm.a and prm.b of each
// of this thread's kLoads A and B loads, -1 where the tile holds a zero (outside M, N,
// [.., k_end) and padding). The loads land at a_load_pos / b_load_pos. table: the K tile's
// decomposed K indices (k_table_entry), or null.
template <class Shape = Tile64, class T, Pass P, class S>
KD_HOST_DEVICE inline void stage_offsets(const GemmParams<T, P, S>& prm, const BCols<P>& cols,
                                         int tid, int m0, int k0, int k_end,
                                         int64_t (&a_off)[Shape::kLoadsA],
                                         int64_t (&b_off)[Shape::kLoadsB],
                                         const KEntry<P>* table = nullptr) {
  const ConvDims& d = prm.d;
  const int kk_a = k0 + a_load_pos(tid, 0).kk;
  const bool ka_ok = kk_a < k_end;
  if constexpr (P == Pass::Forward) {
    if (kAPacksCompiled<Shape, P, S> && prm.a_packs) {
      KD_UNROLL for (int i = 0; i < Shape::kLoadsA; ++i) {
        const TilePos pa = a_pack_pos(tid, i);
        const int m = m0 + pa.mn, kk = k0 + pa.kk;  // a whole pack is in K or out of it
        a_off[i] = kk < k_end && m < prm.g.m ? forward_w_offset(d, m, kk) : -1;
      }
    } else {
      KD_UNROLL for (int i = 0; i < Shape::kLoadsA; ++i) {
        const int m = m0 + a_load_pos(tid, i).mn;
        a_off[i] = ka_ok && m < prm.g.m ? forward_w_offset(d, m, kk_a) : -1;
      }
    }
    KD_UNROLL for (int i = 0; i < Shape::kLoadsB; ++i) {
      const int kk = k0 + b_load_pos<Shape>(false, tid, i).kk;
      b_off[i] = cols.ok[0] && kk < k_end
                     ? forward_x_offset(d, cols.col[0], k_entry_at<P>(d, table, k0, kk))
                     : -1;
    }
  }
  if constexpr (P == Pass::BackwardData) {
    const Tap ta = ka_ok ? k_entry_at<P>(d, table, k0, kk_a) : Tap{0, 0, 0};
    KD_UNROLL for (int i = 0; i < Shape::kLoadsA; ++i) {
      const int m = m0 + a_load_pos(tid, i).mn;
      a_off[i] = ka_ok && m < prm.g.m ? data_w_offset(d, m, ta) : -1;
    }
    KD_UNROLL for (int i = 0; i < Shape::kLoadsB; ++i) {
      const int kk = k0 + b_load_pos<Shape>(false, tid, i).kk;
      b_off[i] = cols.ok[0] && kk < k_end
                     ? data_dy_offset(d, cols.col[0], k_entry_at<P>(d, table, k0, kk))
                     : -1;
    }
  }
  if constexpr (P == Pass::BackwardWeight) {
    // A's kk is also B's kk here (both along K): one decomposition per thread per K tile.
    const WgtRow row = ka_ok ? k_entry_at<P>(d, table, k0, kk_a) : WgtRow{0, 0, 0, 0};
    KD_UNROLL for (int i = 0; i < kLoads; ++i) {
      const int m = m0 + a_load_pos(tid, i).mn;
      a_off[i] = ka_ok && m < prm.g.m ? weight_dy_offset(d, row, m) : -1;
    }
    KD_UNROLL for (int i = 0; i < kLoads; ++i)
      b_off[i] = ka_ok && cols.ok[i] ? weight_x_offset(d, row, cols.col[i]) : -1;
  }
}

// Global -> registers for the K tile starting at k0, widened to T (table: as stage_offsets).
template <class Shape = Tile64, class T, Pass P, class S>
KD_HOST_DEVICE inline void load_stage(const GemmParams<T, P, S>& prm, const BCols<P>& cols,
                                      int tid, int m0, int k0, int k_end,
                                      T (&a_reg)[Shape::kLoadsA], T (&b_reg)[Shape::kLoadsB],
                                      const KEntry<P>* table = nullptr) {
  int64_t a_off[Shape::kLoadsA], b_off[Shape::kLoadsB];
  stage_offsets<Shape>(prm, cols, tid, m0, k0, k_end, a_off, b_off, table);
  auto load_a_one_by_one = [&] {
    KD_UNROLL for (int i = 0; i < Shape::kLoadsA; ++i)
      a_reg[i] = a_off[i] >= 0 ? widen<T>(prm.a[a_off[i]]) : T(0);
  };
  if constexpr (kAPacksCompiled<Shape, P, S>) {
    if (prm.a_packs) {
      struct alignas(kPack * sizeof(S)) Pack {
        S v[kPack];
      };
      KD_UNROLL for (int p = 0; p < Shape::kLoadsA; p += kPack) {
        const Pack pack = a_off[p] >= 0 ? *reinterpret_cast<const Pack*>(prm.a + a_off[p]) : Pack{};
        KD_UNROLL for (int j = 0; j < kPack; ++j)
          a_reg[p + j] = a_off[p] >= 0 ? widen<T>(pack.v[j]) : T(0);
      }
    } else {
      load_a_one_by_one();
    }
  } else {
    load_a_one_by_one();
  }
  KD_UNROLL for (int i = 0; i < Shape::kLoadsB; ++i)
    b_reg[i] = b_off[i] >= 0 ? widen<T>(prm.b[b_off[i]]) : T(0);
}

// Registers -> shared tiles a_tile[kTileK][Shape::kStrideM], b_tile[kTileK][Shape::kStrideN].
template <class T, Pass P, class Shape = Tile64>
KD_HOST_DEVICE inline void store_stage(int tid, const T (&a_reg)[Shape::kLoadsA],
                                       const T (&b_reg)[Shape::kLoadsB], T* a_tile, T* b_tile,
                                       bool a_packs = false) {
  KD_UNROLL for (int i = 0; i < Shape::kLoadsA; ++i) {
    const TilePos pa = a_packs ? a_pack_pos(tid, i) : a_load_pos(tid, i);
    a_tile[pa.kk * Shape::kStrideM + pa.mn] = a_reg[i];
  }
  KD_UNROLL for (int i = 0; i < Shape::kLoadsB; ++i) {
    const TilePos pb = b_load_pos<Shape>(kBAlongK<P>, tid, i);
    b_tile[pb.kk * Shape::kStrideN + pb.mn] = b_reg[i];
  }
}

// acc += A_tile * B_tile for this thread's micro-tile.
template <class Shape = Tile64, class T>
KD_HOST_DEVICE inline void mma_tile(const T* a_tile, const T* b_tile, int tid,
                                    T (&acc)[Shape::kMicro][Shape::kMicro]) {
  constexpr int kMi = Shape::kMicro;
  KD_UNROLL for (int kk = 0; kk < kTileK; ++kk) {
    T a[kMi], b[kMi];
    KD_UNROLL for (int i = 0; i < kMi; ++i)
      a[i] = a_tile[kk * Shape::kStrideM + micro_row<Shape>(tid, i)];
    KD_UNROLL for (int j = 0; j < kMi; ++j)
      b[j] = b_tile[kk * Shape::kStrideN + micro_col<Shape>(tid, j)];
    KD_UNROLL for (int i = 0; i < kMi; ++i) {
      KD_UNROLL for (int j = 0; j < kMi; ++j) acc[i][j] += a[i] * b[j];
    }
  }
}

// Forward: y = acc + bias (+ residual) (assign). Backward data: dx += acc, or = acc when !prm.accumulate.
// Weight: workspace slice = acc.
template <class Layout, class T, Pass P, class S, int Mi>
KD_HOST_DEVICE inline void epilogue(const GemmParams<T, P, S>& prm, int tid, int m0, int n0,
                                    int slice, const T (&acc)[Mi][Mi]) {
  const ConvDims& d = prm.d;
  KD_UNROLL for (int j = 0; j < Mi; ++j) {
    const int col = n0 + Layout::col(tid, j);
    if (col >= prm.g.n) continue;
    if constexpr (P == Pass::Forward) {
      const FwdCol c = forward_col(d, col);
      KD_UNROLL for (int i = 0; i < Mi; ++i) {
        const int m = m0 + Layout::row(tid, i);
        if (m >= prm.g.m) continue;
        const int64_t e = forward_y_offset(d, c, m);
        T v = acc[i][j] + (prm.bias ? prm.bias[m] : T(0));
        if (prm.residual) v = v + widen<T>(prm.residual[e]);
        prm.out[e] = narrow<S>(v);
      }
    }
    if constexpr (P == Pass::BackwardData) {
      const DataCol c = data_col(d, col);
      KD_UNROLL for (int i = 0; i < Mi; ++i) {
        const int m = m0 + Layout::row(tid, i);
        if (m >= prm.g.m) continue;
        S& out = prm.out[data_dx_offset(d, c, m)];
        out = narrow<S>(prm.accumulate ? widen<T>(out) + acc[i][j] : acc[i][j]);
      }
    }
    if constexpr (P == Pass::BackwardWeight) {
      KD_UNROLL for (int i = 0; i < Mi; ++i) {
        const int m = m0 + Layout::row(tid, i);
        if (m < prm.g.m) prm.out[weight_out_offset(prm.g, slice, m, col)] = acc[i][j];
      }
    }
  }
}

}  // namespace conv_gemm
}  // namespace kd
