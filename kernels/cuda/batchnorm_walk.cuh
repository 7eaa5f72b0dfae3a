// The batch-norm statistics walk shared by the two-launch kernels (kernels/cuda/normalization.cu)
// and the one-launch cluster kernels (kernels/cuda/batchnorm_cluster.cuh): the block sizes, how
// many blocks share a channel, the 16-byte Pack, and ChannelWalk, the order in which a thread
// visits its slice of a channel (the order the sums, and so the bits, depend on). Included by
// normalization.cu only (the anonymous namespace is that file's). Layout and order:
// normalization.cu's header comment.
// Storage: the activations are S, either T itself or bf16 (--precision bf16). The walk is T's
// (V = kVec<T> values per vector whatever S is: a bf16 vector is an 8-byte load for float), each
// value is widened on load and rounded once on store, so the arithmetic, and the bits before the
// rounding, are those of the T kernel on the widened values.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "kernels/bf16.h"
#include "kernels/cuda/plane_walk.h"

namespace kd {
namespace cuda {
namespace {

constexpr int kStatThreads = 512;  // statistics blocks
constexpr int kWarps = kStatThreads / 32;
constexpr int kThreads = 256;  // elementwise passes

// Statistics blocks per channel, bpc = clamp(ceil(kTargetBlocks / c), 1, m / kMinPerBlock):
// enough blocks over all channels for two per SM of an H200 (132 SMs), none with fewer than
// 4096 values (8 per thread). Constants, never the device's SM count, so the summation order
// and the bits depend on the shape alone. PreResNet at batch 128: c=16, m=131072 -> 17; c=32,
// m=32768 -> 8; c=64, m=8192 -> 2. bpc > 1 only for c < kTargetBlocks.
constexpr int kTargetBlocks = 2 * 132;
constexpr int64_t kMinPerBlock = 4096;
int blocks_per_channel(int c, int64_t m) {
  const int64_t want = (kTargetBlocks + c - 1) / c, most = m / kMinPerBlock;
  return int(std::max<int64_t>(1, std::min(want, most)));
}

// Stage 2's tickets, one counter per channel (bpc > 1 needs c < kTargetBlocks). Zero at module
// load and zero again after every completed launch (the finishing block resets its channel's),
// so no launch ever clears them; the statistics kernels never overlap (one stream).
__device__ unsigned g_bn_tickets[kTargetBlocks] = {};

// N values of T, aligned to their size: one load. N = V = kVec<T>: a 16-byte vector.
template <class T>
constexpr int kVec = 16 / int(sizeof(T));
template <class T, int N = kVec<T>>
struct alignas(N * sizeof(T)) Pack {
  T v[N];
};
template <int N, class T>
__device__ __forceinline__ Pack<T, N> pack_at(const T* p, int64_t k) {
  return *reinterpret_cast<const Pack<T, N>*>(p + k);
}

// N values of S at p + k (aligned to N * sizeof(S)) widened to T, and stored back rounded.
template <class T, int N, class S>
__device__ __forceinline__ Pack<T, N> load_widened(const S* p, int64_t k) {
  const Pack<S, N> raw = pack_at<N>(p, k);
  Pack<T, N> out;
#pragma unroll
  for (int i = 0; i < N; ++i) out.v[i] = widen<T>(raw.v[i]);
  return out;
}
template <int N, class S, class T>
__device__ __forceinline__ void store_narrowed(S* p, int64_t k, const Pack<T, N>& v) {
  Pack<S, N> raw;
#pragma unroll
  for (int i = 0; i < N; ++i) raw.v[i] = narrow<S>(v.v[i]);
  *reinterpret_cast<Pack<S, N>*>(p + k) = raw;
}

// Whether the Pack path fits: planes of whole Packs (V = kVec<T> values) and every operand of
// storage S aligned to a Pack of S (16 bytes for S = T).
template <class T, class S = T>
bool packs_fit(int hw, std::initializer_list<const void*> operands) {
  if (hw % kVec<T> != 0) return false;
  for (const void* p : operands)
    if (p && reinterpret_cast<uintptr_t>(p) % alignof(Pack<S, kVec<T>>) != 0) return false;
  return true;
}

// a * b + c rounded once, spelled out: compilers contract a * b + c by default (nvcc, and g++
// for C++) but may do so in one code path and not another, and the Pack and scalar paths must
// give the same bits.
__device__ __forceinline__ float fma_rn(float a, float b, float c) {
  return __fmaf_rn(a, b, c);
}
__device__ __forceinline__ double fma_rn(double a, double b, double c) {
  return __fma_rn(a, b, c);
}

__device__ __forceinline__ int64_t first_index() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return int64_t(blockDim.x) * gridDim.x; }

// Grid-stride steps of N values over the whole tensor (N = V on the Pack path, else 1; hw % N
// == 0): f(k, ch), k the step's first index, ch its channel. One code for both paths, so the
// per-element arithmetic, and the bits, are the same.
template <int N, class F>
__device__ __forceinline__ void tensor_steps(int64_t total, int c, int hw, F f) {
  for (int64_t k = first_index() * N; k < total; k += grid_stride() * N) f(k, int((k / hw) % c));
}

// This thread's vectors in block `part`'s slice of channel ch (see the header), in order.
// kVector: hw % V == 0 and aligned operands, so each vector is one Pack inside one plane.
template <class T, bool kVector>
class ChannelWalk {
 public:
  static constexpr int V = kVec<T>;
  __device__ ChannelWalk(int c, int hw, int ch, int64_t m, int bpc, int part)
      : c_(c), hw_(hw), ch_(ch), m_(m), at_(0, 1, 1) {
    const int64_t vectors = (m + V - 1) / V, chunk = (vectors + bpc - 1) / bpc;
    const int64_t begin = part * chunk;
    end_ = begin + chunk < vectors ? begin + chunk : vectors;
    q_ = begin + threadIdx.x;
    at_ = kVector ? PlaneWalk(q_, blockDim.x, hw / V) : PlaneWalk(V * q_, V * blockDim.x, hw);
  }
  __device__ bool more() const { return q_ < end_; }
  __device__ void next() {
    q_ += blockDim.x;
    at_.next();
  }
  // Values in this vector: V, but fewer in the last vector of a channel with m % V != 0.
  __device__ int count() const { return kVector || m_ - V * q_ >= V ? V : int(m_ - V * q_); }
  // The vector's values from p (x, dy, relu_out), widened; past the channel's end, zeros.
  template <class S>
  __device__ Pack<T> load(const S* p) const {
    if constexpr (kVector) {
      return load_widened<T, V>(p, (at_.row * c_ + ch_) * hw_ + at_.col * V);
    } else {
      Pack<T> out;
      int64_t row = at_.row, col = at_.col;
      for (int i = 0; i < V; ++i) {
        out.v[i] = V * q_ + i < m_ ? widen<T>(p[(row * c_ + ch_) * hw_ + col]) : T(0);
        if (++col == hw_) {
          col = 0;
          ++row;
        }
      }
      return out;
    }
  }
  // Writes the vector's values to p (y, dx), rounded to S, where load read them; none past the
  // channel's end.
  template <class S>
  __device__ void store(S* p, const Pack<T>& v) const {
    if constexpr (kVector) {
      store_narrowed<V>(p, (at_.row * c_ + ch_) * hw_ + at_.col * V, v);
    } else {
      int64_t row = at_.row, col = at_.col;
      for (int i = 0; i < V && V * q_ + i < m_; ++i) {
        p[(row * c_ + ch_) * hw_ + col] = narrow<S>(v.v[i]);
        if (++col == hw_) {
          col = 0;
          ++row;
        }
      }
    }
  }

 private:
  int c_, hw_, ch_;
  int64_t m_, q_, end_;
  PlaneWalk at_;  // kVector: over Packs (hw / V per plane); else over values, at V * q_
};

// Runs body(walk) over this thread's vectors, on the Pack path when `vector`.
template <class T, class Body>
__device__ __forceinline__ void walk_slice(bool vector, int c, int hw, int ch, int64_t m,
                                           int bpc, int part, Body body) {
  if (vector) {  // block-uniform
    for (ChannelWalk<T, true> w(c, hw, ch, m, bpc, part); w.more(); w.next()) body(w);
  } else {
    for (ChannelWalk<T, false> w(c, hw, ch, m, bpc, part); w.more(); w.next()) body(w);
  }
}

// The gradient reaching the normalisation: dy, or 0 where the fused ReLU's output is not > 0.
template <class T, class S>
__device__ __forceinline__ T relu_masked(T dy, const S* relu_out, T out) {
  return relu_out && !(out > T(0)) ? T(0) : dy;
}

// This thread's share of block `part`'s sums of channel ch, the statistics pass: s1 = sum(x -
// shift), s2 = sum((x - shift)^2), shift = the channel's first value (returned).
template <class T, class S>
__device__ double slice_sums_forward(int n, int c, int hw, int ch, int bpc, int part, bool vector,
                                     const S* x, double& s1, double& s2) {
  const double shift = double(widen<T>(x[int64_t(ch) * hw]));
  s1 = 0.0, s2 = 0.0;
  walk_slice<T>(vector, c, hw, ch, int64_t(n) * hw, bpc, part, [&](const auto& w) {
    const Pack<T> v = w.load(x);
    for (int i = 0; i < w.count(); ++i) {
      const double d = double(v.v[i]) - shift;
      s1 += d;
      s2 = fma_rn(d, d, s2);
    }
  });
  return shift;
}

// The same for the backward: sum_dy = sum(dy'), sum_dy_xc = sum(dy' * (x - center[ch])), dy'
// = dy masked by the fused ReLU's output when relu_out is given.
template <class T, class S>
__device__ void slice_sums_backward(int n, int c, int hw, int ch, int bpc, int part, bool vector,
                                    const S* x, const S* dy, const S* relu_out, const T* center,
                                    double& sum_dy, double& sum_dy_xc) {
  const double mid = double(center[ch]);
  sum_dy = 0.0, sum_dy_xc = 0.0;
  walk_slice<T>(vector, c, hw, ch, int64_t(n) * hw, bpc, part, [&](const auto& w) {
    const Pack<T> vx = w.load(x), vdy = w.load(dy);
    Pack<T> out{};
    if (relu_out) out = w.load(relu_out);
    for (int i = 0; i < w.count(); ++i) {
      const double d = double(relu_masked(vdy.v[i], relu_out, out.v[i]));
      sum_dy += d;
      sum_dy_xc = fma_rn(d, double(vx.v[i]) - mid, sum_dy_xc);
    }
  });
}

// A channel's statistics from its m values' sums: mean, biased variance and invstd, in double.
struct ChannelStats {
  double mean, var, invstd;
};
__device__ inline ChannelStats channel_stats(double shift, double s1, double s2, double m,
                                             double eps) {
  const double mean = shift + s1 / m;
  double var = (s2 - s1 * s1 / m) / m;
  if (var < 0.0) var = 0.0;
  return {mean, var, 1.0 / sqrt(var + eps)};
}

// Writes the saved statistics and updates the running ones (PyTorch's update, with the unbiased
// variance) of channel ch.
template <class T>
__device__ void write_channel_stats(int ch, const ChannelStats& st, double m, T momentum,
                                    T* save_mean, T* save_invstd, T* running_mean,
                                    T* running_var) {
  save_mean[ch] = T(st.mean);
  save_invstd[ch] = T(st.invstd);
  if (running_mean)
    running_mean[ch] = T((1.0 - momentum) * running_mean[ch] + double(momentum) * st.mean);
  if (running_var) {
    const double unbiased = st.var * m / (m - 1.0);
    running_var[ch] = T((1.0 - momentum) * running_var[ch] + double(momentum) * unbiased);
  }
}

}  // namespace
}  // namespace cuda
}  // namespace kd
