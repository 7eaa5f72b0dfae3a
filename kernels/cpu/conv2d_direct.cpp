// Direct convolution on the CPU, vectorised across the filters (see conv2d_direct.h for when it
// applies). Layouts, all float:
//   filters      wp [tap][vecs * 8]   tap = (c, r, s) in OIHW order, filters k padded with zeros to
//                                     one or two AVX2 vectors (k <= 8 or k <= 16)
//   padded image xp [c][h + 2 pad][cols]  zero frame, wide enough that the last, ragged micro-tile of
//                                     a row reads zeros; tap t of output (oh, ow) is xp[off[t] + oh *
//                                     cols + ow] with off[t] = (c * rows + r) * cols + s
//   dy, pixel-major dyt [p * q][vecs * 8]   (weight gradient only)
// Forward, two micro-tiles, each summed over the taps in order in registers:
//   filter-vector (64 taps or more): `pixels` consecutive outputs of one row times every filter,
//     per tap one filter vector (or two) and one broadcast per pixel; then an 8x8 transpose to NCHW
//   row (fewer taps, where that transpose would cost as much as the sums): 16 consecutive outputs
//     of one row times a group of up to 6 filters, per tap two input vectors and one broadcast per
//     filter, from wr [group][tap][6]; stored to NCHW rows as they are
// Weight-gradient micro-tile: `taps` taps times every filter, summed over one image's pixels in
// order, then added to the thread's group partial; fixed groups of images (at most 16, from n)
// are added to dw in group order. Every output element sees the same operations wherever its image
// sits in the batch and whichever thread runs it.
#include "kernels/cpu/conv2d_direct.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/omp_errors.h"
#include "kernels/cpu/thread_buffer.h"
#include "kernels/cpu/transpose8.h"
#include "kernels/cpu/weight_groups.h"

namespace kd::cpu::direct {

namespace {

constexpr int kLanes = 8;
constexpr int kMaxFilters = 16;
constexpr int kMaxTaps = 512;
// Weight-gradient groups (weight_groups.h); a partial is at most 512 taps x 16 filters (32 KB).
constexpr int64_t kPartialBytes = 4 << 20;

using v8 = __m256;

// Geometry of one call, from the shape only.
struct Plan {
  int vecs;         // filter vectors: 1 (k <= 8) or 2
  int taps;         // c * r * s
  int rows, cols;   // padded image plane
  bool by_rows;     // forward vectorised across an output row instead of the filters
  int pixels;       // forward micro-tile width (outputs of one row)
  int tiles;        // forward micro-tiles per output row
  std::vector<int> off;
};

// Candidates keep 8..14 accumulators: the two FMA pipes need about 8 in flight to hide their
// latency, and 16 registers hold at most 14 beside a filter vector and a broadcast.
int pick(int extent, int vecs, const int* candidates, int count) {
  int best = candidates[0];
  double best_cost = 1e300;
  for (int i = 0; i < count; ++i) {
    const int c = candidates[i];
    const double slots = double((extent + c - 1) / c) * c;
    const double cost = slots * 10.0 / std::min(10, c * vecs);
    if (cost <= best_cost) best = c, best_cost = cost;
  }
  return best;
}

constexpr int kForwardPixels1[] = {8, 10, 12, 14};  // one filter vector
constexpr int kForwardPixels2[] = {4, 5, 6};        // two
constexpr int kGradTaps1[] = {8, 9, 10};            // broadcasts bound the weight pass: at most 10
constexpr int kGradTaps2[] = {4, 5, 6};
constexpr int kMaxGradTaps = 10;

// Below this many taps the filter-vector forward spends as long transposing its tile into NCHW as
// computing it (LeNet's first layer: 25 taps; the RGB stem: 27, where it ran 2.4x slower than
// im2col + GEMM); the row forward computes NCHW rows directly, 16 outputs by up to 6 filters.
constexpr int kRowTaps = 64;
constexpr int kRowPixels = 16;
constexpr int kRowFilters = 6;

Plan make_plan(const ConvGeom& g, bool for_forward) {
  Plan pl;
  pl.vecs = g.k <= kLanes ? 1 : 2;
  pl.taps = g.c * g.r * g.s;
  pl.rows = g.h + 2 * g.pad;
  pl.by_rows = for_forward && pl.taps < kRowTaps;
  if (pl.by_rows) {
    pl.pixels = kRowPixels;
  } else if (for_forward) {
    pl.pixels = pl.vecs == 1 ? pick(g.q(), 1, kForwardPixels1, 4) : pick(g.q(), 2, kForwardPixels2, 3);
  }
  if (for_forward) {
    pl.tiles = (g.q() + pl.pixels - 1) / pl.pixels;
    pl.cols = std::max(g.w + 2 * g.pad, pl.tiles * pl.pixels - 1 + g.s);
  } else {
    pl.pixels = pl.tiles = 0;
    pl.cols = g.w + 2 * g.pad;
  }
  pl.off.resize(pl.taps);
  for (int c = 0; c < g.c; ++c)
    for (int r = 0; r < g.r; ++r)
      for (int s = 0; s < g.s; ++s) pl.off[(c * g.r + r) * g.s + s] = (c * pl.rows + r) * pl.cols + s;
  return pl;
}

enum Slot { kPadded = 0, kPixelMajor, kPartials };

struct DirectScratch;
float* scratch(Slot slot, int64_t elems) { return thread_buffer<DirectScratch>(slot, elems); }

// One image's c planes into the zero-framed xp.
void pad_image(const ConvGeom& g, const Plan& pl, const float* x, float* xp) {
  const int64_t plane = int64_t(pl.rows) * pl.cols;
  std::fill(xp, xp + g.c * plane, 0.f);
  for (int c = 0; c < g.c; ++c)
    for (int y = 0; y < g.h; ++y)
      std::copy(x + (int64_t(c) * g.h + y) * g.w, x + (int64_t(c) * g.h + y + 1) * g.w,
                xp + c * plane + int64_t(y + g.pad) * pl.cols + g.pad);
}

// wp[t][k] = w[k][t], zero beyond k.
std::vector<float> pack_filters(const ConvGeom& g, const Plan& pl, const float* w) {
  const int width = pl.vecs * kLanes;
  std::vector<float> wp(size_t(pl.taps) * width, 0.f);
  for (int k = 0; k < g.k; ++k)
    for (int t = 0; t < pl.taps; ++t) wp[size_t(t) * width + k] = w[int64_t(k) * pl.taps + t];
  return wp;
}

// out[i][0 .. vecs*8) = sum over taps of base[off[t] + i] * wp[t].
// The tile is one 1-D array per filter vector, every loop fully unrolled by pragma: written as a
// 2-D array, GCC 12 kept the tile in memory as well, one stack store per FMA (half the rate).
template <int kPixels, int kVecs>
void forward_tile(const float* base, const int* off, int taps, const float* wp, float* out) {
  static_assert(kVecs == 1 || kVecs == 2);
  v8 acc0[kPixels], acc1[kPixels];
#pragma GCC unroll 16
  for (int i = 0; i < kPixels; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
  for (int t = 0; t < taps; ++t) {
    const float* src = base + off[t];
    const v8 f0 = _mm256_loadu_ps(wp + t * kVecs * kLanes);
    const v8 f1 = kVecs == 2 ? _mm256_loadu_ps(wp + t * kVecs * kLanes + kLanes) : f0;
#pragma GCC unroll 16
    for (int i = 0; i < kPixels; ++i) {
      const v8 b = _mm256_broadcast_ss(src + i);
      acc0[i] = _mm256_fmadd_ps(b, f0, acc0[i]);
      if (kVecs == 2) acc1[i] = _mm256_fmadd_ps(b, f1, acc1[i]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < kPixels; ++i) {
    _mm256_storeu_ps(out + i * kVecs * kLanes, acc0[i]);
    if (kVecs == 2) _mm256_storeu_ps(out + i * kVecs * kLanes + kLanes, acc1[i]);
  }
}

using ForwardTile = void (*)(const float*, const int*, int, const float*, float*);

ForwardTile forward_kernel(int pixels, int vecs) {
  if (vecs == 1) switch (pixels) {
      case 8: return forward_tile<8, 1>;
      case 10: return forward_tile<10, 1>;
      case 12: return forward_tile<12, 1>;
      default: return forward_tile<14, 1>;
    }
  switch (pixels) {
    case 4: return forward_tile<4, 2>;
    case 5: return forward_tile<5, 2>;
    default: return forward_tile<6, 2>;
  }
}

// out[f][0 .. 16) = sum over taps of wr[t][f] * base[off[t] + 0 .. 16): 16 outputs of one row by
// kFilters filters (wr holds a group of up to 6 filters, tap-major).
template <int kFilters>
void row_tile(const float* base, const int* off, int taps, const float* wr, float* out) {
  v8 lo[kFilters], hi[kFilters];
#pragma GCC unroll 8
  for (int f = 0; f < kFilters; ++f) lo[f] = hi[f] = _mm256_setzero_ps();
  for (int t = 0; t < taps; ++t) {
    const float* src = base + off[t];
    const v8 x0 = _mm256_loadu_ps(src), x1 = _mm256_loadu_ps(src + kLanes);
    const float* w = wr + t * kRowFilters;
#pragma GCC unroll 8
    for (int f = 0; f < kFilters; ++f) {
      const v8 b = _mm256_broadcast_ss(w + f);
      lo[f] = _mm256_fmadd_ps(b, x0, lo[f]);
      hi[f] = _mm256_fmadd_ps(b, x1, hi[f]);
    }
  }
#pragma GCC unroll 8
  for (int f = 0; f < kFilters; ++f) {
    _mm256_storeu_ps(out + f * kRowPixels, lo[f]);
    _mm256_storeu_ps(out + f * kRowPixels + kLanes, hi[f]);
  }
}

using RowTile = void (*)(const float*, const int*, int, const float*, float*);

RowTile row_kernel(int filters) {
  switch (filters) {
    case 1: return row_tile<1>;
    case 2: return row_tile<2>;
    case 3: return row_tile<3>;
    case 4: return row_tile<4>;
    case 5: return row_tile<5>;
    default: return row_tile<6>;
  }
}

// wr[group][t][f] = w[6 * group + f][t], zero beyond k.
std::vector<float> pack_filter_groups(const ConvGeom& g, int taps, const float* w) {
  const int groups = (g.k + kRowFilters - 1) / kRowFilters;
  std::vector<float> wr(size_t(groups) * taps * kRowFilters, 0.f);
  for (int k = 0; k < g.k; ++k)
    for (int t = 0; t < taps; ++t)
      wr[(size_t(k / kRowFilters) * taps + t) * kRowFilters + k % kRowFilters] =
          w[int64_t(k) * taps + t];
  return wr;
}

// acc[j] = sum over the image's pixels of src[j][pixel] * dyt[pixel], then partial[j] += acc[j].
// Written like forward_tile, for the same reason.
template <int kTaps, int kVecs>
void weight_tile(const float* const* src, const float* dyt, int p, int q, int cols, float* partial) {
  static_assert(kVecs == 1 || kVecs == 2);
  v8 acc0[kTaps], acc1[kTaps];
#pragma GCC unroll 16
  for (int j = 0; j < kTaps; ++j) acc0[j] = acc1[j] = _mm256_setzero_ps();
  for (int oh = 0; oh < p; ++oh) {
    const float* row[kTaps];
#pragma GCC unroll 16
    for (int j = 0; j < kTaps; ++j) row[j] = src[j] + int64_t(oh) * cols;
    const float* d = dyt + int64_t(oh) * q * kVecs * kLanes;
    for (int ow = 0; ow < q; ++ow, d += kVecs * kLanes) {
      const v8 d0 = _mm256_loadu_ps(d);
      const v8 d1 = kVecs == 2 ? _mm256_loadu_ps(d + kLanes) : d0;
#pragma GCC unroll 16
      for (int j = 0; j < kTaps; ++j) {
        const v8 b = _mm256_broadcast_ss(row[j] + ow);
        acc0[j] = _mm256_fmadd_ps(b, d0, acc0[j]);
        if (kVecs == 2) acc1[j] = _mm256_fmadd_ps(b, d1, acc1[j]);
      }
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < kTaps; ++j) {
    float* dst = partial + j * kVecs * kLanes;
    _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), acc0[j]));
    if (kVecs == 2)
      _mm256_storeu_ps(dst + kLanes, _mm256_add_ps(_mm256_loadu_ps(dst + kLanes), acc1[j]));
  }
}

using WeightTile = void (*)(const float* const*, const float*, int, int, int, float*);

WeightTile weight_kernel(int taps, int vecs) {
  if (vecs == 1) switch (taps) {
      case 8: return weight_tile<8, 1>;
      case 9: return weight_tile<9, 1>;
      default: return weight_tile<10, 1>;
    }
  switch (taps) {
    case 4: return weight_tile<4, 2>;
    case 5: return weight_tile<5, 2>;
    default: return weight_tile<6, 2>;
  }
}

// dyt[pixel][k] = dy[k][pixel] for one image, zero beyond k.
void pixel_major(const ConvGeom& g, int vecs, const float* dy, float* dyt) {
  const int width = vecs * kLanes;
  const int64_t pq = int64_t(g.p()) * g.q();
  for (int k0 = 0; k0 < width; k0 += kLanes)
    rows_to_lanes(dy + k0 * pq, pq, g.k - k0, pq, dyt + k0, width);
}

// d[0 .. cols) = v[0 .. cols), cols <= 8. Not vmaskmovps: microcoded on AMD, it cost a third of
// LeNet's first layer.
inline void store_first(float* d, v8 v, int cols) {
  if (cols == kLanes) return _mm256_storeu_ps(d, v);
  alignas(32) float part[kLanes];
  _mm256_store_ps(part, v);
  std::copy(part, part + cols, d);
}

// A row tile's outputs out[f][pixel] (+ bias) to y's rows dst[f * pq + i], i < valid.
void store_rows(const float* out, int filters, int valid, const float* bias, int64_t pq,
                float* dst) {
  for (int f = 0; f < filters; ++f)
    for (int i0 = 0; i0 < valid; i0 += kLanes) {
      v8 v = _mm256_loadu_ps(out + f * kRowPixels + i0);
      if (bias) v = _mm256_add_ps(v, _mm256_set1_ps(bias[f]));
      store_first(dst + f * pq + i0, v, std::min(kLanes, valid - i0));
    }
}

// A forward tile's outputs out[pixel][filter] (+ bias) to y's rows dst[k * pq + i], i < valid:
// 8x8 blocks in registers. out has 16 rows, so a block may read past `valid` (values unused).
void store_tile(const float* out, int width, int valid, int k_count, const float* bias, int64_t pq,
                float* dst) {
  for (int k0 = 0; k0 < k_count; k0 += kLanes)
    for (int i0 = 0; i0 < valid; i0 += kLanes) {
      v8 r[8];
      for (int j = 0; j < kLanes; ++j) r[j] = _mm256_loadu_ps(out + (i0 + j) * width + k0);
      transpose8(r);
      const int cols = std::min(kLanes, valid - i0);
      for (int kk = 0; kk < std::min(kLanes, k_count - k0); ++kk) {
        const v8 v = bias ? _mm256_add_ps(r[kk], _mm256_set1_ps(bias[k0 + kk])) : r[kk];
        float* d = dst + (k0 + kk) * pq + i0;
        store_first(d, v, cols);
      }
    }
}

}  // namespace

bool applies(const ConvGeom& g) {
  return g.stride == 1 && g.k <= kMaxFilters && g.r * g.s >= 2 &&
         int64_t(g.c) * g.r * g.s <= kMaxTaps;
}

void forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y) {
  const Plan pl = make_plan(g, /*for_forward=*/true);
  const std::vector<float> wp = pl.by_rows ? pack_filter_groups(g, pl.taps, w) : pack_filters(g, pl, w);
  const ForwardTile tile = pl.by_rows ? nullptr : forward_kernel(pl.pixels, pl.vecs);
  const int p = g.p(), q = g.q(), width = pl.vecs * kLanes;
  const int64_t hw = int64_t(g.h) * g.w, pq = int64_t(p) * q;
  RegionErrors errors;  // scratch grows inside the region
#pragma omp parallel for schedule(static)
  for (int n = 0; n < g.n; ++n) {
    errors.run([&] {
      float* xp = scratch(kPadded, int64_t(g.c) * pl.rows * pl.cols);
      pad_image(g, pl, x + int64_t(n) * g.c * hw, xp);
      float* yn = y + int64_t(n) * g.k * pq;
      alignas(32) float out[16 * 2 * kLanes] = {};  // [pixel < 16][filter < 16] or [filter][pixel]
      // By rows, one group of filters at a time: its planes are written front to back (all 16
      // filters per tile would write 16 planes at once, 4 KB apart on 32x32 planes: L1 set
      // conflicts, and the stem then ran no faster on two cores than on one).
      const int groups = pl.by_rows ? (g.k + kRowFilters - 1) / kRowFilters : 1;
      for (int group = 0; group < groups; ++group)
        for (int oh = 0; oh < p; ++oh)
          for (int t = 0; t < pl.tiles; ++t) {
            const int ow0 = t * pl.pixels, valid = std::min(pl.pixels, q - ow0);
            const float* base = xp + int64_t(oh) * pl.cols + ow0;
            float* dst = yn + int64_t(oh) * q + ow0;
            if (!pl.by_rows) {
              tile(base, pl.off.data(), pl.taps, wp.data(), out);
              store_tile(out, width, valid, g.k, bias, pq, dst);
              continue;
            }
            const int k0 = group * kRowFilters, filters = std::min(kRowFilters, g.k - k0);
            row_kernel(filters)(base, pl.off.data(), pl.taps, wp.data() + int64_t(k0) * pl.taps,
                                out);
            store_rows(out, filters, valid, bias ? bias + k0 : nullptr, pq, dst + k0 * pq);
          }
    });
  }
  errors.rethrow();
}

void backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const Plan pl = make_plan(g, /*for_forward=*/false);
  const int per_tile = pl.vecs == 1 ? pick(pl.taps, 1, kGradTaps1, 3) : pick(pl.taps, 2, kGradTaps2, 3);
  const WeightTile tile = weight_kernel(per_tile, pl.vecs);
  const int slots = (pl.taps + per_tile - 1) / per_tile * per_tile, width = pl.vecs * kLanes;
  const int64_t partial_size = int64_t(slots) * width;
  const int groups = weight_gradient_groups(g.n, partial_size * int64_t(sizeof(float)), kPartialBytes);
  if (groups == 0) return;
  const int64_t hw = int64_t(g.h) * g.w, pq = int64_t(g.p()) * g.q();
  // The calling thread's buffer, shared with the team through this pointer.
  float* const partials = scratch(kPartials, groups * partial_size);
  std::fill(partials, partials + groups * partial_size, 0.f);
  RegionErrors errors;  // scratch grows inside the region
#pragma omp parallel for schedule(static)
  for (int group = 0; group < groups; ++group) {
    errors.run([&] {
      const int begin = group_begin(g.n, group, groups), end = group_begin(g.n, group + 1, groups);
      float* xp = scratch(kPadded, int64_t(g.c) * pl.rows * pl.cols);
      float* dyt = scratch(kPixelMajor, pq * width);
      float* partial = partials + group * partial_size;
      for (int n = begin; n < end; ++n) {
        pad_image(g, pl, x + int64_t(n) * g.c * hw, xp);
        pixel_major(g, pl.vecs, dy + int64_t(n) * g.k * pq, dyt);
        for (int t0 = 0; t0 < slots; t0 += per_tile) {
          const float* src[kMaxGradTaps];
          // Slots past the last tap read the image's first element; their sums are never used.
          for (int j = 0; j < per_tile; ++j)
            src[j] = xp + (t0 + j < pl.taps ? pl.off[t0 + j] : 0);
          tile(src, dyt, g.p(), g.q(), pl.cols, partial + int64_t(t0) * width);
        }
      }
    });
  }
  errors.rethrow();
  for (int k = 0; k < g.k; ++k)
    for (int t = 0; t < pl.taps; ++t) {
      float acc = partials[size_t(t) * width + k];
      for (int group = 1; group < groups; ++group) acc += partials[group * partial_size + t * width + k];
      dw[int64_t(k) * pl.taps + t] += acc;
    }
}

}  // namespace kd::cpu::direct
