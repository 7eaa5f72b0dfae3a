// Fast batch norm and group norm over NCHW (contract: kernels/normalization.h; the specification
// is normalization_ref.cpp). Forward ASSIGNS y and the saved statistics; backward ACCUMULATES into
// dx, dgamma, dbeta.
// Every reduction runs in an order fixed by the shape alone (batch norm: fixed sample-chunk x
// channel-block tasks whose partials are added in chunk order; group norm: one task per
// (sample, group)), so results never depend on the thread count. Statistics take one pass over
// memory: sums of (x - shift) and (x - shift)^2 in double, shift = the channel's (group's) first
// element, so the one-pass variance does not cancel when |mean| >> std. The per-element passes run
// in T on per-channel coefficients and vectorize.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/cpu/bf16_entries.h"
#include "kernels/normalization.h"

namespace kd {
namespace cpu {

namespace {

// Eight interleaved double partial sums, combined in a fixed order at the end: the inner loop over
// lanes vectorizes and the result does not depend on how the caller was parallelized.
constexpr int kLanes = 8;

// Below this many elements one thread is faster than a fork/join.
constexpr int64_t kParallelMin = 1 << 15;

struct LaneSums {
  double a[kLanes] = {}, b[kLanes] = {};
  double total_a() const { return combine(a); }
  double total_b() const { return combine(b); }
  static double combine(const double* l) {
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
  }
};

// a += x - shift, b += (x - shift)^2 over x[0, len).
template <class T>
void add_shifted_moments(const T* x, int64_t len, double shift, LaneSums& acc) {
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
#pragma omp simd
    for (int j = 0; j < kLanes; ++j) {
      double d = double(x[i + j]) - shift;
      acc.a[j] += d;
      acc.b[j] += d * d;
    }
  }
  for (int j = 0; i < len; ++i, ++j) {
    double d = double(x[i]) - shift;
    acc.a[j] += d;
    acc.b[j] += d * d;
  }
}

// a += dy, b += dy * (x - center) over [0, len).
template <class T>
void add_dy_moments(const T* x, const T* dy, int64_t len, double center, LaneSums& acc) {
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
#pragma omp simd
    for (int j = 0; j < kLanes; ++j) {
      double d = double(dy[i + j]);
      acc.a[j] += d;
      acc.b[j] += d * (double(x[i + j]) - center);
    }
  }
  for (int j = 0; i < len; ++i, ++j) {
    double d = double(dy[i]);
    acc.a[j] += d;
    acc.b[j] += d * (double(x[i]) - center);
  }
}

// y = (x - mean) * scale + shift over [0, len), in T; with relu, max(y, 0) (NaN kept).
template <class T>
void affine_rows(const T* x, int64_t len, T mean, T scale, T shift, T* y, bool relu = false) {
  if (relu) {
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      const T v = (x[i] - mean) * scale + shift;
      y[i] = v < T(0) ? T(0) : v;
    }
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) y[i] = (x[i] - mean) * scale + shift;
}

// dy masked by the fused ReLU's output (relu_out > 0), into this thread's row buffer; dy itself
// when there is no ReLU.
template <class T>
const T* relu_masked(const T* dy, const T* relu_out, int64_t len) {
  if (!relu_out) return dy;
  thread_local std::vector<T> row;
  if (int64_t(row.size()) < len) row.resize(size_t(len));
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) row[i] = relu_out[i] > T(0) ? dy[i] : T(0);
  return row.data();
}

// dx += a * dy - b * (x - center) - k over [0, len), in T: the batch-statistics backward with
// its per-channel coefficients folded.
template <class T>
void backward_rows(const T* x, const T* dy, int64_t len, T center, T a, T b, T k, T* dx,
                   bool accumulate) {
  if (accumulate) {
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) dx[i] += a * dy[i] - b * (x[i] - center) - k;
  } else {
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) dx[i] = a * dy[i] - b * (x[i] - center) - k;
  }
}

struct Moments {
  double mean, var;  // biased variance
};

// From s1 = sum(x - shift) and s2 = sum((x - shift)^2) over count values.
Moments finish_moments(double s1, double s2, double shift, double count) {
  const double var = (s2 - s1 * s1 / count) / count;
  return {shift + s1 / count, var > 0 ? var : 0.0};
}

// Batch-norm statistics reduce over (sample, hw) while a channel's planes lie c*hw apart; walking
// one channel at a time thrashes the caches when that stride is a large power of two. So the
// reduction is split into fixed tasks of kChunkSamples samples x kBlockChannels channels, each
// streaming contiguous memory into per-channel partials, and the partials are added in chunk
// order. The split depends only on the shape, never on the thread count.
constexpr int kChunkSamples = 4;
constexpr int kBlockChannels = 16;

// sum_a[ch], sum_b[ch] = totals of the LaneSums that add_plane(plane, ch, acc) fills, over every
// plane (sample * c + ch) of channel ch.
template <class AddPlane>
void channel_sums(const NormGeom& g, double* sum_a, double* sum_b, const AddPlane& add_plane) {
  const int chunks = (g.n + kChunkSamples - 1) / kChunkSamples;
  const int blocks = (g.c + kBlockChannels - 1) / kBlockChannels;
  std::vector<double> part_a(size_t(chunks) * g.c), part_b(size_t(chunks) * g.c);
  const int64_t tasks = int64_t(chunks) * blocks;
#pragma omp parallel for schedule(static) if (int64_t(g.n) * g.c * g.hw >= kParallelMin)
  for (int64_t t = 0; t < tasks; ++t) {
    const int chunk = int(t / blocks), c0 = int(t % blocks) * kBlockChannels;
    const int c1 = std::min(g.c, c0 + kBlockChannels);
    const int s1 = std::min(g.n, (chunk + 1) * kChunkSamples);
    LaneSums acc[kBlockChannels];
    for (int s = chunk * kChunkSamples; s < s1; ++s)
      for (int ch = c0; ch < c1; ++ch) add_plane(int64_t(s) * g.c + ch, ch, acc[ch - c0]);
    for (int ch = c0; ch < c1; ++ch) {
      part_a[size_t(chunk) * g.c + ch] = acc[ch - c0].total_a();
      part_b[size_t(chunk) * g.c + ch] = acc[ch - c0].total_b();
    }
  }
  for (int ch = 0; ch < g.c; ++ch) {
    double a = 0, b = 0;
    for (int chunk = 0; chunk < chunks; ++chunk) {
      a += part_a[size_t(chunk) * g.c + ch];
      b += part_b[size_t(chunk) * g.c + ch];
    }
    sum_a[ch] = a;
    sum_b[ch] = b;
  }
}

// f(plane, ch) for every (sample, channel) plane, in parallel: elementwise passes only.
template <class F>
void for_each_plane(const NormGeom& g, const F& f) {
  const int64_t planes = int64_t(g.n) * g.c;
#pragma omp parallel for schedule(static) if (planes * g.hw >= kParallelMin)
  for (int64_t p = 0; p < planes; ++p) f(p, int(p % g.c));
}

void check_groups(const NormGeom& g) {
  KD_CHECK(g.groups > 0 && g.c % g.groups == 0,
           "group norm: " << g.c << " channels do not split into " << g.groups << " groups");
  KD_CHECK(g.hw > 0, "group norm: empty planes (hw = " << g.hw << ")");
}

}  // namespace

template <class T>
void batchnorm_forward_train(const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps,
                             T momentum, T* y, T* save_mean, T* save_invstd, T* running_mean,
                             T* running_var, int64_t* batches_tracked, bool relu) {
  const int64_t m = int64_t(g.n) * g.hw;
  KD_CHECK(m > 1, "batchnorm (train): need more than one value per channel, got n="
                      << g.n << " hw=" << g.hw);
  if (batches_tracked) ++*batches_tracked;
  std::vector<double> shift(g.c), s1(g.c), s2(g.c);
  for (int ch = 0; ch < g.c; ++ch) shift[ch] = double(x[int64_t(ch) * g.hw]);
  channel_sums(g, s1.data(), s2.data(), [&](int64_t p, int ch, LaneSums& acc) {
    add_shifted_moments(x + p * g.hw, g.hw, shift[ch], acc);
  });
  std::vector<T> mean_t(g.c), scale_t(g.c);
  for (int ch = 0; ch < g.c; ++ch) {
    const Moments mo = finish_moments(s1[ch], s2[ch], shift[ch], double(m));
    const double mean = mo.mean, var = mo.var;
    const double invstd = 1.0 / std::sqrt(var + double(eps));
    mean_t[ch] = T(mean);
    scale_t[ch] = T(double(gamma[ch]) * invstd);
    save_mean[ch] = T(mean);
    save_invstd[ch] = T(invstd);
    if (running_mean)
      running_mean[ch] = T((1.0 - momentum) * running_mean[ch] + double(momentum) * mean);
    if (running_var) {
      const double unbiased = var * double(m) / double(m - 1);
      running_var[ch] = T((1.0 - momentum) * running_var[ch] + double(momentum) * unbiased);
    }
  }
  for_each_plane(g, [&](int64_t p, int ch) {
    affine_rows(x + p * g.hw, g.hw, mean_t[ch], scale_t[ch], beta[ch], y + p * g.hw, relu);
  });
}

template <class T>
void batchnorm_forward_eval(const NormGeom& g, const T* x, const T* gamma, const T* beta,
                            const T* running_mean, const T* running_var, T eps, T* y) {
  std::vector<T> scale_t(g.c);
  for (int ch = 0; ch < g.c; ++ch)
    scale_t[ch] = T(double(gamma[ch]) / std::sqrt(double(running_var[ch]) + double(eps)));
  for_each_plane(g, [&](int64_t p, int ch) {
    affine_rows(x + p * g.hw, g.hw, running_mean[ch], scale_t[ch], beta[ch], y + p * g.hw);
  });
}

template <class T>
void batchnorm_backward_train(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                              const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                              T* dbeta, bool accumulate, const T* relu_out) {
  const double m = double(g.n) * g.hw;
  std::vector<double> sum_dy(g.c), sum_dy_xc(g.c);  // xc = x - mean
  channel_sums(g, sum_dy.data(), sum_dy_xc.data(), [&](int64_t p, int ch, LaneSums& acc) {
    const T* dyp = relu_masked(dy + p * g.hw, relu_out ? relu_out + p * g.hw : nullptr, g.hw);
    add_dy_moments(x + p * g.hw, dyp, g.hw, double(save_mean[ch]), acc);
  });
  // dx = gamma*invstd*(dy - sum_dy/m - xhat*sum(dy*xhat)/m), xhat = (x - mean)*invstd,
  // folded into dx += a*dy - b*(x - mean) - k per channel.
  std::vector<T> a(g.c), b(g.c), k(g.c);
  for (int ch = 0; ch < g.c; ++ch) {
    const double invstd = save_invstd[ch], ac = double(gamma[ch]) * invstd;
    a[ch] = T(ac);
    b[ch] = T(ac * invstd * invstd * sum_dy_xc[ch] / m);
    k[ch] = T(ac * sum_dy[ch] / m);
    dgamma[ch] += T(sum_dy_xc[ch] * invstd);
    dbeta[ch] += T(sum_dy[ch]);
  }
  for_each_plane(g, [&](int64_t p, int ch) {
    const T* dyp = relu_masked(dy + p * g.hw, relu_out ? relu_out + p * g.hw : nullptr, g.hw);
    backward_rows(x + p * g.hw, dyp, g.hw, save_mean[ch], a[ch], b[ch], k[ch], dx + p * g.hw,
                  accumulate);
  });
}

template <class T>
void batchnorm_backward_eval(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                             const T* running_mean, const T* running_var, T eps, T* dx,
                             T* dgamma, T* dbeta) {
  std::vector<double> invstd(g.c), sum_dy(g.c), sum_dy_xc(g.c);
  std::vector<T> a(g.c);
  for (int ch = 0; ch < g.c; ++ch) {
    invstd[ch] = 1.0 / std::sqrt(double(running_var[ch]) + double(eps));
    a[ch] = T(double(gamma[ch]) * invstd[ch]);
  }
  // The statistics are constants, so the layer is affine in x: dx = dy * gamma * invstd, written
  // in the same sweep that gathers the dgamma/dbeta sums.
  channel_sums(g, sum_dy.data(), sum_dy_xc.data(), [&](int64_t p, int ch, LaneSums& acc) {
    const T* dyp = dy + p * g.hw;
    T* dxp = dx + p * g.hw;
    add_dy_moments(x + p * g.hw, dyp, g.hw, double(running_mean[ch]), acc);
    const T ac = a[ch];
#pragma omp simd
    for (int64_t i = 0; i < g.hw; ++i) dxp[i] += ac * dyp[i];
  });
  for (int ch = 0; ch < g.c; ++ch) {
    dgamma[ch] += T(sum_dy_xc[ch] * invstd[ch]);
    dbeta[ch] += T(sum_dy[ch]);
  }
}

template <class T>
void groupnorm_forward(const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps, T* y,
                       T* save_mean, T* save_invstd) {
  check_groups(g);
  const int per_group = g.c / g.groups;
  const int64_t block = int64_t(per_group) * g.hw;  // one (sample, group) is contiguous
  const int64_t blocks = int64_t(g.n) * g.groups;
#pragma omp parallel for schedule(static) if (block * blocks >= kParallelMin)
  for (int64_t bi = 0; bi < blocks; ++bi) {
    const T* xb = x + bi * block;
    const double shift = double(xb[0]);
    LaneSums acc;
    add_shifted_moments(xb, block, shift, acc);
    const Moments mo = finish_moments(acc.total_a(), acc.total_b(), shift, double(block));
    const double invstd = 1.0 / std::sqrt(mo.var + double(eps));
    const int c0 = int(bi % g.groups) * per_group;
    for (int j = 0; j < per_group; ++j)
      affine_rows(xb + int64_t(j) * g.hw, g.hw, T(mo.mean), T(double(gamma[c0 + j]) * invstd),
                  beta[c0 + j], y + bi * block + int64_t(j) * g.hw);
    save_mean[bi] = T(mo.mean);
    save_invstd[bi] = T(invstd);
  }
}

template <class T>
void groupnorm_backward(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                        const T* save_mean, const T* save_invstd, T* dx, T* dgamma, T* dbeta) {
  check_groups(g);
  const int per_group = g.c / g.groups;
  const int64_t block = int64_t(per_group) * g.hw;
  const int64_t blocks = int64_t(g.n) * g.groups;
  const double m = double(block);
  // Per (sample, channel) partial sums of dy and dy*xhat; dgamma/dbeta reduce them over samples
  // afterwards, in sample order, so no thread ever adds into another's channel.
  std::vector<double> part_dy(size_t(g.n) * g.c), part_dy_xhat(size_t(g.n) * g.c);
#pragma omp parallel for schedule(static) if (block * blocks >= kParallelMin)
  for (int64_t bi = 0; bi < blocks; ++bi) {
    const double mean = save_mean[bi], invstd = save_invstd[bi];
    const int c0 = int(bi % g.groups) * per_group;
    double sum_dxhat = 0, sum_dxhat_xhat = 0;  // dxhat = dy * gamma
    for (int j = 0; j < per_group; ++j) {
      const int64_t off = bi * block + int64_t(j) * g.hw;
      LaneSums acc;
      add_dy_moments(x + off, dy + off, g.hw, mean, acc);
      const double s_dy = acc.total_a(), s_dy_xhat = acc.total_b() * invstd;
      part_dy[bi * per_group + j] = s_dy;  // bi * per_group + j == sample * c + channel
      part_dy_xhat[bi * per_group + j] = s_dy_xhat;
      sum_dxhat += double(gamma[c0 + j]) * s_dy;
      sum_dxhat_xhat += double(gamma[c0 + j]) * s_dy_xhat;
    }
    // dx = invstd*(gamma*dy - sum_dxhat/m - xhat*sum_dxhat_xhat/m), xhat = (x - mean)*invstd.
    const T b = T(invstd * invstd * sum_dxhat_xhat / m);
    const T k = T(invstd * sum_dxhat / m);
    for (int j = 0; j < per_group; ++j) {
      const int64_t off = bi * block + int64_t(j) * g.hw;
      backward_rows(x + off, dy + off, g.hw, save_mean[bi], T(invstd * double(gamma[c0 + j])), b,
                    k, dx + off, /*accumulate=*/true);
    }
  }
#pragma omp parallel for schedule(static) if (int64_t(g.n) * g.c >= kParallelMin)
  for (int ch = 0; ch < g.c; ++ch) {
    double s_dy = 0, s_dy_xhat = 0;
    for (int s = 0; s < g.n; ++s) {
      s_dy += part_dy[size_t(s) * g.c + ch];
      s_dy_xhat += part_dy_xhat[size_t(s) * g.c + ch];
    }
    dgamma[ch] += T(s_dy_xhat);
    dbeta[ch] += T(s_dy);
  }
}

KD_BF16_BATCHNORM_ENTRIES

KD_DEFINE_REGISTRAR(register_norm, KD_NORM_KERNELS)

}  // namespace cpu
}  // namespace kd
