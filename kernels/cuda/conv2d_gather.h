// Index maps of the CUDA implicit-GEMM convolution (kernels/cuda/conv2d.cu): tile sizes, the
// tensor offsets of each GEMM element, the split-K plan and sums; the per-thread block program
// built on them is kernels/cuda/conv2d_block.h. Host-compilable on purpose (no CUDA includes):
// tests/test_conv_gather.cpp runs these very functions on the CPU against ref::, since the GPU
// kernel can only be compiled here.
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

}  // namespace conv_gemm
}  // namespace kd
