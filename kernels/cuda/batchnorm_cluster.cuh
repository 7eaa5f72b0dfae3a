// Batch norm in training, one launch per pass, on devices with thread block clusters (sm_90).
// The bpc blocks of a channel (batchnorm_walk.cuh's slices, bpc at most 8, the portable cluster
// size) form one cluster. Each block sums its slice as the two-launch statistics kernel does;
// cluster_sum2 then gives every block the channel's sums through distributed shared memory, in
// the order last_block_sum2 adds them, so for the same bpc the bits equal the two-launch path's.
// Each block then applies the channel's coefficients to its own slice: forward y = (x - mean) *
// (gamma * invstd) + beta (with ReLU), backward dx (+)= a*dy - b*(x - center) - k. The second
// read of the slice comes from L2 (a channel at PreResNet's largest, 128x16x32x32, is 512 KiB).
// Block part 0 of each channel writes the per-channel results (saved and running statistics,
// dgamma and dbeta); dx and y are ASSIGNED (dx accumulated when asked), never read otherwise.
// S: the activations' storage (T, or bf16; batchnorm_walk.cuh).
// Included by kernels/cuda/normalization.cu only, which picks these or the two-launch kernels.
#pragma once
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/batchnorm_walk.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"

namespace kd {
namespace cuda {
namespace {

constexpr int kMaxClusterBlocks = 8;  // portable: every sm_90 part schedules it
// The dynamic shared memory of a cluster kernel: the block's pair, then the channel's totals.
constexpr size_t kClusterShared = 4 * sizeof(double);

int cluster_blocks_per_channel(int c, int64_t m) {
  return std::min(blocks_per_channel(c, m), kMaxClusterBlocks);
}

// (a, b), the block's totals in every thread, become the channel's totals over the cluster's
// blocks in every thread of every block. `pair`: kClusterShared bytes of dynamic shared memory.
// Lane p of warp 0 takes block p's pair (p < 32 always), a warp tree adds the lanes: the adds of
// last_block_sum2. Every thread of every block must call it (it holds cluster barriers).
__device__ void cluster_sum2(double* pair, double& a, double& b) {
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  if (threadIdx.x == 0) {
    pair[0] = a;
    pair[1] = b;
  }
  cluster.sync();  // every block's pair is written, and every block has started
  if (threadIdx.x < 32) {  // warp-uniform
    double ta = 0.0, tb = 0.0;
    const unsigned parts = cluster.num_blocks();
    for (unsigned p = threadIdx.x; p < parts; p += 32) {
      const double* peer = cluster.map_shared_rank(pair, p);
      ta += peer[0];
      tb += peer[1];
    }
    ta = fixed_order::warp_sum(ta);
    tb = fixed_order::warp_sum(tb);
    if (threadIdx.x == 0) {
      pair[2] = ta;
      pair[3] = tb;
    }
  }
  cluster.sync();  // no block leaves while a peer may still read its pair; totals visible
  a = pair[2];
  b = pair[3];
}

template <class T, class S>
__global__ void __launch_bounds__(kStatThreads)
    bn_train_cluster_kernel(int n, int c, int hw, int bpc, bool vector, const S* x,
                            const T* gamma, const T* beta, T eps, T momentum, S* y,
                            T* save_mean, T* save_invstd, T* running_mean, T* running_var,
                            int64_t* batches_tracked, bool relu) {
  KD_DYNAMIC_SHARED(double, pair);
  if (batches_tracked && blockIdx.x == 0 && threadIdx.x == 0) ++*batches_tracked;
  const int ch = int(blockIdx.x / unsigned(bpc)), part = int(blockIdx.x % unsigned(bpc));
  const int64_t values = int64_t(n) * hw;
  double s1, s2;
  const double shift = slice_sums_forward<T>(n, c, hw, ch, bpc, part, vector, x, s1, s2);
  fixed_order::block_sum2<kStatThreads>(s1, s2);
  cluster_sum2(pair, s1, s2);
  const double m = double(values);
  const ChannelStats st = channel_stats(shift, s1, s2, m, double(eps));
  if (part == 0 && threadIdx.x == 0)
    write_channel_stats(ch, st, m, momentum, save_mean, save_invstd, running_mean, running_var);
  const T center = T(st.mean), scale = T(double(gamma[ch]) * st.invstd), offset = beta[ch];
  walk_slice<T>(vector, c, hw, ch, values, bpc, part, [&](const auto& w) {
    Pack<T> v = w.load(x);
    for (int i = 0; i < kVec<T>; ++i) {
      const T t = fma_rn(v.v[i] - center, scale, offset);
      v.v[i] = relu && t < T(0) ? T(0) : t;
    }
    w.store(y, v);
  });
}

template <class T, class S>
__global__ void __launch_bounds__(kStatThreads)
    bn_backward_cluster_kernel(int n, int c, int hw, int bpc, bool vector, const S* x,
                               const S* dy, const S* relu_out, const T* gamma, const T* center,
                               const T* save_invstd, S* dx, T* dgamma, T* dbeta,
                               bool accumulate) {
  KD_DYNAMIC_SHARED(double, pair);
  const int ch = int(blockIdx.x / unsigned(bpc)), part = int(blockIdx.x % unsigned(bpc));
  const int64_t values = int64_t(n) * hw;
  double sum_dy, sum_dy_xc;
  slice_sums_backward<T>(n, c, hw, ch, bpc, part, vector, x, dy, relu_out, center, sum_dy,
                         sum_dy_xc);
  fixed_order::block_sum2<kStatThreads>(sum_dy, sum_dy_xc);
  cluster_sum2(pair, sum_dy, sum_dy_xc);
  const double invstd = double(save_invstd[ch]), m = double(values);
  const double a = double(gamma[ch]) * invstd;
  if (part == 0 && threadIdx.x == 0) {
    dgamma[ch] += T(sum_dy_xc * invstd);
    dbeta[ch] += T(sum_dy);
  }
  const T ca = T(a), cb = T(a * invstd * invstd * sum_dy_xc / m), ck = T(a * sum_dy / m);
  const T cen = center[ch];
  walk_slice<T>(vector, c, hw, ch, values, bpc, part, [&](const auto& w) {
    const Pack<T> vx = w.load(x), vdy = w.load(dy);
    Pack<T> out{}, d{};
    if (relu_out) out = w.load(relu_out);
    if (accumulate) d = w.load(static_cast<const S*>(dx));
    for (int i = 0; i < kVec<T>; ++i) {
      const T masked = relu_masked(vdy.v[i], relu_out, out.v[i]);
      const T g = fma_rn(-cb, vx.v[i] - cen, fma_rn(ca, masked, -ck));
      d.v[i] = accumulate ? d.v[i] + g : g;
    }
    w.store(dx, d);
  });
}

}  // namespace
}  // namespace cuda
}  // namespace kd
