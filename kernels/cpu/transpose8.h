// An 8x8 float transpose in AVX2 registers, shared by the CPU convolutions that move data between
// channel-major (NCHW) planes and channel-vector layouts (conv2d_winograd.cpp, conv2d_direct.cpp,
// conv2d_direct_data.cpp), and the strided-rows-to-lanes copy built on it.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace kd::cpu {

// In-register transpose: r[j] holds 8 values of row j; afterwards r[i] holds column i.
inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int j = 0; j < 8; j += 2) {
    t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
    t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
  }
  for (int j = 0; j < 8; j += 4) {
    u[j] = _mm256_shuffle_ps(t[j], t[j + 2], 0x44);
    u[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], 0xEE);
    u[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0x44);
    u[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// Up to 8 strided rows into 8-wide lanes: out[j * out_stride + i] = src[i * row_stride + j] for
// j < len and i < 8, zero for i >= rows (rows <= 0: all zeros, src unread). 8x8 register
// transposes, the last len % 8 columns one by one.
inline void rows_to_lanes(const float* src, int64_t row_stride, int rows, int64_t len, float* out,
                          int64_t out_stride) {
  int64_t j0 = 0;
  for (; j0 + 8 <= len; j0 += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i)
      r[i] = i < rows ? _mm256_loadu_ps(src + i * row_stride + j0) : _mm256_setzero_ps();
    transpose8(r);
    for (int j = 0; j < 8; ++j) _mm256_storeu_ps(out + (j0 + j) * out_stride, r[j]);
  }
  for (; j0 < len; ++j0)
    for (int i = 0; i < 8; ++i) out[j0 * out_stride + i] = i < rows ? src[i * row_stride + j0] : 0.f;
}

}  // namespace kd::cpu
