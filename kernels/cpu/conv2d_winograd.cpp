// Winograd F(4x4, 3x3) convolution on the CPU (see conv2d_winograd.h for when it applies).
// Lavin & Gray's matrices, interpolation points 0, +-1, +-2, +-1/2:
//   one 4x4 output tile  y = A^T [ (G g G^T) (.) (B^T d B) ] A,   d the 6x6 input tile at stride 4
//   weight gradient      dg = G^T [ sum over tiles (A dy A^T) (.) (B^T d B) ] G   (the adjoint)
// Layouts, all float, per chunk of whole images (thread-private scratch):
//   padded input  xp [image][4*th + 2][4*tw + 2][c]  channels last, zero border (pad 1 and the
//                 ragged last tiles), so a tile's 6x6 patch of 8 channels is 36 vector loads
//   transformed   V [36][block][c], U (filters, once per call) [36][c][k], M [36][block][k]
//   products      M_e = V_e U_e: 36 small GEMMs per block of tiles, reduced over c in order
//   output        [image][p][q][k], then transposed into NCHW y (ASSIGN, or ACCUMULATE for
//                 backward data, which is the forward of dy with the flipped, transposed filters)
// Weight gradient: dU_e[k][c] += D_e[t][k] V_e[t][c] over every tile of a fixed group of images,
// groups summed in order in the Winograd domain, then dw += G^T dU G in double.
// Every output element sees the same sequence of operations wherever its image sits in the batch
// and whichever thread runs it, so results are batch invariant and thread-count independent.
#include "kernels/cpu/conv2d_winograd.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/omp_errors.h"
#include "kernels/cpu/thread_buffer.h"
#include "kernels/cpu/transpose8.h"
#include "kernels/cpu/weight_groups.h"

namespace kd::cpu::winograd {

namespace {

constexpr int kTile = 4;   // output tile side
constexpr int kAlpha = 6;  // input tile side
constexpr int kElems = kAlpha * kAlpha;
constexpr int kLanes = 8;  // floats per AVX2 vector
constexpr int kRows = 6;   // tiles per forward micro-tile (multiple of the block size's factor)
constexpr int kGradRows = 4;  // filters per weight-gradient micro-tile

// At most 64 x 64 channel pairs: then all 36 transformed filter matrices (576 KB) stay in L2
// while every block of tiles sweeps them. Wider layers (VGG's 128..512) would stream them from
// memory for each block and ran 2x slower than im2col + GEMM (measured: VGG-16, batch 64).
constexpr int64_t kMaxFilterPairs = 64 * 64;
// Weight-gradient groups (weight_groups.h): at most 4 MB of partials.
constexpr int64_t kPartialBytes = 4 << 20;

using v8 = __m256;

inline v8 load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, v8 v) { _mm256_storeu_ps(p, v); }
inline v8 times(float k, v8 v) { return _mm256_mul_ps(_mm256_set1_ps(k), v); }

// B^T d over 6 values.
inline void input_1d(const v8 d[6], v8 o[6]) {
  o[0] = times(4.f, d[0]) - times(5.f, d[2]) + d[4];
  o[1] = (d[3] + d[4]) - times(4.f, d[1] + d[2]);
  o[2] = (d[4] - d[3]) + times(4.f, d[1] - d[2]);
  o[3] = (d[4] - d[2]) + times(2.f, d[3] - d[1]);
  o[4] = (d[4] - d[2]) - times(2.f, d[3] - d[1]);
  o[5] = times(4.f, d[1]) - times(5.f, d[3]) + d[5];
}

// A^T m: 6 values to 4.
inline void output_1d(const v8 m[6], v8 o[4]) {
  const v8 s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  o[0] = m[0] + s12 + s34;
  o[1] = d12 + times(2.f, d34);
  o[2] = s12 + times(4.f, s34);
  o[3] = d12 + times(8.f, d34) + m[5];
}

// A d: 4 values to 6 (the adjoint of output_1d).
inline void gradient_1d(const v8 d[4], v8 o[6]) {
  const v8 even = d[0] + d[2], odd = d[1] + d[3];
  const v8 even4 = d[0] + times(4.f, d[2]), odd4 = d[1] + times(4.f, d[3]);
  o[0] = d[0];
  o[1] = even + odd;
  o[2] = even - odd;
  o[3] = even4 + times(2.f, odd4);
  o[4] = even4 - times(2.f, odd4);
  o[5] = d[3];
}

constexpr double kG[kAlpha][3] = {{1.0 / 4, 0, 0},
                                  {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                  {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                  {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                  {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                  {0, 0, 1}};

// Tiles per image, padded planes, and the work unit sizes; from the geometry only.
struct Plan {
  int th, tw, tiles;  // output tiles per image
  int ph, pw;         // padded input plane (4*th + 2) x (4*tw + 2)
  int block;          // tiles transformed and multiplied together (a multiple of 12)
  int images;         // images per chunk
};

Plan make_plan(const ConvGeom& g) {
  Plan p;
  p.th = (g.h + kTile - 1) / kTile;
  p.tw = (g.w + kTile - 1) / kTile;
  p.tiles = p.th * p.tw;
  p.ph = kTile * p.th + 2;
  p.pw = kTile * p.tw + 2;
  // V and M (or D) of one block together within ~384 KB, so they stay in L2 between the passes.
  const int fit = (96 << 10) / (kElems * (g.c + g.k));
  p.block = std::clamp(fit / 12 * 12, 12, 96);
  p.images = std::max(1, p.block / p.tiles);
  return p;
}

enum Slot { kPadded = 0, kTransformed, kProducts, kGradient, kPartials, kSlots };

struct WinogradScratch;
float* scratch(Slot slot, int64_t elems) { return thread_buffer<WinogradScratch>(slot, elems); }

// NCHW planes of `images` images (c a multiple of 8) -> [image][row][col][channel] with a zero
// frame: the interior starts at row and column `shift` (1: the padded input; 0: dy).
void to_channels_last(const float* src, int images, int c, int h, int w, int rows, int cols,
                      int shift, float* dst) {
  std::fill(dst, dst + int64_t(images) * rows * cols * c, 0.f);
  const int64_t hw = int64_t(h) * w;
  for (int i = 0; i < images; ++i)
    for (int c8 = 0; c8 < c; c8 += kLanes) {
      const float* planes = src + (int64_t(i) * c + c8) * hw;
      for (int y = 0; y < h; ++y) {
        float* out = dst + ((int64_t(i) * rows + y + shift) * cols + shift) * c + c8;
        rows_to_lanes(planes + int64_t(y) * w, hw, kLanes, w, out, c);
      }
    }
}

// The tile's 36 transformed values for 8 channels: d at base, rows `row` apart, columns `col`
// apart; out element e at out + e * e_pitch.
inline void input_tile(const float* base, int64_t row, int64_t col, float* out, int64_t e_pitch) {
  v8 t[kAlpha][kAlpha];
  for (int a = 0; a < kAlpha; ++a) {
    v8 d[kAlpha];
    for (int b = 0; b < kAlpha; ++b) d[b] = load(base + a * row + b * col);
    input_1d(d, t[a]);
  }
  for (int j = 0; j < kAlpha; ++j) {
    v8 d[kAlpha], o[kAlpha];
    for (int a = 0; a < kAlpha; ++a) d[a] = t[a][j];
    input_1d(d, o);
    for (int i = 0; i < kAlpha; ++i) store(out + (i * kAlpha + j) * e_pitch, o[i]);
  }
}

// Same for a 4x4 dy tile through A (4x4 -> 6x6).
inline void gradient_tile(const float* base, int64_t row, int64_t col, float* out,
                          int64_t e_pitch) {
  v8 t[kTile][kAlpha];
  for (int a = 0; a < kTile; ++a) {
    v8 d[kTile];
    for (int b = 0; b < kTile; ++b) d[b] = load(base + a * row + b * col);
    gradient_1d(d, t[a]);
  }
  for (int j = 0; j < kAlpha; ++j) {
    v8 d[kTile], o[kAlpha];
    for (int a = 0; a < kTile; ++a) d[a] = t[a][j];
    gradient_1d(d, o);
    for (int i = 0; i < kAlpha; ++i) store(out + (i * kAlpha + j) * e_pitch, o[i]);
  }
}

// The 4x4 outputs of 8 filters from their 36 products at m + e * e_pitch: o[a][b].
inline void output_tile(const float* m, int64_t e_pitch, v8 o[kTile][kTile]) {
  v8 t[kAlpha][kTile];
  for (int a = 0; a < kAlpha; ++a) {
    v8 d[kAlpha];
    for (int b = 0; b < kAlpha; ++b) d[b] = load(m + (a * kAlpha + b) * e_pitch);
    output_1d(d, t[a]);
  }
  for (int j = 0; j < kTile; ++j) {
    v8 d[kAlpha], r[kTile];
    for (int a = 0; a < kAlpha; ++a) d[a] = t[a][j];
    output_1d(d, r);
    for (int i = 0; i < kTile; ++i) o[i][j] = r[i];
  }
}

// One output row of a tile: o[c] holds pixel c of 8 filters; filter j's row goes to
// dst + j * plane (cols pixels), assigned or added.
inline void store_row(const v8 o[kTile], int cols, int64_t plane, float* dst, bool add) {
  // [p0 p1 p2 p3] per filter, filters j and j + 4 in one register's halves.
  const v8 t0 = _mm256_unpacklo_ps(o[0], o[1]), t1 = _mm256_unpackhi_ps(o[0], o[1]);
  const v8 t2 = _mm256_unpacklo_ps(o[2], o[3]), t3 = _mm256_unpackhi_ps(o[2], o[3]);
  const v8 f[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                   _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
  for (int j = 0; j < 8; ++j) {
    const __m128 row = j < 4 ? _mm256_castps256_ps128(f[j]) : _mm256_extractf128_ps(f[j - 4], 1);
    float* d = dst + j * plane;
    if (cols == kTile) {
      _mm_storeu_ps(d, add ? _mm_add_ps(_mm_loadu_ps(d), row) : row);
    } else {
      alignas(16) float v[4];
      _mm_store_ps(v, row);
      for (int c = 0; c < cols; ++c) d[c] = add ? d[c] + v[c] : v[c];
    }
  }
}

// M[t][k] = sum over c, in order, of V[t][c] U[c][k], for t < rows (a multiple of R).
template <int R, int KV>
void multiply(int c_count, int k_count, int rows, const float* V, const float* U, float* M) {
  for (int t0 = 0; t0 < rows; t0 += R)
    for (int k0 = 0; k0 < k_count; k0 += kLanes * KV) {
      v8 acc[R][KV];
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < KV; ++j) acc[r][j] = _mm256_setzero_ps();
      const float* v = V + int64_t(t0) * c_count;
      const float* u = U + k0;
      for (int c = 0; c < c_count; ++c, u += k_count) {
        v8 uj[KV];
        for (int j = 0; j < KV; ++j) uj[j] = load(u + kLanes * j);
        for (int r = 0; r < R; ++r) {
          const v8 b = _mm256_broadcast_ss(v + r * c_count + c);
          for (int j = 0; j < KV; ++j) acc[r][j] = _mm256_fmadd_ps(b, uj[j], acc[r][j]);
        }
      }
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < KV; ++j)
          store(M + int64_t(t0 + r) * k_count + k0 + kLanes * j, acc[r][j]);
    }
}

// dU[k][c] += sum over t < rows, in order, of D[t][k] V[t][c].
template <int R, int CV>
void accumulate(int c_count, int k_count, int rows, const float* D, const float* V, float* dU) {
  for (int k0 = 0; k0 < k_count; k0 += R)
    for (int c0 = 0; c0 < c_count; c0 += kLanes * CV) {
      v8 acc[R][CV];
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < CV; ++j) acc[r][j] = load(dU + int64_t(k0 + r) * c_count + c0 + kLanes * j);
      for (int t = 0; t < rows; ++t) {
        v8 vj[CV];
        for (int j = 0; j < CV; ++j) vj[j] = load(V + int64_t(t) * c_count + c0 + kLanes * j);
        const float* d = D + int64_t(t) * k_count + k0;
        for (int r = 0; r < R; ++r) {
          const v8 b = _mm256_broadcast_ss(d + r);
          for (int j = 0; j < CV; ++j) acc[r][j] = _mm256_fmadd_ps(b, vj[j], acc[r][j]);
        }
      }
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < CV; ++j) store(dU + int64_t(k0 + r) * c_count + c0 + kLanes * j, acc[r][j]);
    }
}

// U[e][c][k] = (G w[k][c] G^T)[e], in double, rounded once.
std::vector<float> transform_filters(const ConvGeom& g, const float* w) {
  std::vector<float> U(size_t(kElems) * g.c * g.k);
  for (int k = 0; k < g.k; ++k)
    for (int c = 0; c < g.c; ++c) {
      const float* f = w + (int64_t(k) * g.c + c) * 9;
      double gf[kAlpha][3];  // G f
      for (int i = 0; i < kAlpha; ++i)
        for (int s = 0; s < 3; ++s)
          gf[i][s] = kG[i][0] * f[s] + kG[i][1] * f[3 + s] + kG[i][2] * f[6 + s];
      for (int i = 0; i < kAlpha; ++i)
        for (int j = 0; j < kAlpha; ++j)
          U[(size_t(i * kAlpha + j) * g.c + c) * g.k + k] =
              float(gf[i][0] * kG[j][0] + gf[i][1] * kG[j][1] + gf[i][2] * kG[j][2]);
    }
  return U;
}

// Tile j of a chunk: image, and the top-left corner of its 4x4 outputs.
struct TileAt {
  int image, y, x;
};
TileAt tile_at(const Plan& p, int j) {
  const int t = j % p.tiles;
  return {j / p.tiles, kTile * (t / p.tw), kTile * (t % p.tw)};
}

// V [36][block][c] of the chunk's tiles [j0, j0 + n_tiles), from the padded input xp.
void transform_inputs(const Plan& p, int C, const float* xp, int j0, int n_tiles, float* V) {
  const int64_t v_pitch = int64_t(p.block) * C;
  for (int jj = 0; jj < n_tiles; ++jj) {
    const TileAt at = tile_at(p, j0 + jj);
    const float* base = xp + ((int64_t(at.image) * p.ph + at.y) * p.pw + at.x) * C;
    for (int c8 = 0; c8 < C; c8 += kLanes)
      input_tile(base + c8, int64_t(p.pw) * C, C, V + int64_t(jj) * C + c8, v_pitch);
  }
}

void forward_chunk(const ConvGeom& g, const Plan& p, int count, const float* x, const float* U,
                   const float* bias, float* y, bool accumulate_into_y) {
  const int C = g.c, K = g.k, H = g.h, W = g.w;
  float* xp = scratch(kPadded, int64_t(count) * p.ph * p.pw * C);
  float* V = scratch(kTransformed, int64_t(kElems) * p.block * C);
  float* M = scratch(kProducts, int64_t(kElems) * p.block * K);
  const int64_t hw = int64_t(H) * W;
  to_channels_last(x, count, C, H, W, p.ph, p.pw, 1, xp);
  const int64_t v_pitch = int64_t(p.block) * C, m_pitch = int64_t(p.block) * K;
  const int total = count * p.tiles;
  for (int j0 = 0; j0 < total; j0 += p.block) {
    const int n_tiles = std::min(p.block, total - j0);
    const int rows = (n_tiles + kRows - 1) / kRows * kRows;
    transform_inputs(p, C, xp, j0, n_tiles, V);
    for (int e = 0; e < kElems; ++e)  // padding rows: multiplied, never read
      std::fill(V + e * v_pitch + int64_t(n_tiles) * C, V + e * v_pitch + int64_t(rows) * C, 0.f);
    for (int e = 0; e < kElems; ++e) {
      const float* Ue = U + int64_t(e) * C * K;
      if (K % (2 * kLanes) == 0)
        multiply<kRows, 2>(C, K, rows, V + e * v_pitch, Ue, M + e * m_pitch);
      else
        multiply<kRows, 1>(C, K, rows, V + e * v_pitch, Ue, M + e * m_pitch);
    }
    for (int k8 = 0; k8 < K; k8 += kLanes)  // filters outer: 8 planes in flight, not K
      for (int jj = 0; jj < n_tiles; ++jj) {
        const TileAt at = tile_at(p, j0 + jj);
        float* y_tile = y + int64_t(at.image) * K * hw + int64_t(at.y) * W + at.x;
        const int rows_out = std::min(kTile, H - at.y), cols_out = std::min(kTile, W - at.x);
        v8 o[kTile][kTile];
        output_tile(M + int64_t(jj) * K + k8, m_pitch, o);
        const v8 b = bias ? load(bias + k8) : _mm256_setzero_ps();
        for (int a = 0; a < rows_out; ++a) {
          for (int c = 0; c < kTile; ++c) o[a][c] = o[a][c] + b;
          store_row(o[a], cols_out, hw, y_tile + int64_t(k8) * hw + int64_t(a) * W,
                    accumulate_into_y);
        }
      }
  }
}

// dU (+)= over the images of one chunk; D reuses the products slot.
void weight_chunk(const ConvGeom& g, const Plan& p, int count, const float* x, const float* dy,
                  float* dU) {
  const int C = g.c, K = g.k, H = g.h, W = g.w;
  const int dy_rows = kTile * p.th, dy_cols = kTile * p.tw;
  float* xp = scratch(kPadded, int64_t(count) * p.ph * p.pw * C);
  float* dyp = scratch(kGradient, int64_t(count) * dy_rows * dy_cols * K);
  float* V = scratch(kTransformed, int64_t(kElems) * p.block * C);
  float* D = scratch(kProducts, int64_t(kElems) * p.block * K);
  to_channels_last(x, count, C, H, W, p.ph, p.pw, 1, xp);
  to_channels_last(dy, count, K, H, W, dy_rows, dy_cols, 0, dyp);
  const int64_t v_pitch = int64_t(p.block) * C, d_pitch = int64_t(p.block) * K;
  const int total = count * p.tiles;
  for (int j0 = 0; j0 < total; j0 += p.block) {
    const int n_tiles = std::min(p.block, total - j0);
    transform_inputs(p, C, xp, j0, n_tiles, V);
    for (int jj = 0; jj < n_tiles; ++jj) {
      const TileAt at = tile_at(p, j0 + jj);
      const float* db = dyp + ((int64_t(at.image) * dy_rows + at.y) * dy_cols + at.x) * K;
      for (int k8 = 0; k8 < K; k8 += kLanes)
        gradient_tile(db + k8, int64_t(dy_cols) * K, K, D + int64_t(jj) * K + k8, d_pitch);
    }
    for (int e = 0; e < kElems; ++e) {
      float* dUe = dU + int64_t(e) * K * C;
      if (C % (2 * kLanes) == 0)
        accumulate<kGradRows, 2>(C, K, n_tiles, D + e * d_pitch, V + e * v_pitch, dUe);
      else
        accumulate<kGradRows, 1>(C, K, n_tiles, D + e * d_pitch, V + e * v_pitch, dUe);
    }
  }
}

}  // namespace

bool applies(const ConvGeom& g) {
  return g.r == 3 && g.s == 3 && g.stride == 1 && g.pad == 1 && g.c % kLanes == 0 &&
         g.k % kLanes == 0 && int64_t(g.c) * g.k <= kMaxFilterPairs && g.h > 0 && g.w > 0;
}

void forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y,
             bool accumulate_into_y) {
  const Plan p = make_plan(g);
  const std::vector<float> U = transform_filters(g, w);
  const int chunks = (g.n + p.images - 1) / p.images;
  const int64_t x_image = int64_t(g.c) * g.h * g.w, y_image = int64_t(g.k) * g.h * g.w;
  RegionErrors errors;  // scratch grows inside the region
#pragma omp parallel for schedule(static)
  for (int chunk = 0; chunk < chunks; ++chunk) {
    errors.run([&] {
      const int n0 = chunk * p.images, count = std::min(p.images, g.n - n0);
      forward_chunk(g, p, count, x + n0 * x_image, U.data(), bias, y + n0 * y_image,
                    accumulate_into_y);
    });
  }
  errors.rethrow();
}

void backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  if (g.n == 0) return;
  const Plan p = make_plan(g);
  const int64_t per_group = int64_t(kElems) * g.k * g.c;
  const int groups = weight_gradient_groups(g.n, per_group * int64_t(sizeof(float)), kPartialBytes);
  float* partials = scratch(kPartials, groups * per_group);
  std::fill(partials, partials + groups * per_group, 0.f);
  const int64_t x_image = int64_t(g.c) * g.h * g.w, y_image = int64_t(g.k) * g.h * g.w;
  RegionErrors errors;
#pragma omp parallel for schedule(static)
  for (int group = 0; group < groups; ++group) {
    errors.run([&] {
      const int begin = group_begin(g.n, group, groups), end = group_begin(g.n, group + 1, groups);
      for (int n0 = begin; n0 < end; n0 += p.images) {
        const int count = std::min(p.images, end - n0);
        weight_chunk(g, p, count, x + n0 * x_image, dy + n0 * y_image,
                     partials + group * per_group);
      }
    });
  }
  errors.rethrow();
  float* dU = partials;
  for (int group = 1; group < groups; ++group)
    for (int64_t e = 0; e < per_group; ++e) dU[e] += partials[group * per_group + e];
#pragma omp parallel for schedule(static)
  for (int k = 0; k < g.k; ++k)
    for (int c = 0; c < g.c; ++c) {
      double t[kAlpha][3];  // dU_kc G
      for (int i = 0; i < kAlpha; ++i)
        for (int s = 0; s < 3; ++s) {
          double acc = 0.0;
          for (int j = 0; j < kAlpha; ++j)
            acc += double(dU[(int64_t(i * kAlpha + j) * g.k + k) * g.c + c]) * kG[j][s];
          t[i][s] = acc;
        }
      float* f = dw + (int64_t(k) * g.c + c) * 9;
      for (int r = 0; r < 3; ++r)
        for (int s = 0; s < 3; ++s) {
          double acc = 0.0;
          for (int i = 0; i < kAlpha; ++i) acc += kG[i][r] * t[i][s];
          f[r * 3 + s] = float(f[r * 3 + s] + acc);
        }
    }
}

}  // namespace kd::cpu::winograd
