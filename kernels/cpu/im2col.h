// Internal to kernels/cpu/conv2d.cpp: lowering a convolution to GEMM (im2col) and back (col2im).
// A column matrix for `nb` images is [c*r*s rows, nb*p*q columns], row (c, kr, ks) holding, for
// each image i and output pixel (oh, ow), the input x[i, c, oh*stride - pad_h + kr, ow*stride -
// pad_w + ks] (zero outside the image). im2col ASSIGNS the whole matrix; col2im ACCUMULATES into x.
// Both loops are OpenMP-parallel over (row, image) resp. (image, channel); inside an active
// parallel region they run single-threaded (nested regions are inactive). Every x element in
// col2im is summed by one thread in (kr, ks, oh) order, so results are thread-count independent.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

namespace kd::cpu::detail {

struct Lowering {
  int c, h, w;  // input planes
  int r, s, stride, pad_h, pad_w;
  int p, q;  // output plane
  int64_t hw() const { return int64_t(h) * w; }
  int64_t pq() const { return int64_t(p) * q; }
  int64_t rows() const { return int64_t(c) * r * s; }
  // 1x1, stride 1, unpadded: the column matrix is the input itself.
  bool pointwise() const { return r == 1 && s == 1 && stride == 1 && pad_h == 0 && pad_w == 0; }
};

// The output rows [oh0, oh0 + rows) of L as a lowering of their own (pad_h may turn negative).
inline Lowering row_block(const Lowering& L, int oh0, int rows) {
  Lowering b = L;
  b.p = rows;
  b.pad_h = L.pad_h - oh0 * L.stride;
  return b;
}

// Output indices o in [lo, hi) read input index o*stride - pad + k inside [0, extent).
inline void valid_range(int extent, int stride, int pad, int k, int outputs, int& lo, int& hi) {
  const int first = pad - k;  // o*stride >= first
  lo = first > 0 ? (first + stride - 1) / stride : 0;
  const int last = extent - 1 + pad - k;  // o*stride <= last
  hi = last >= 0 ? std::min(outputs, last / stride + 1) : 0;
  lo = std::min(lo, outputs);
  hi = std::max(hi, lo);
}

// One (row, image) segment of p*q values.
template <class T>
void im2col_segment(const Lowering& L, int kr, int ks, const T* plane, T* out) {
  int oh_lo, oh_hi, lo, hi;
  valid_range(L.h, L.stride, L.pad_h, kr, L.p, oh_lo, oh_hi);
  valid_range(L.w, L.stride, L.pad_w, ks, L.q, lo, hi);
  if (lo == hi) oh_hi = oh_lo;  // no valid column: the whole segment is padding
  std::fill(out, out + int64_t(oh_lo) * L.q, T(0));
  std::fill(out + int64_t(oh_hi) * L.q, out + L.pq(), T(0));
  if (oh_lo == oh_hi) return;
  if (L.stride == 1 && L.q == L.w) {
    // Rows of the segment and of the plane have the same pitch: the valid block is one shifted
    // contiguous copy; the columns that wrapped around a row edge are zeroed afterwards.
    const int64_t begin = int64_t(oh_lo) * L.q + lo, end = int64_t(oh_hi - 1) * L.q + hi;
    const T* src = plane + int64_t(oh_lo - L.pad_h + kr) * L.w + (lo - L.pad_w + ks);
    std::memcpy(out + begin, src, sizeof(T) * (end - begin));
    for (int oh = oh_lo; oh < oh_hi; ++oh) {
      T* row = out + int64_t(oh) * L.q;
      for (int ow = 0; ow < lo; ++ow) row[ow] = T(0);
      for (int ow = hi; ow < L.q; ++ow) row[ow] = T(0);
    }
    return;
  }
  for (int oh = oh_lo; oh < oh_hi; ++oh) {
    T* row = out + int64_t(oh) * L.q;
    const T* src =
        plane + int64_t(oh * L.stride - L.pad_h + kr) * L.w + (lo * L.stride - L.pad_w + ks);
    for (int ow = 0; ow < lo; ++ow) row[ow] = T(0);
    if (L.stride == 1) {
      for (int ow = lo; ow < hi; ++ow) row[ow] = src[ow - lo];
    } else {
      for (int ow = lo; ow < hi; ++ow, src += L.stride) row[ow] = *src;
    }
    for (int ow = hi; ow < L.q; ++ow) row[ow] = T(0);
  }
}

// col[row][i*pq + j] for the nb images starting at x (image pitch c*h*w); ncol = nb*pq.
template <class T>
void im2col(const Lowering& L, int nb, const T* x, T* col) {
  const int64_t pq = L.pq(), ncol = nb * pq, rs = int64_t(L.r) * L.s, items = L.rows() * nb;
#pragma omp parallel for schedule(static)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t row = item / nb;
    const int i = static_cast<int>(item % nb);
    const int c = static_cast<int>(row / rs), kr = static_cast<int>(row % rs / L.s),
              ks = static_cast<int>(row % L.s);
    const T* plane = x + (int64_t(i) * L.c + c) * L.hw();
    T* out = col + row * ncol + i * pq;
    if (L.pointwise()) {
      std::memcpy(out, plane, sizeof(T) * pq);
    } else {
      im2col_segment(L, kr, ks, plane, out);
    }
  }
}

// x[i, c] += the contributions of col rows (c, kr, ks); one thread per (image, channel) plane.
template <class T>
void col2im_add(const Lowering& L, int nb, const T* col, T* x) {
  const int64_t pq = L.pq(), ncol = nb * pq, items = int64_t(nb) * L.c;
#pragma omp parallel for schedule(static)
  for (int64_t item = 0; item < items; ++item) {
    const int i = static_cast<int>(item / L.c), c = static_cast<int>(item % L.c);
    T* plane = x + item * L.hw();
    for (int kr = 0; kr < L.r; ++kr) {
      int oh_lo, oh_hi;
      valid_range(L.h, L.stride, L.pad_h, kr, L.p, oh_lo, oh_hi);
      for (int ks = 0; ks < L.s; ++ks) {
        int lo, hi;
        valid_range(L.w, L.stride, L.pad_w, ks, L.q, lo, hi);
        const int64_t row = (int64_t(c) * L.r + kr) * L.s + ks;
        for (int oh = oh_lo; oh < oh_hi; ++oh) {
          const T* in = col + row * ncol + i * pq + int64_t(oh) * L.q;
          T* dst =
              plane + int64_t(oh * L.stride - L.pad_h + kr) * L.w + (lo * L.stride - L.pad_w + ks);
          if (L.stride == 1) {
            for (int ow = lo; ow < hi; ++ow) dst[ow - lo] += in[ow];
          } else {
            for (int ow = lo; ow < hi; ++ow, dst += L.stride) *dst += in[ow];
          }
        }
      }
    }
  }
}

}  // namespace kd::cpu::detail
