// CUDA batch norm and group norm over NCHW (contract: kernels/normalization.h; specification:
// kernels/cpu/normalization_ref.cpp), device pointers, compute stream. Forward ASSIGNS y and the
// saved statistics; backward ACCUMULATES into dx, dgamma, dbeta. No atomics.
// Reductions: one block of kStatThreads per channel (batch norm) or per (sample, group) (group
// norm). Each thread sums its strided share in DOUBLE, then a fixed warp-shuffle tree and a fixed
// cross-warp tree (kernels/cuda/reduce.cuh) combine them: the order depends only on the shape, so
// results are bitwise reproducible run to run. Statistics are one pass, sums of (x - shift) and
// (x - shift)^2 with shift = the channel's (group's) first element, as the CPU kernels do, so the
// variance does not cancel when |mean| >> std. Batch-norm threads walk (sample, hw) with
// consecutive threads on consecutive hw (kernels/cuda/plane_walk.h), coalesced for any hw.
// The per-element passes run in T on per-channel coefficients the reduction leaves in the
// workspace, over the whole tensor in parallel (a separate launch), like the CPU's.
#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/plane_walk.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/normalization.h"

namespace kd {
namespace cuda {

namespace {

using fixed_order::block_sum2;
using fixed_order::warp_sum;

constexpr int kStatThreads = 512;  // one block per reduced channel / group
constexpr int kWarps = kStatThreads / 32;
constexpr int kThreads = 256;  // elementwise passes

__device__ __forceinline__ int64_t first_index() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return int64_t(blockDim.x) * gridDim.x; }

// Block ch: statistics of channel ch, then save_mean/save_invstd, running statistics (PyTorch's
// update with the unbiased variance), and coef[ch] = mean, coef[c + ch] = gamma * invstd.
template <class T>
__global__ void __launch_bounds__(kStatThreads)
    bn_train_stats_kernel(int n, int c, int hw, const T* x, const T* gamma, T eps, T momentum,
                          T* save_mean, T* save_invstd, T* running_mean, T* running_var,
                          T* coef) {
  const int ch = blockIdx.x;
  const double shift = double(x[int64_t(ch) * hw]);
  double s1 = 0.0, s2 = 0.0;
  for (PlaneWalk at(threadIdx.x, kStatThreads, hw); at.row < n; at.next()) {
    const double d = double(x[(at.row * c + ch) * hw + at.col]) - shift;
    s1 += d;
    s2 += d * d;
  }
  block_sum2<kStatThreads>(s1, s2);
  if (threadIdx.x != 0) return;
  const double m = double(n) * hw;
  const double mean = shift + s1 / m;
  double var = (s2 - s1 * s1 / m) / m;
  if (var < 0.0) var = 0.0;
  const double invstd = 1.0 / sqrt(var + double(eps));
  save_mean[ch] = T(mean);
  save_invstd[ch] = T(invstd);
  coef[ch] = T(mean);
  coef[c + ch] = T(double(gamma[ch]) * invstd);
  if (running_mean)
    running_mean[ch] = T((1.0 - momentum) * running_mean[ch] + double(momentum) * mean);
  if (running_var) {
    const double unbiased = var * m / (m - 1.0);
    running_var[ch] = T((1.0 - momentum) * running_var[ch] + double(momentum) * unbiased);
  }
}

// y = (x - center[ch]) * scale[ch] + beta[ch] over the whole tensor; with relu, max(y, 0)
// (NaN kept), the fused batchnorm + ReLU.
template <class T>
__global__ void bn_affine_kernel(int64_t total, int c, int hw, const T* x, const T* center,
                                 const T* scale, const T* beta, T* y, bool relu) {
  for (int64_t k = first_index(); k < total; k += grid_stride()) {
    const int ch = int((k / hw) % c);
    const T v = (x[k] - center[ch]) * scale[ch] + beta[ch];
    y[k] = relu && v < T(0) ? T(0) : v;
  }
}

// The gradient reaching the normalisation: dy, or dy masked by the fused ReLU's output.
template <class T>
__device__ __forceinline__ T relu_masked(const T* dy, const T* relu_out, int64_t k) {
  return relu_out && !(relu_out[k] > T(0)) ? T(0) : dy[k];
}

// scale[ch] = gamma / sqrt(running_var + eps), in double then rounded.
template <class T>
__global__ void bn_eval_scale_kernel(int c, const T* gamma, const T* running_var, T eps,
                                     T* scale) {
  const int ch = int(first_index());
  if (ch < c) scale[ch] = T(double(gamma[ch]) / sqrt(double(running_var[ch]) + double(eps)));
}

// Block ch: sum(dy) and sum(dy * (x - center)) for channel ch; dgamma += sum(dy * xhat),
// dbeta += sum(dy). Train (save_invstd given): coef = {a, b, k} folding
// dx = gamma*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)) into a*dy - b*(x - center) - k.
// Eval (save_invstd null, invstd from running_var): coef = {a = gamma*invstd}.
template <class T>
__global__ void __launch_bounds__(kStatThreads)
    bn_backward_stats_kernel(int n, int c, int hw, const T* x, const T* dy, const T* relu_out,
                             const T* gamma, const T* center, const T* save_invstd,
                             const T* running_var, T eps, T* dgamma, T* dbeta, T* coef) {
  const int ch = blockIdx.x;
  const double mid = double(center[ch]);
  double sum_dy = 0.0, sum_dy_xc = 0.0;
  for (PlaneWalk at(threadIdx.x, kStatThreads, hw); at.row < n; at.next()) {
    const int64_t k = (at.row * c + ch) * hw + at.col;
    const double d = double(relu_masked(dy, relu_out, k));
    sum_dy += d;
    sum_dy_xc += d * (double(x[k]) - mid);
  }
  block_sum2<kStatThreads>(sum_dy, sum_dy_xc);
  if (threadIdx.x != 0) return;
  const double invstd = save_invstd ? double(save_invstd[ch])
                                    : 1.0 / sqrt(double(running_var[ch]) + double(eps));
  const double a = double(gamma[ch]) * invstd;
  coef[ch] = T(a);
  if (save_invstd) {
    const double m = double(n) * hw;
    coef[c + ch] = T(a * invstd * invstd * sum_dy_xc / m);
    coef[2 * c + ch] = T(a * sum_dy / m);
  }
  dgamma[ch] += T(sum_dy_xc * invstd);
  dbeta[ch] += T(sum_dy);
}

// dx += a*dy - b*(x - center) - k, coef = {a[c], b[c], k[c]}.
template <class T>
__global__ void bn_backward_train_apply_kernel(int64_t total, int c, int hw, const T* x,
                                               const T* dy, const T* relu_out, const T* center,
                                               const T* coef, T* dx, bool accumulate) {
  for (int64_t k = first_index(); k < total; k += grid_stride()) {
    const int ch = int((k / hw) % c);
    const T g = coef[ch] * relu_masked(dy, relu_out, k) - coef[c + ch] * (x[k] - center[ch]) - coef[2 * c + ch];
    dx[k] = accumulate ? dx[k] + g : g;  // assigning never reads dx
  }
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

template <class T>
T* coefficients(int count) {
  return static_cast<T*>(workspace(size_t(count) * sizeof(T)));
}

}  // namespace

template <class T>
void batchnorm_forward_train(const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps,
                             T momentum, T* y, T* save_mean, T* save_invstd, T* running_mean,
                             T* running_var, bool relu) {
  const int64_t m = int64_t(g.n) * g.hw;
  KD_CHECK(m > 1, "batchnorm (train): need more than one value per channel, got n="
                      << g.n << " hw=" << g.hw);
  if (g.c <= 0) return;
  T* coef = coefficients<T>(2 * g.c);  // mean[c], gamma * invstd[c]
  KD_LAUNCH(bn_train_stats_kernel<T>, unsigned(g.c), kStatThreads, 0, g.n, g.c, g.hw, x, gamma,
            eps, momentum, save_mean, save_invstd, running_mean, running_var, coef);
  const int64_t total = numel(g);
  KD_LAUNCH(bn_affine_kernel<T>, grid_for(total, kThreads), kThreads, 0, total, g.c, g.hw, x,
            coef, coef + g.c, beta, y, relu);
}

template <class T>
void batchnorm_forward_eval(const NormGeom& g, const T* x, const T* gamma, const T* beta,
                            const T* running_mean, const T* running_var, T eps, T* y) {
  const int64_t total = numel(g);
  if (total <= 0) return;
  T* scale = coefficients<T>(g.c);
  KD_LAUNCH(bn_eval_scale_kernel<T>, grid_for(g.c, kThreads), kThreads, 0, g.c, gamma,
            running_var, eps, scale);
  KD_LAUNCH(bn_affine_kernel<T>, grid_for(total, kThreads), kThreads, 0, total, g.c, g.hw, x,
            running_mean, scale, beta, y, false);
}

template <class T>
void batchnorm_backward_train(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                              const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                              T* dbeta, bool accumulate, const T* relu_out) {
  const int64_t total = numel(g);
  if (total <= 0) return;
  T* coef = coefficients<T>(3 * g.c);  // a[c], b[c], k[c]
  KD_LAUNCH(bn_backward_stats_kernel<T>, unsigned(g.c), kStatThreads, 0, g.n, g.c, g.hw, x, dy,
            relu_out, gamma, save_mean, save_invstd, static_cast<const T*>(nullptr), T(0), dgamma,
            dbeta, coef);
  KD_LAUNCH(bn_backward_train_apply_kernel<T>, grid_for(total, kThreads), kThreads, 0, total,
            g.c, g.hw, x, dy, relu_out, save_mean, coef, dx, accumulate);
}

template <class T>
void batchnorm_backward_eval(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                             const T* running_mean, const T* running_var, T eps, T* dx,
                             T* dgamma, T* dbeta) {
  const int64_t total = numel(g);
  if (total <= 0) return;
  T* a = coefficients<T>(g.c);
  KD_LAUNCH(bn_backward_stats_kernel<T>, unsigned(g.c), kStatThreads, 0, g.n, g.c, g.hw, x, dy,
            static_cast<const T*>(nullptr),
            gamma, running_mean, static_cast<const T*>(nullptr), running_var, eps, dgamma, dbeta,
            a);
  KD_LAUNCH(bn_backward_eval_apply_kernel<T>, grid_for(total, kThreads), kThreads, 0, total,
            g.c, g.hw, dy, a, dx);
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
