// Reference batch norm and group norm over NCHW (contract: kernels/normalization.h): the
// specification the fast kernels are tested against. Plain loops, everything in double, two-pass
// variance. Forward ASSIGNS y and the saved statistics; backward ACCUMULATES into dx, dgamma,
// dbeta.
#include <cmath>
#include <cstdint>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/cpu/bf16_entries.h"
#include "kernels/normalization.h"

namespace kd {
namespace ref {

namespace {
// Element (sample s, channel ch, position i) of an NCHW array.
inline int64_t at(const NormGeom& g, int s, int ch, int i) {
  return (int64_t(s) * g.c + ch) * g.hw + i;
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
  for (int ch = 0; ch < g.c; ++ch) {
    double sum = 0;
    for (int s = 0; s < g.n; ++s)
      for (int i = 0; i < g.hw; ++i) sum += x[at(g, s, ch, i)];
    const double mean = sum / m;
    double sq = 0;
    for (int s = 0; s < g.n; ++s)
      for (int i = 0; i < g.hw; ++i) {
        double d = x[at(g, s, ch, i)] - mean;
        sq += d * d;
      }
    const double var = sq / m;
    const double invstd = 1.0 / std::sqrt(var + double(eps));
    for (int s = 0; s < g.n; ++s)
      for (int i = 0; i < g.hw; ++i) {
        int64_t k = at(g, s, ch, i);
        const T v = T((x[k] - mean) * invstd * gamma[ch] + beta[ch]);
        y[k] = relu && v < T(0) ? T(0) : v;
      }
    save_mean[ch] = T(mean);
    save_invstd[ch] = T(invstd);
    if (running_mean)
      running_mean[ch] = T((1.0 - momentum) * running_mean[ch] + double(momentum) * mean);
    if (running_var) {
      double unbiased = var * double(m) / double(m - 1);
      running_var[ch] = T((1.0 - momentum) * running_var[ch] + double(momentum) * unbiased);
    }
  }
}

template <class T>
void batchnorm_forward_eval(const NormGeom& g, const T* x, const T* gamma, const T* beta,
                            const T* running_mean, const T* running_var, T eps, T* y) {
  for (int ch = 0; ch < g.c; ++ch) {
    const double invstd = 1.0 / std::sqrt(double(running_var[ch]) + double(eps));
    for (int s = 0; s < g.n; ++s)
      for (int i = 0; i < g.hw; ++i) {
        int64_t k = at(g, s, ch, i);
        y[k] = T((x[k] - double(running_mean[ch])) * invstd * gamma[ch] + beta[ch]);
      }
  }
}

// With xhat = (x - mean) * invstd and m = n*hw:
//   dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
template <class T>
void batchnorm_backward_train(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                              const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                              T* dbeta, bool accumulate, const T* relu_out) {
  // The ReLU's backward first: the gradient that reaches the normalisation.
  auto grad_at = [&](int64_t k) { return relu_out && !(relu_out[k] > T(0)) ? T(0) : dy[k]; };
  const double m = double(g.n) * g.hw;
  for (int ch = 0; ch < g.c; ++ch) {
    const double mean = save_mean[ch], invstd = save_invstd[ch];
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int s = 0; s < g.n; ++s)
      for (int i = 0; i < g.hw; ++i) {
        int64_t k = at(g, s, ch, i);
        sum_dy += grad_at(k);
        sum_dy_xhat += grad_at(k) * (x[k] - mean) * invstd;
      }
    for (int s = 0; s < g.n; ++s)
      for (int i = 0; i < g.hw; ++i) {
        int64_t k = at(g, s, ch, i);
        double xhat = (x[k] - mean) * invstd;
        const T grad = T(gamma[ch] * invstd * (grad_at(k) - sum_dy / m - xhat * sum_dy_xhat / m));
        dx[k] = accumulate ? dx[k] + grad : grad;
      }
    dgamma[ch] += T(sum_dy_xhat);
    dbeta[ch] += T(sum_dy);
  }
}

// Running statistics are constants here, so the layer is affine in x.
template <class T>
void batchnorm_backward_eval(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                             const T* running_mean, const T* running_var, T eps, T* dx,
                             T* dgamma, T* dbeta) {
  for (int ch = 0; ch < g.c; ++ch) {
    const double invstd = 1.0 / std::sqrt(double(running_var[ch]) + double(eps));
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int s = 0; s < g.n; ++s)
      for (int i = 0; i < g.hw; ++i) {
        int64_t k = at(g, s, ch, i);
        sum_dy += dy[k];
        sum_dy_xhat += dy[k] * (x[k] - double(running_mean[ch])) * invstd;
        dx[k] += T(dy[k] * double(gamma[ch]) * invstd);
      }
    dgamma[ch] += T(sum_dy_xhat);
    dbeta[ch] += T(sum_dy);
  }
}

template <class T>
void groupnorm_forward(const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps, T* y,
                       T* save_mean, T* save_invstd) {
  check_groups(g);
  const int per_group = g.c / g.groups;
  const double m = double(per_group) * g.hw;
  for (int s = 0; s < g.n; ++s)
    for (int grp = 0; grp < g.groups; ++grp) {
      const int c0 = grp * per_group, c1 = c0 + per_group;
      double sum = 0;
      for (int ch = c0; ch < c1; ++ch)
        for (int i = 0; i < g.hw; ++i) sum += x[at(g, s, ch, i)];
      const double mean = sum / m;
      double sq = 0;
      for (int ch = c0; ch < c1; ++ch)
        for (int i = 0; i < g.hw; ++i) {
          double d = x[at(g, s, ch, i)] - mean;
          sq += d * d;
        }
      const double invstd = 1.0 / std::sqrt(sq / m + double(eps));
      for (int ch = c0; ch < c1; ++ch)
        for (int i = 0; i < g.hw; ++i) {
          int64_t k = at(g, s, ch, i);
          y[k] = T((x[k] - mean) * invstd * gamma[ch] + beta[ch]);
        }
      save_mean[s * g.groups + grp] = T(mean);
      save_invstd[s * g.groups + grp] = T(invstd);
    }
}

// Per (sample, group), with dxhat = dy * gamma[ch] and M = (c/groups)*hw:
//   dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
template <class T>
void groupnorm_backward(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                        const T* save_mean, const T* save_invstd, T* dx, T* dgamma, T* dbeta) {
  check_groups(g);
  const int per_group = g.c / g.groups;
  const double m = double(per_group) * g.hw;
  for (int s = 0; s < g.n; ++s)
    for (int grp = 0; grp < g.groups; ++grp) {
      const double mean = save_mean[s * g.groups + grp];
      const double invstd = save_invstd[s * g.groups + grp];
      const int c0 = grp * per_group, c1 = c0 + per_group;
      double sum_dxhat = 0, sum_dxhat_xhat = 0;
      for (int ch = c0; ch < c1; ++ch)
        for (int i = 0; i < g.hw; ++i) {
          int64_t k = at(g, s, ch, i);
          double dxhat = double(dy[k]) * gamma[ch];
          sum_dxhat += dxhat;
          sum_dxhat_xhat += dxhat * (x[k] - mean) * invstd;
        }
      for (int ch = c0; ch < c1; ++ch)
        for (int i = 0; i < g.hw; ++i) {
          int64_t k = at(g, s, ch, i);
          double dxhat = double(dy[k]) * gamma[ch];
          double xhat = (x[k] - mean) * invstd;
          dx[k] += T(invstd * (dxhat - sum_dxhat / m - xhat * sum_dxhat_xhat / m));
        }
    }
  for (int ch = 0; ch < g.c; ++ch) {
    const int grp = ch / per_group;
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int s = 0; s < g.n; ++s) {
      const double mean = save_mean[s * g.groups + grp];
      const double invstd = save_invstd[s * g.groups + grp];
      for (int i = 0; i < g.hw; ++i) {
        int64_t k = at(g, s, ch, i);
        sum_dy += dy[k];
        sum_dy_xhat += dy[k] * (x[k] - mean) * invstd;
      }
    }
    dgamma[ch] += T(sum_dy_xhat);
    dbeta[ch] += T(sum_dy);
  }
}

KD_BF16_BATCHNORM_ENTRIES

KD_DEFINE_REGISTRAR(register_norm, KD_NORM_KERNELS)

}  // namespace ref
}  // namespace kd
