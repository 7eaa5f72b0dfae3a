// Backward data of the direct convolution (conv2d_direct.h), vectorised across 8 images: LeNet's
// 10x10 planes leave rows too short for vectors across pixels, and its 6 input channels too few
// for vectors across channels, but a batch has images to spare. Layouts, all float, per block of
// 8 images (thread-private scratch; lanes past the batch's end are zeros and never written back):
//   dyb [k][p][q][8]   dy with the block's images in the lanes (8x8 register transposes)
//   wb  [group][k][r][s][6]   the filters, 6 input channels per group, zero beyond c
//   dxb [c][h][w][8]   dx[c][h][w] = sum over k, then the valid r, then the valid s (ascending) of
//                      w[k][c][r][s] * dy[k][h + pad - r][w + pad - s]: the gather form, which
//                      visits only taps inside dy (no zero padding to multiply)
// then transposed back to NCHW and ASSIGNED or ACCUMULATED. Each image's lane sees the same
// operations wherever it sits, so results are batch invariant and thread-count independent.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/conv2d_direct.h"
#include "kernels/cpu/omp_errors.h"
#include "kernels/cpu/thread_buffer.h"
#include "kernels/cpu/transpose8.h"

namespace kd::cpu::direct {

namespace {

constexpr int kLanes = 8;   // images per vector
constexpr int kGroup = 6;   // input channels per register tile

using v8 = __m256;

struct DirectDataScratch;
float* scratch(int slot, int64_t elems) { return thread_buffer<DirectDataScratch>(slot, elems); }

// planes[i] = count images' [planes][len] NCHW data starting at src + i * image; out[plane][j][lane].
void to_lanes(const float* src, int64_t image, int count, int64_t planes, int64_t len, float* out) {
  for (int64_t pl = 0; pl < planes; ++pl)
    rows_to_lanes(src + pl * len, image, count, len, out + pl * len * kLanes, kLanes);
}

// The inverse for the first `count` lanes: dst[i * image + pl * len + j] (+)= in[pl][j][i].
void from_lanes(const float* in, int64_t image, int count, int64_t planes, int64_t len, float* dst,
                bool accumulate) {
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* src = in + pl * len * kLanes;
    float* d = dst + pl * len;
    int64_t j0 = 0;
    for (; j0 + kLanes <= len; j0 += kLanes) {
      v8 r[8];
      for (int jj = 0; jj < kLanes; ++jj) r[jj] = _mm256_loadu_ps(src + (j0 + jj) * kLanes);
      transpose8(r);
      for (int i = 0; i < count; ++i) {
        float* o = d + i * image + j0;
        _mm256_storeu_ps(o, accumulate ? _mm256_add_ps(_mm256_loadu_ps(o), r[i]) : r[i]);
      }
    }
    for (; j0 < len; ++j0)
      for (int i = 0; i < count; ++i) {
        float& o = d[i * image + j0];
        o = accumulate ? o + src[j0 * kLanes + i] : src[j0 * kLanes + i];
      }
  }
}

// dxb[c0 + f][h][w] for f < kChannels, one output pixel: the sums in the file comment's order.
template <int kChannels>
void pixel(const ConvGeom& g, int h, int w, const float* dyb, const float* wg, float* dxb,
           int64_t hw_lanes) {
  const int p = g.p(), q = g.q();
  const int r_lo = std::max(0, h + g.pad - p + 1), r_hi = std::min(g.r, h + g.pad + 1);
  const int s_lo = std::max(0, w + g.pad - q + 1), s_hi = std::min(g.s, w + g.pad + 1);
  v8 acc[kChannels];
#pragma GCC unroll 8
  for (int f = 0; f < kChannels; ++f) acc[f] = _mm256_setzero_ps();
  for (int k = 0; k < g.k; ++k)
    for (int r = r_lo; r < r_hi; ++r) {
      // dy[k][h + pad - r][w + pad - s] for s = s_lo, s_lo + 1, ...: one lane vector back each.
      const float* d = dyb + ((int64_t(k) * p + h + g.pad - r) * q + w + g.pad - s_lo) * kLanes;
      const float* wr = wg + (int64_t(k) * g.r + r) * g.s * kGroup;
      for (int s = s_lo; s < s_hi; ++s, d -= kLanes) {
        const v8 v = _mm256_loadu_ps(d);
        const float* ws = wr + s * kGroup;
#pragma GCC unroll 8
        for (int f = 0; f < kChannels; ++f)
          acc[f] = _mm256_fmadd_ps(_mm256_broadcast_ss(ws + f), v, acc[f]);
      }
    }
  float* out = dxb + (int64_t(h) * g.w + w) * kLanes;
#pragma GCC unroll 8
  for (int f = 0; f < kChannels; ++f) _mm256_storeu_ps(out + f * hw_lanes, acc[f]);
}

using Pixel = void (*)(const ConvGeom&, int, int, const float*, const float*, float*, int64_t);

Pixel pixel_kernel(int channels) {
  switch (channels) {
    case 1: return pixel<1>;
    case 2: return pixel<2>;
    case 3: return pixel<3>;
    case 4: return pixel<4>;
    case 5: return pixel<5>;
    default: return pixel<6>;
  }
}

}  // namespace

bool backward_data_applies(const ConvGeom& g) { return applies(g) && g.c >= kGroup; }

void backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx, bool accumulate) {
  const int p = g.p(), q = g.q(), groups = (g.c + kGroup - 1) / kGroup;
  const int64_t hw = int64_t(g.h) * g.w, pq = int64_t(p) * q, rs = int64_t(g.r) * g.s;
  std::vector<float> wb(size_t(groups) * g.k * rs * kGroup, 0.f);
  for (int k = 0; k < g.k; ++k)
    for (int c = 0; c < g.c; ++c)
      for (int64_t t = 0; t < rs; ++t)
        wb[((size_t(c / kGroup) * g.k + k) * rs + t) * kGroup + c % kGroup] =
            w[(int64_t(k) * g.c + c) * rs + t];
  const int blocks = (g.n + kLanes - 1) / kLanes;
  RegionErrors errors;  // scratch grows inside the region
#pragma omp parallel for schedule(static)
  for (int block = 0; block < blocks; ++block) {
    errors.run([&] {
      const int n0 = block * kLanes, count = std::min(kLanes, g.n - n0);
      float* dyb = scratch(0, g.k * pq * kLanes);
      float* dxb = scratch(1, g.c * hw * kLanes);
      to_lanes(dy + int64_t(n0) * g.k * pq, g.k * pq, count, g.k, pq, dyb);
      for (int group = 0; group < groups; ++group) {
        const int c0 = group * kGroup, channels = std::min(kGroup, g.c - c0);
        const Pixel kernel = pixel_kernel(channels);
        const float* wg = wb.data() + size_t(group) * g.k * rs * kGroup;
        for (int h = 0; h < g.h; ++h)
          for (int x = 0; x < g.w; ++x)
            kernel(g, h, x, dyb, wg, dxb + c0 * hw * kLanes, hw * kLanes);
      }
      from_lanes(dxb, g.c * hw, count, g.c, hw, dx + int64_t(n0) * g.c * hw, accumulate);
    });
  }
  errors.rethrow();
}

}  // namespace kd::cpu::direct
