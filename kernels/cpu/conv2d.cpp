// Fast CPU 2-D convolution. Unless --cpu-conv gemm, two float paths come first: 3x3 stride-1
// "same" convolutions with channel counts in eights (forward, backward data as the forward of dy
// with flipped filters, backward weight) go to Winograd F(4x4, 3x3) (conv2d_winograd.h), and the
// forward and weight gradient of stride-1 layers with at most 16 filters (LeNet-5, stems) to a
// direct convolution vectorised across the filters (conv2d_direct.h). The rest is im2col + OpenBLAS
// GEMM, described below. Layouts: x NCHW [n,c,h,w], w OIHW [k,c,r,s]
// (= row-major [k, crs]), y [n,k,p,q]. Forward ASSIGNS y; backward ACCUMULATES into dx, dw, dbias
// (dbias may be null).
//
// Work is cut into tasks of `nb` images (nb = ceil(256 / pq), so small planes still give wide
// GEMMs). A task's column matrix col = im2col(x) is [crs, nb*pq] with channel-major rows:
//   forward          Y'[k, nb*pq] = W[k, crs] col, Y' (k-major) scattered to y, + bias
//   backward weight  P_g[k, crs] += dY'[k, nb*pq] col^T   (dY' = the task's dy made k-major)
//   backward data    "same" stride-1 convolutions with c >= 16: dx is the forward convolution of
//                    dy with the flipped, transposed filters (dx += W~[c, krs] im2col(dy)), a GEMM
//                    with a long reduction and no col2im. Otherwise: dcol = W^T dY', col2im.
// With nb == 1 the GEMMs read and write the NCHW tensors in place (no scatter or transpose), the
// columns are built in blocks of output rows that fit in L2, and 1x1 stride-1 unpadded
// convolutions skip im2col (x is the column matrix).
//
// Threads. With OpenBLAS single-threaded (what the engine should set) the tasks share one OpenMP
// loop, each task running single-threaded: one pool, one parallel region per call. Otherwise the
// tasks run in turn, OpenBLAS threading each GEMM and OpenMP the copies (slower on 2 cores: the
// two pools fight). The sequence of GEMM calls is the same either way.
// Determinism. Tasks depend on the geometry only. Weight gradients are summed per fixed group of
// images (weight_groups.h: from n and the filter size) into partials added to dw in group order;
// col2im gives each (image, channel) plane to one thread; bias gradients are per-k double sums in
// a fixed order. Results are bitwise independent of the OpenMP thread count, and of OpenBLAS's
// thread count exactly when OpenBLAS is (0.3.21 on Zen: dgemm is, sgemm is not).
//
// Workspace: thread_local grow-only std::vector buffers per element type: col and the k-major
// task buffer in every thread that runs tasks, plus weight-gradient partials (<= 64 MB) or the
// flipped filters in the calling thread. Never shrunk; freed when their thread exits.
#include "kernels/backend.h"
#include "kernels/conv2d.h"
#include "kernels/cpu/bf16_entries.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "base/check.h"
#include "kernels/cpu/blas.h"
#include "kernels/cpu/conv2d_direct.h"
#include "kernels/cpu/conv2d_winograd.h"
#include "kernels/cpu/im2col.h"
#include "kernels/cpu/omp_errors.h"
#include "kernels/cpu/thread_buffer.h"
#include "kernels/cpu/weight_groups.h"

namespace kd::cpu {

namespace {

using detail::Lowering;

// Weight-gradient partial sums (weight_groups.h): at most 64 MB of them (VGG's 512x512x3x3 filters).
constexpr int64_t kPartialBytes = 64 << 20;

void check_geom(const ConvGeom& g) { kd::detail::check_conv_geom(g); }

enum Slot { kCol = 0, kChunk = 1, kCaller = 2 };

struct GemmScratch;
template <class T>
T* workspace(Slot slot, int64_t elems) {
  return thread_buffer<GemmScratch, T>(slot, elems);
}

Lowering forward_lowering(const ConvGeom& g) {
  return Lowering{g.c, g.h, g.w, g.r, g.s, g.stride, g.pad, g.pad, g.p(), g.q()};
}

// dx = conv(dy, flipped W^T) for stride 1: input dy [k, p, q], output [c, h, w].
Lowering transposed_lowering(const ConvGeom& g) {
  return Lowering{g.k, g.p(), g.q(), g.r, g.s, 1, g.r - 1 - g.pad, g.s - 1 - g.pad, g.h, g.w};
}

// Images per GEMM in the backward passes (the forward takes one image per GEMM, for batch
// invariance). One image gives GEMMs wide enough for OpenBLAS and needs no scatter or
// transpose; small planes are batched so a GEMM has >= kMinColumns columns (measured: 8x8
// planes in chunks of 4 images ran ~1.7x faster than one image at a time).
constexpr int64_t kMinColumns = 256;

int images_per_chunk(const ConvGeom& g) {
  const int64_t pq = int64_t(g.p()) * g.q();
  return static_cast<int>(std::max<int64_t>(1, (kMinColumns + pq - 1) / pq));
}

bool same_stride1(const ConvGeom& g) { return g.stride == 1 && g.p() == g.h && g.q() == g.w; }

// Backward data as a transposed convolution pays off for "same" stride-1 convolutions with enough
// input channels (the GEMM's rows); otherwise (LeNet, stems, strides, valid padding) col2im wins.
bool use_transposed_backward_data(const ConvGeom& g) { return same_stride1(g) && g.c >= 16; }

// Backward data of a stride-1 convolution as a forward one: dy [k, p, q] in, dx [c, h, w] out.
ConvGeom transposed_geom(const ConvGeom& g) {
  return {g.n, g.k, g.p(), g.q(), g.c, g.r, g.s, 1, g.r - 1 - g.pad};
}

bool tasks_in_parallel() { return blas_threads() == 1; }

std::atomic<ConvAlgorithm> g_algorithm{ConvAlgorithm::Auto};

// Float 3x3 stride-1 "same" convolutions go through Winograd F(4x4, 3x3) (conv2d_winograd.h).
bool use_winograd(const ConvGeom& g) {
  return conv_algorithm() == ConvAlgorithm::Auto && winograd::applies(g);
}

// Few filters: a GEMM of 6 or 16 rows runs far below the FMA rate (conv2d_direct.h).
bool use_direct(const ConvGeom& g) {
  return conv_algorithm() == ConvAlgorithm::Auto && !winograd::applies(g) && direct::applies(g);
}

// k-major chunk output X'[c][i*hw + j] added into x[i][c][j] (backward data through the
// transposed convolution).
template <class T>
void scatter_add(int c_count, int64_t hw, int nb, const T* xk, T* x) {
  const int64_t ncol = nb * hw, items = int64_t(nb) * c_count;
#pragma omp parallel for schedule(static)
  for (int64_t item = 0; item < items; ++item) {
    const int i = static_cast<int>(item / c_count), c = static_cast<int>(item % c_count);
    const T* src = xk + c * ncol + i * hw;
    T* dst = x + item * hw;
    for (int64_t j = 0; j < hw; ++j) dst[j] += src[j];
  }
}

// dy[i][k][j] -> dY'[k][i*pq + j] for the chunk's nb images.
template <class T>
void gather_k_major(int k_count, int64_t pq, int nb, const T* dy, T* dyk) {
  const int64_t ncol = nb * pq, items = int64_t(nb) * k_count;
#pragma omp parallel for schedule(static)
  for (int64_t item = 0; item < items; ++item) {
    const int k = static_cast<int>(item / nb), i = static_cast<int>(item % nb);
    std::memcpy(dyk + k * ncol + i * pq, dy + (int64_t(i) * k_count + k) * pq, sizeof(T) * pq);
  }
}

// Sum of one plane in double, in a fixed order (8 interleaved lanes, then lane by lane) so the
// adds pipeline instead of waiting on one another.
template <class T>
double plane_sum(const T* v, int64_t len) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= len; j += 8)
    for (int l = 0; l < 8; ++l) lane[l] += v[j + l];
  for (int l = 0; j < len; ++j, ++l) lane[l] += v[j];
  double total = 0.0;
  for (double x : lane) total += x;
  return total;
}

// Columns of one image's row block stay in L2 between im2col and the GEMM (measured: a 576 KB
// column matrix per image was 16% slower than two 288 KB blocks).
constexpr int64_t kColumnBlockBytes = 320 << 10;

// Calls fn(oh0, rows, col, ldcol) for the blocks of output rows of one image: col is the block's
// column matrix [L.rows(), rows*q] with row pitch ldcol (the image itself when pointwise).
template <class T, class Fn>
void for_each_row_block(const Lowering& L, const T* image, Fn&& fn) {
  if (L.pointwise()) {
    fn(0, L.p, image, L.hw());
    return;
  }
  const int64_t row_bytes = L.rows() * L.q * int64_t(sizeof(T));
  const int most = static_cast<int>(std::max<int64_t>(1, kColumnBlockBytes / row_bytes));
  const int blocks = (L.p + most - 1) / most, rows = (L.p + blocks - 1) / blocks;
  T* col = workspace<T>(kCol, L.rows() * rows * L.q);
  for (int oh0 = 0; oh0 < L.p; oh0 += rows) {
    const Lowering b = detail::row_block(L, oh0, std::min(rows, L.p - oh0));
    detail::im2col(b, 1, image, col);
    fn(oh0, b.p, static_cast<const T*>(col), b.pq());
  }
}

// Column matrix of nb > 1 whole images, in the calling thread's workspace.
template <class T>
const T* chunk_columns(const Lowering& L, int nb, const T* x) {
  T* col = workspace<T>(kCol, L.rows() * nb * L.pq());
  detail::im2col(L, nb, x, col);
  return col;
}

// One image: y [k, pq] = w [k, crs] * col [crs, pq] (+ bias), a GEMM per block of output rows.
template <class T>
void forward_image(const ConvGeom& g, const Lowering& L, const T* x, const T* w, const T* bias,
                   T* y) {
  const int crs = static_cast<int>(L.rows());
  const int64_t pq = L.pq();
  for_each_row_block(L, x, [&](int oh0, int rows, const T* col, int64_t ldcol) {
    gemm(false, false, g.k, rows * L.q, crs, T(1), w, crs, col, int(ldcol), T(0),
         y + int64_t(oh0) * L.q, int(pq));
  });
  if (bias)
    for (int k = 0; k < g.k; ++k)
      for (int64_t j = 0; j < pq; ++j) y[k * pq + j] += bias[k];
}

// Stride 1: dx += conv(dy, wt) with wt[c, k, r', s'] = w[k, c, r-1-r', s-1-s'].
template <class T>
void backward_data_transposed_chunk(const ConvGeom& g, const Lowering& L, int nb, const T* dy,
                                    const T* wt, T* dx, bool accumulate) {
  const int krs = static_cast<int>(L.rows());
  const int64_t hw = L.pq();
  if (nb == 1) {
    for_each_row_block(L, dy, [&](int ih0, int rows, const T* col, int64_t ldcol) {
      gemm(false, false, g.c, rows * L.q, krs, T(1), wt, krs, col, int(ldcol),
           T(accumulate ? 1 : 0), dx + int64_t(ih0) * L.q, int(hw));
    });
    return;
  }
  const int ncol = static_cast<int>(nb * hw);
  if (!accumulate) std::fill(dx, dx + int64_t(nb) * g.c * hw, T(0));  // in cache, per chunk
  T* xk = workspace<T>(kChunk, int64_t(g.c) * ncol);
  gemm(false, false, g.c, ncol, krs, T(1), wt, krs, chunk_columns(L, nb, dy), ncol, T(0), xk, ncol);
  scatter_add(g.c, hw, nb, xk, dx);
}

// Any stride: dcol = W^T dY', then col2im accumulates into dx.
template <class T>
void backward_data_col2im_chunk(const ConvGeom& g, const Lowering& L, int nb, const T* dy,
                                const T* w, T* dx, bool accumulate) {
  const int crs = static_cast<int>(L.rows()), ncol = static_cast<int>(nb * L.pq());
  const T* dyk = dy;
  if (nb > 1) {
    T* buf = workspace<T>(kChunk, int64_t(g.k) * ncol);
    gather_k_major(g.k, L.pq(), nb, dy, buf);
    dyk = buf;
  }
  T* dcol = workspace<T>(kCol, L.rows() * ncol);
  gemm(true, false, crs, ncol, g.k, T(1), w, crs, dyk, ncol, T(0), dcol, ncol);
  if (!accumulate) std::fill(dx, dx + int64_t(nb) * g.c * L.hw(), T(0));  // in cache, per chunk
  detail::col2im_add(L, nb, dcol, dx);
}

// wt[c, k, r', s'] = w[k, c, r-1-r', s-1-s']: the filters of backward data as a convolution.
template <class T>
void flip_transpose_filters(const ConvGeom& g, const T* w, T* wt) {
  const int rs = g.r * g.s;
  for (int k = 0; k < g.k; ++k)
    for (int c = 0; c < g.c; ++c)
      for (int i = 0; i < rs; ++i)
        wt[(int64_t(c) * g.k + k) * rs + (rs - 1 - i)] = w[(int64_t(k) * g.c + c) * rs + i];
}

// dbias[k] += the sum of dy's planes k over the batch, in double, in image order (plane_sum).
template <class T>
void add_bias_gradient(const ConvGeom& g, const T* dy, T* dbias) {
  const int64_t pq = int64_t(g.p()) * g.q();
#pragma omp parallel for schedule(static) if (tasks_in_parallel())
  for (int k = 0; k < g.k; ++k) {
    double acc = 0.0;
    for (int n = 0; n < g.n; ++n) acc += plane_sum(dy + (int64_t(n) * g.k + k) * pq, pq);
    dbias[k] = static_cast<T>(dbias[k] + acc);
  }
}

// partial (+)= dY' col^T over images [begin, end); the first GEMM assigns.
template <class T>
void backward_weight_group(const ConvGeom& g, const Lowering& L, int nb, int begin, int end,
                           const T* x, const T* dy, T* partial) {
  const int crs = static_cast<int>(L.rows());
  const int64_t pq = L.pq();
  bool first = true;
  for (int n0 = begin; n0 < end; n0 += nb) {
    const int count = std::min(nb, end - n0);
    const T* xc = x + int64_t(n0) * g.c * L.hw();
    const T* dyc = dy + int64_t(n0) * g.k * pq;
    if (count == 1) {
      for_each_row_block(L, xc, [&](int oh0, int rows, const T* col, int64_t ldcol) {
        gemm(false, true, g.k, crs, rows * L.q, T(1), dyc + int64_t(oh0) * L.q, int(pq), col,
             int(ldcol), T(first ? 0 : 1), partial, crs);
        first = false;
      });
      continue;
    }
    const int ncol = static_cast<int>(count * pq);
    T* dyk = workspace<T>(kChunk, int64_t(g.k) * ncol);
    gather_k_major(g.k, pq, count, dyc, dyk);
    gemm(false, true, g.k, crs, ncol, T(1), dyk, ncol, chunk_columns(L, count, xc), ncol,
         T(first ? 0 : 1), partial, crs);
    first = false;
  }
}

}  // namespace

// The forward is batch-invariant: an image's output depends on that image alone. OpenBLAS's AVX2
// (Haswell, Zen) sgemm kernels give a column other bits at other positions of the same-shaped
// product, so images never share a GEMM: each image is lowered and multiplied on its own, the
// same shapes in the same order for every image (one image per task).
template <class T>
void conv2d_forward(const ConvGeom& g, const T* x, const T* w, const T* bias, T* y) {
  check_geom(g);
  if constexpr (std::is_same_v<T, float>) {
    if (use_winograd(g)) return winograd::forward(g, x, w, bias, y, false);
    if (use_direct(g)) return direct::forward(g, x, w, bias, y);
  }
  const Lowering L = forward_lowering(g);
  const int64_t pq = L.pq(), hw = L.hw();
  RegionErrors errors;  // workspaces grow inside the region
#pragma omp parallel for schedule(static) if (tasks_in_parallel())
  for (int image = 0; image < g.n; ++image) {
    errors.run([&] {
      forward_image(g, L, x + int64_t(image) * g.c * hw, w, bias, y + int64_t(image) * g.k * pq);
    });
  }
  errors.rethrow();
}

// The convolution, then the residual added in place: the sum of conv2d_forward and add_forward,
// bit for bit, without the add's separate output.
template <class T>
void conv2d_forward_residual(const ConvGeom& g, const T* x, const T* w, const T* residual, T* y) {
  conv2d_forward(g, x, w, static_cast<const T*>(nullptr), y);
  accumulate(int64_t(g.n) * g.k * g.p() * g.q(), T(1), residual, y);
}

template <class T>
void conv2d_backward_data(const ConvGeom& g, const T* dy, const T* w, T* dx, bool accumulate) {
  check_geom(g);
  const int nb = images_per_chunk(g), chunks = (g.n + nb - 1) / nb;
  const int64_t hw = int64_t(g.h) * g.w, pq = int64_t(g.p()) * g.q();
  // A stride-1 "same" 3x3 backward data is a forward convolution Winograd may take.
  const bool by_winograd =
      std::is_same_v<T, float> && same_stride1(g) && use_winograd(transposed_geom(g));
  const bool transposed = by_winograd || use_transposed_backward_data(g);
  T* wt = nullptr;
  if (transposed) {
    wt = workspace<T>(kCaller, int64_t(g.c) * g.k * g.r * g.s);
    flip_transpose_filters(g, w, wt);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (by_winograd) return winograd::forward(transposed_geom(g), dy, wt, nullptr, dx, accumulate);
    if (!transposed && use_direct(g) && direct::backward_data_applies(g))
      return direct::backward_data(g, dy, w, dx, accumulate);
  }
  const Lowering L = transposed ? transposed_lowering(g) : forward_lowering(g);
  RegionErrors errors;  // workspaces grow inside the region
#pragma omp parallel for schedule(static) if (tasks_in_parallel())
  for (int chunk = 0; chunk < chunks; ++chunk) {
    errors.run([&] {
      const int n0 = chunk * nb, count = std::min(nb, g.n - n0);
      const T* dyc = dy + int64_t(n0) * g.k * pq;
      T* dxc = dx + int64_t(n0) * g.c * hw;
      if (transposed) {
        backward_data_transposed_chunk(g, L, count, dyc, wt, dxc, accumulate);
      } else {
        backward_data_col2im_chunk(g, L, count, dyc, w, dxc, accumulate);
      }
    });
  }
  errors.rethrow();
}

template <class T>
void conv2d_backward_weight(const ConvGeom& g, const T* x, const T* dy, T* dw, T* dbias) {
  check_geom(g);
  if constexpr (std::is_same_v<T, float>) {
    const bool by_winograd = use_winograd(g);
    if (by_winograd || use_direct(g)) {
      if (by_winograd) {
        winograd::backward_weight(g, x, dy, dw);
      } else {
        direct::backward_weight(g, x, dy, dw);
      }
      if (dbias) add_bias_gradient(g, dy, dbias);
      return;
    }
  }
  const Lowering L = forward_lowering(g);
  const int crs = static_cast<int>(L.rows());
  const int64_t wsize = int64_t(g.k) * crs;
  const int nb = images_per_chunk(g), groups = weight_gradient_groups(g.n, wsize * int64_t(sizeof(T)), kPartialBytes);
  T* partials = workspace<T>(kCaller, groups * wsize);
  if (groups == 0) return;  // empty batch: nothing to add
    // One parallel region: with a single-threaded OpenBLAS the groups are shared out; otherwise the
    // team is one thread and the GEMMs (OpenBLAS) and copies (nested OpenMP) carry the threads.
  RegionErrors errors;  // workspaces grow inside the region
#pragma omp parallel if (tasks_in_parallel())
  {
#pragma omp for schedule(static)
    for (int group = 0; group < groups; ++group) {
      errors.run([&] {
        const int begin = group_begin(g.n, group, groups), end = group_begin(g.n, group + 1, groups);
        backward_weight_group(g, L, nb, begin, end, x, dy, partials + group * wsize);
      });
    }
#pragma omp for schedule(static)
    for (int64_t e = 0; e < wsize; ++e) {
      T acc = partials[e];
      for (int group = 1; group < groups; ++group) acc += partials[group * wsize + e];
      dw[e] += acc;
    }
  }
  errors.rethrow();  // dw holds partial sums then; the op fails as a whole
  if (dbias) add_bias_gradient(g, dy, dbias);
}

void set_conv_algorithm(ConvAlgorithm algorithm) { g_algorithm.store(algorithm); }
ConvAlgorithm conv_algorithm() { return g_algorithm.load(); }

KD_CONV2D_BACKWARD_AS_TWO_PASSES

KD_BF16_CONV2D_ENTRIES

KD_DEFINE_REGISTRAR(register_conv2d, KD_CONV2D_ALL_KERNELS)

}  // namespace kd::cpu
