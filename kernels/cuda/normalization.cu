// CUDA batch norm and group norm over NCHW (contract: kernels/normalization.h; specification:
// kernels/cpu/normalization_ref.cpp), device pointers, compute stream. Forward ASSIGNS y and the
// saved statistics (and updates the running ones); backward ACCUMULATES into dgamma, dbeta and
// dx (batch norm in training assigns dx when accumulate is false, never reading it).
// Batch-norm statistics: a channel's m = n*hw values, in (sample, hw) order, are cut into vectors
// of V = 16 / sizeof(T) values and those into bpc = blocks_per_channel(c, m) equal contiguous
// slices, one block each. Stage 1: thread t sums vectors t, t + kStatThreads, ... of its slice,
// each vector's values in order, in DOUBLE; block_sum2's fixed trees give the block's pair.
// Stage 2, same launch (last_block_sum2, kernels/cuda/reduce.cuh): the last block of the channel
// to finish adds the bpc pairs in block order and finishes the channel. No float atomics: the
// order depends only on the shape, so results are bitwise reproducible run to run. Sums are of
// (x - shift), (x - shift)^2 with shift = the channel's first value, as on the CPU (no
// cancellation when |mean| >> std); backward, of dy (masked by the fused ReLU's output) and
// dy * (x - center). A vector is one 16-byte load when hw % V == 0 and the operands are aligned,
// else V scalar loads in the same order: alignment never changes the bits. The per-element
// passes run in T on per-channel coefficients left in the workspace, over the whole tensor (the
// second of each entry point's two launches), a Pack per step under the same rule. With thread
// block clusters the training passes are one launch each instead (batchnorm_cluster.cuh).
// The _bf16 training entries are the same kernels over bf16 activations (template parameter S):
// the walk and the vectors are T's (V values, an 8-byte load of bf16 for float), each value
// widened on load and each output rounded once on store, so they give the T kernels' bits on
// the widened values, rounded (kernels/normalization.h).
// Group norm: one block of kStatThreads per (sample, group), the same sums and trees.
#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/cuda/batchnorm_cluster.cuh"
#include "kernels/cuda/batchnorm_walk.cuh"
#include "kernels/cuda/env_switch.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/plane_walk.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/normalization.h"

namespace kd {
namespace cuda {

namespace {

using fixed_order::block_sum2;
using fixed_order::last_block_sum2;
using fixed_order::warp_sum;

// Blocks ch * bpc .. ch * bpc + bpc - 1: statistics of channel ch; its finishing block writes
// save_mean/save_invstd, the running statistics (PyTorch's update with the unbiased variance)
// and coef[ch] = mean, coef[c + ch] = gamma * invstd.
template <class T, class S>
__global__ void __launch_bounds__(kStatThreads)
    bn_train_stats_kernel(int n, int c, int hw, int bpc, bool vector, const S* x,
                          const T* gamma, T eps, T momentum, T* save_mean, T* save_invstd,
                          T* running_mean, T* running_var, int64_t* batches_tracked, T* coef,
                          double* partials) {
  if (batches_tracked && blockIdx.x == 0 && threadIdx.x == 0) ++*batches_tracked;
  const int ch = int(blockIdx.x / unsigned(bpc)), part = int(blockIdx.x % unsigned(bpc));
  double s1, s2;
  const double shift = slice_sums_forward<T>(n, c, hw, ch, bpc, part, vector, x, s1, s2);
  block_sum2<kStatThreads>(s1, s2);
  if (!last_block_sum2(&g_bn_tickets[ch], part, bpc, partials + 2 * int64_t(ch) * bpc, s1, s2))
    return;
  const double m = double(int64_t(n) * hw);
  const ChannelStats st = channel_stats(shift, s1, s2, m, double(eps));
  write_channel_stats(ch, st, m, momentum, save_mean, save_invstd, running_mean, running_var);
  coef[ch] = T(st.mean);
  coef[c + ch] = T(double(gamma[ch]) * st.invstd);
}

// y = (x - center[ch]) * scale[ch] + beta[ch] over the whole tensor; with relu, max(y, 0)
// (NaN kept), the fused batchnorm + ReLU. vector (packs_fit for x, y): a Pack per step.
template <class T, int N, class S>
__device__ void affine_steps(int64_t total, int c, int hw, const S* x, const T* center,
                             const T* scale, const T* beta, S* y, bool relu) {
  tensor_steps<N>(total, c, hw, [&](int64_t k, int ch) {
    Pack<T, N> v = load_widened<T, N>(x, k);
    for (int i = 0; i < N; ++i) {
      const T t = fma_rn(v.v[i] - center[ch], scale[ch], beta[ch]);
      v.v[i] = relu && t < T(0) ? T(0) : t;
    }
    store_narrowed<N>(y, k, v);
  });
}
template <class T, class S>
__global__ void bn_affine_kernel(int64_t total, int c, int hw, bool vector, const S* x,
                                 const T* center, const T* scale, const T* beta, S* y,
                                 bool relu) {
  if (vector) affine_steps<T, kVec<T>>(total, c, hw, x, center, scale, beta, y, relu);
  else affine_steps<T, 1>(total, c, hw, x, center, scale, beta, y, relu);
}

// scale[ch] = gamma / sqrt(running_var + eps), in double then rounded.
template <class T>
__global__ void bn_eval_scale_kernel(int c, const T* gamma, const T* running_var, T eps,
                                     T* scale) {
  const int ch = int(first_index());
  if (ch < c) scale[ch] = T(double(gamma[ch]) / sqrt(double(running_var[ch]) + double(eps)));
}

// Blocks of channel ch as in bn_train_stats_kernel: sum(dy) and sum(dy * (x - center)); the
// finishing block adds dgamma += sum(dy * xhat), dbeta += sum(dy) and writes coef. Train
// (save_invstd given): coef = {a, b, k} folding dx = gamma*invstd*(dy - mean(dy) -
// xhat*mean(dy*xhat)) into a*dy - b*(x - center) - k. Eval (save_invstd null, invstd from
// running_var): coef = {a = gamma*invstd}.
template <class T, class S>
__global__ void __launch_bounds__(kStatThreads)
    bn_backward_stats_kernel(int n, int c, int hw, int bpc, bool vector, const S* x,
                             const S* dy, const S* relu_out, const T* gamma, const T* center,
                             const T* save_invstd, const T* running_var, T eps, T* dgamma,
                             T* dbeta, T* coef, double* partials) {
  const int ch = int(blockIdx.x / unsigned(bpc)), part = int(blockIdx.x % unsigned(bpc));
  const int64_t values = int64_t(n) * hw;
  double sum_dy, sum_dy_xc;
  slice_sums_backward<T>(n, c, hw, ch, bpc, part, vector, x, dy, relu_out, center, sum_dy,
                         sum_dy_xc);
  block_sum2<kStatThreads>(sum_dy, sum_dy_xc);
  if (!last_block_sum2(&g_bn_tickets[ch], part, bpc, partials + 2 * int64_t(ch) * bpc, sum_dy,
                       sum_dy_xc))
    return;
  const double invstd = save_invstd ? double(save_invstd[ch])
                                    : 1.0 / sqrt(double(running_var[ch]) + double(eps));
  const double a = double(gamma[ch]) * invstd;
  coef[ch] = T(a);
  if (save_invstd) {
    const double m = double(values);
    coef[c + ch] = T(a * invstd * invstd * sum_dy_xc / m);
    coef[2 * c + ch] = T(a * sum_dy / m);
  }
  dgamma[ch] += T(sum_dy_xc * invstd);
  dbeta[ch] += T(sum_dy);
}

// dx (+)= a*dy - k - b*(x - center), coef = {a[c], b[c], k[c]}; assigning never reads dx.
// vector (packs_fit for x, dy, relu_out, dx): a Pack per step.
template <class T, int N, class S>
__device__ void apply_steps(int64_t total, int c, int hw, const S* x, const S* dy,
                            const S* relu_out, const T* center, const T* coef, S* dx,
                            bool accumulate) {
  tensor_steps<N>(total, c, hw, [&](int64_t k, int ch) {
    const Pack<T, N> vx = load_widened<T, N>(x, k), vdy = load_widened<T, N>(dy, k);
    Pack<T, N> out{}, d{};
    if (relu_out) out = load_widened<T, N>(relu_out, k);
    if (accumulate) d = load_widened<T, N>(static_cast<const S*>(dx), k);
    for (int i = 0; i < N; ++i) {
      const T g = fma_rn(-coef[c + ch], vx.v[i] - center[ch],
                         fma_rn(coef[ch], relu_masked(vdy.v[i], relu_out, out.v[i]),
                                -coef[2 * c + ch]));
      d.v[i] = accumulate ? d.v[i] + g : g;
    }
    store_narrowed<N>(dx, k, d);
  });
}
template <class T, class S>
__global__ void bn_backward_train_apply_kernel(int64_t total, int c, int hw, bool vector,
                                               const S* x, const S* dy, const S* relu_out,
                                               const T* center, const T* coef, S* dx,
                                               bool accumulate) {
  if (vector)
    apply_steps<T, kVec<T>>(total, c, hw, x, dy, relu_out, center, coef, dx, accumulate);
  else
    apply_steps<T, 1>(total, c, hw, x, dy, relu_out, center, coef, dx, accumulate);
}

// dx += a * dy: running statistics are constants, so the layer is affine in x.
template <class T>
__global__ void bn_backward_eval_apply_kernel(int64_t total, int c, int hw, const T* dy,
                                              const T* a, T* dx) {
  for (int64_t k = first_index(); k < total; k += grid_stride()) {
    const int ch = int((k / hw) % c);
    dx[k] += a[ch] * dy[k];
  }
}

// Block bi = sample * groups + group owns the contiguous per_group * hw elements at bi * len:
// statistics, save_mean/save_invstd[bi], then y for the block.
template <class T>
__global__ void __launch_bounds__(kStatThreads)
    gn_forward_kernel(int groups, int per_group, int hw, const T* x, const T* gamma,
                      const T* beta, T eps, T* y, T* save_mean, T* save_invstd) {
  const int64_t bi = blockIdx.x, len = int64_t(per_group) * hw;
  const int c0 = int(bi % groups) * per_group;
  const T* xb = x + bi * len;
  T* yb = y + bi * len;
  const double shift = double(xb[0]);
  double s1 = 0.0, s2 = 0.0;
  for (int64_t j = threadIdx.x; j < len; j += kStatThreads) {
    const double d = double(xb[j]) - shift;
    s1 += d;
    s2 += d * d;
  }
  block_sum2<kStatThreads>(s1, s2);  // every thread gets the totals and derives the same stats
  const double m = double(len);
  const double mean = shift + s1 / m;
  double var = (s2 - s1 * s1 / m) / m;
  if (var < 0.0) var = 0.0;
  const double invstd = 1.0 / sqrt(var + double(eps));
  if (threadIdx.x == 0) {
    save_mean[bi] = T(mean);
    save_invstd[bi] = T(invstd);
  }
  const T mean_t = T(mean);
  for (PlaneWalk at(threadIdx.x, kStatThreads, hw); at.row < per_group; at.next()) {
    const int ch = c0 + int(at.row);
    const int64_t j = at.row * hw + at.col;
    yb[j] = (xb[j] - mean_t) * T(double(gamma[ch]) * invstd) + beta[ch];
  }
}

// Block bi as above. Each warp takes whole channels of the group: part_dy[sample*c + ch] =
// sum(dy), part_dy_xhat[...] = sum(dy * xhat) over the plane (workspace, read again by
// gn_param_grad_kernel). Warp 0 then folds them with gamma into the group's coefficients and the
// whole block adds dx = invstd*(gamma*dy - mean(dxhat) - xhat*mean(dxhat*xhat)), dxhat = gamma*dy.
template <class T>
__global__ void __launch_bounds__(kStatThreads)
    gn_backward_kernel(int groups, int per_group, int hw, const T* x, const T* dy,
                       const T* gamma, const T* save_mean, const T* save_invstd, T* dx,
                       double* part_dy, double* part_dy_xhat) {
  __shared__ T coef_b, coef_k;
  const int64_t bi = blockIdx.x, len = int64_t(per_group) * hw, off = bi * len;
  const int c0 = int(bi % groups) * per_group;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const double mean = double(save_mean[bi]), invstd = double(save_invstd[bi]);
  for (int j = warp; j < per_group; j += kWarps) {  // warp-uniform loop
    const int64_t plane = off + int64_t(j) * hw;
    double s_dy = 0.0, s_dy_xc = 0.0;
    for (int i = lane; i < hw; i += 32) {
      const double d = double(dy[plane + i]);
      s_dy += d;
      s_dy_xc += d * (double(x[plane + i]) - mean);
    }
    s_dy = warp_sum(s_dy);
    s_dy_xc = warp_sum(s_dy_xc);
    if (lane == 0) {
      part_dy[bi * per_group + j] = s_dy;  // == sample * c + c0 + j
      part_dy_xhat[bi * per_group + j] = s_dy_xc * invstd;
    }
  }
  __syncthreads();  // also makes the global part_* writes visible within the block
  if (warp == 0) {
    double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
    for (int j = lane; j < per_group; j += 32) {
      const double gm = double(gamma[c0 + j]);
      sum_dxhat += gm * part_dy[bi * per_group + j];
      sum_dxhat_xhat += gm * part_dy_xhat[bi * per_group + j];
    }
    sum_dxhat = warp_sum(sum_dxhat);
    sum_dxhat_xhat = warp_sum(sum_dxhat_xhat);
    if (lane == 0) {
      const double m = double(len);
      coef_b = T(invstd * invstd * sum_dxhat_xhat / m);
      coef_k = T(invstd * sum_dxhat / m);
    }
  }
  __syncthreads();
  const T b = coef_b, k = coef_k, mean_t = save_mean[bi];
  for (PlaneWalk at(threadIdx.x, kStatThreads, hw); at.row < per_group; at.next()) {
    const int ch = c0 + int(at.row);
    const int64_t e = off + at.row * hw + at.col;
    dx[e] += T(invstd * double(gamma[ch])) * dy[e] - b * (x[e] - mean_t) - k;
  }
}

// dgamma[ch] += sum over samples of part_dy_xhat, dbeta[ch] += of part_dy, in sample order.
template <class T>
__global__ void gn_param_grad_kernel(int n, int c, const double* part_dy,
                                     const double* part_dy_xhat, T* dgamma, T* dbeta) {
  const int ch = int(first_index());
  if (ch >= c) return;
  double s_dy = 0.0, s_dy_xhat = 0.0;
  for (int s = 0; s < n; ++s) {
    s_dy += part_dy[int64_t(s) * c + ch];
    s_dy_xhat += part_dy_xhat[int64_t(s) * c + ch];
  }
  dgamma[ch] += T(s_dy_xhat);
  dbeta[ch] += T(s_dy);
}

void check_groups(const NormGeom& g) {
  KD_CHECK(g.groups > 0 && g.c % g.groups == 0,
           "group norm: " << g.c << " channels do not split into " << g.groups << " groups");
  KD_CHECK(g.hw > 0, "group norm: empty planes (hw = " << g.hw << ")");
}

int64_t numel(const NormGeom& g) { return int64_t(g.n) * g.c * g.hw; }

// One workspace for a statistics launch: `count` coefficients of T, then (bpc > 1) the blocks'
// pairs of double sums, 2 * c * bpc, 16-byte aligned.
template <class T>
struct StatsScratch {
  T* coef;
  double* partials;  // null when bpc == 1
};
template <class T>
StatsScratch<T> stats_scratch(int count, int c, int bpc) {
  KD_CHECK(bpc == 1 || c <= kTargetBlocks, "batchnorm: " << bpc << " blocks for each of " << c
                                                           << " channels exceed the tickets");
  const size_t coef_bytes = (size_t(count) * sizeof(T) + 15) / 16 * 16;
  const size_t pair_bytes = bpc > 1 ? size_t(2) * size_t(c) * size_t(bpc) * sizeof(double) : 0;
  char* base = static_cast<char*>(workspace(coef_bytes + pair_bytes));
  return {reinterpret_cast<T*>(base),
          bpc > 1 ? reinterpret_cast<double*>(base + coef_bytes) : nullptr};
}

// One launch per training pass in thread block clusters (batchnorm_cluster.cuh) where the device
// has them; KDLAB_BN_CLUSTERS=0 keeps the two launches (an A/B switch for timing on a GPU; read
// at every call, so a test can compare both paths in one process).
bool bn_in_clusters() {
  return env_switch("KDLAB_BN_CLUSTERS", "0", "1", true) && clusters_available();
}


// The training passes over activations of storage S (T, or bf16 for the _bf16 entries).
template <class T, class S>
void bn_forward_train(const NormGeom& g, const S* x, const T* gamma, const T* beta, T eps,
                      T momentum, S* y, T* save_mean, T* save_invstd, T* running_mean,
                      T* running_var, int64_t* batches_tracked, bool relu) {
  const int64_t m = int64_t(g.n) * g.hw;
  KD_CHECK(m > 1, "batchnorm (train): need more than one value per channel, got n="
                      << g.n << " hw=" << g.hw);
  if (g.c <= 0) return;
  if (bn_in_clusters()) {
    const int bpc = cluster_blocks_per_channel(g.c, m);
    KD_LAUNCH_CLUSTER((bn_train_cluster_kernel<T, S>), unsigned(int64_t(g.c) * bpc),
                      kStatThreads, kClusterShared, unsigned(bpc), g.n, g.c, g.hw, bpc,
                      packs_fit<T, S>(g.hw, {x, y}), x, gamma, beta, eps, momentum, y,
                      save_mean, save_invstd, running_mean, running_var, batches_tracked, relu);
    return;
  }
  const int bpc = blocks_per_channel(g.c, m);
  const StatsScratch<T> ws = stats_scratch<T>(2 * g.c, g.c, bpc);  // mean[c], gamma*invstd[c]
  const bool stats_packs = packs_fit<T, S>(g.hw, {x});
  const bool affine_packs = packs_fit<T, S>(g.hw, {x, y});
  KD_LAUNCH((bn_train_stats_kernel<T, S>), unsigned(int64_t(g.c) * bpc), kStatThreads, 0, g.n,
            g.c, g.hw, bpc, stats_packs, x, gamma, eps, momentum, save_mean, save_invstd,
            running_mean, running_var, batches_tracked, ws.coef, ws.partials);
  const int64_t total = numel(g);
  KD_LAUNCH((bn_affine_kernel<T, S>),
            grid_for(affine_packs ? total / kVec<T> : total, kThreads), kThreads, 0, total, g.c,
            g.hw, affine_packs, x, ws.coef, ws.coef + g.c, beta, y, relu);
}

template <class T, class S>
void bn_backward_train(const NormGeom& g, const S* x, const S* dy, const T* gamma,
                       const T* save_mean, const T* save_invstd, S* dx, T* dgamma, T* dbeta,
                       bool accumulate, const S* relu_out) {
  const int64_t total = numel(g);
  if (total <= 0) return;
  if (bn_in_clusters()) {
    const int bpc = cluster_blocks_per_channel(g.c, int64_t(g.n) * g.hw);
    KD_LAUNCH_CLUSTER((bn_backward_cluster_kernel<T, S>), unsigned(int64_t(g.c) * bpc),
                      kStatThreads, kClusterShared, unsigned(bpc), g.n, g.c, g.hw, bpc,
                      packs_fit<T, S>(g.hw, {x, dy, relu_out, dx}), x, dy, relu_out, gamma,
                      save_mean, save_invstd, dx, dgamma, dbeta, accumulate);
    return;
  }
  const int bpc = blocks_per_channel(g.c, int64_t(g.n) * g.hw);
  const StatsScratch<T> ws = stats_scratch<T>(3 * g.c, g.c, bpc);  // a[c], b[c], k[c]
  const bool stats_packs = packs_fit<T, S>(g.hw, {x, dy, relu_out});
  const bool apply_packs = packs_fit<T, S>(g.hw, {x, dy, relu_out, dx});
  KD_LAUNCH((bn_backward_stats_kernel<T, S>), unsigned(int64_t(g.c) * bpc), kStatThreads, 0,
            g.n, g.c, g.hw, bpc, stats_packs, x, dy, relu_out, gamma, save_mean, save_invstd,
            static_cast<const T*>(nullptr), T(0), dgamma, dbeta, ws.coef, ws.partials);
  KD_LAUNCH((bn_backward_train_apply_kernel<T, S>),
            grid_for(apply_packs ? total / kVec<T> : total, kThreads), kThreads, 0, total,
            g.c, g.hw, apply_packs, x, dy, relu_out, save_mean, ws.coef, dx, accumulate);
}

}  // namespace

template <class T>
void batchnorm_forward_train(const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps,
                             T momentum, T* y, T* save_mean, T* save_invstd, T* running_mean,
                             T* running_var, int64_t* batches_tracked, bool relu) {
  bn_forward_train<T, T>(g, x, gamma, beta, eps, momentum, y, save_mean, save_invstd,
                         running_mean, running_var, batches_tracked, relu);
}

template <class T>
void batchnorm_forward_train_bf16(const NormGeom& g, const bf16* x, const T* gamma, const T* beta,
                                  T eps, T momentum, bf16* y, T* save_mean, T* save_invstd,
                                  T* running_mean, T* running_var, int64_t* batches_tracked,
                                  bool relu) {
  bn_forward_train<T, bf16>(g, x, gamma, beta, eps, momentum, y, save_mean, save_invstd,
                            running_mean, running_var, batches_tracked, relu);
}

template <class T>
void batchnorm_forward_eval(const NormGeom& g, const T* x, const T* gamma, const T* beta,
                            const T* running_mean, const T* running_var, T eps, T* y) {
  const int64_t total = numel(g);
  if (total <= 0) return;
  T* scale = stats_scratch<T>(g.c, g.c, 1).coef;
  const bool packs = packs_fit<T>(g.hw, {x, y});
  KD_LAUNCH(bn_eval_scale_kernel<T>, grid_for(g.c, kThreads), kThreads, 0, g.c, gamma,
            running_var, eps, scale);
  KD_LAUNCH((bn_affine_kernel<T, T>), grid_for(packs ? total / kVec<T> : total, kThreads),
            kThreads, 0, total, g.c, g.hw, packs, x, running_mean, scale, beta, y, false);
}

template <class T>
void batchnorm_backward_train(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                              const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                              T* dbeta, bool accumulate, const T* relu_out) {
  bn_backward_train<T, T>(g, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, accumulate,
                          relu_out);
}

template <class T>
void batchnorm_backward_train_bf16(const NormGeom& g, const bf16* x, const bf16* dy,
                                   const T* gamma, const T* save_mean, const T* save_invstd,
                                   bf16* dx, T* dgamma, T* dbeta, bool accumulate,
                                   const bf16* relu_out) {
  bn_backward_train<T, bf16>(g, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta,
                             accumulate, relu_out);
}

template <class T>
void batchnorm_backward_eval(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                             const T* running_mean, const T* running_var, T eps, T* dx,
                             T* dgamma, T* dbeta) {
  const int64_t total = numel(g);
  if (total <= 0) return;
  const int bpc = blocks_per_channel(g.c, int64_t(g.n) * g.hw);
  const StatsScratch<T> ws = stats_scratch<T>(g.c, g.c, bpc);  // a[c]
  const bool stats_packs = packs_fit<T>(g.hw, {x, dy});
  KD_LAUNCH((bn_backward_stats_kernel<T, T>), unsigned(int64_t(g.c) * bpc), kStatThreads, 0,
            g.n, g.c, g.hw, bpc, stats_packs, x, dy, static_cast<const T*>(nullptr), gamma,
            running_mean, static_cast<const T*>(nullptr), running_var, eps, dgamma, dbeta,
            ws.coef, ws.partials);
  KD_LAUNCH(bn_backward_eval_apply_kernel<T>, grid_for(total, kThreads), kThreads, 0, total,
            g.c, g.hw, dy, ws.coef, dx);
}

template <class T>
void groupnorm_forward(const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps, T* y,
                       T* save_mean, T* save_invstd) {
  check_groups(g);
  const int64_t blocks = int64_t(g.n) * g.groups;
  if (numel(g) <= 0) return;
  KD_LAUNCH(gn_forward_kernel<T>, unsigned(blocks), kStatThreads, 0, g.groups, g.c / g.groups,
            g.hw, x, gamma, beta, eps, y, save_mean, save_invstd);
}

template <class T>
void groupnorm_backward(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                        const T* save_mean, const T* save_invstd, T* dx, T* dgamma, T* dbeta) {
  check_groups(g);
  const int64_t blocks = int64_t(g.n) * g.groups, planes = int64_t(g.n) * g.c;
  if (numel(g) <= 0) return;
  double* part_dy = static_cast<double*>(workspace(size_t(2 * planes) * sizeof(double)));
  double* part_dy_xhat = part_dy + planes;
  KD_LAUNCH(gn_backward_kernel<T>, unsigned(blocks), kStatThreads, 0, g.groups, g.c / g.groups,
            g.hw, x, dy, gamma, save_mean, save_invstd, dx, part_dy, part_dy_xhat);
  KD_LAUNCH(gn_param_grad_kernel<T>, grid_for(g.c, kThreads), kThreads, 0, g.n, g.c, part_dy,
            part_dy_xhat, dgamma, dbeta);
}

KD_DEFINE_REGISTRAR(register_norm, KD_NORM_KERNELS)

}  // namespace cuda
}  // namespace kd
