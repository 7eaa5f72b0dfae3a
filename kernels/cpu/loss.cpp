// Fast softmax-family ops and losses on row-major [rows, cols] logits (contract: kernels/loss.h;
// the specification is loss_ref.cpp). Forward ASSIGNS, backward ACCUMULATES scaled by dloss.
// Threads own whole rows; a row's log-softmax is computed once (max-subtracted, in double) and the
// distillation losses use closed-form gradients on the log p / log q rows. A mean over rows is
// formed from a per-row buffer summed in row order, so results never depend on the thread count.
// Inputs are validated before any parallel region (an exception must not cross OpenMP).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/loss.h"
#include "kernels/cpu/thread_scratch.h"

namespace kd {
namespace cpu {

namespace {

// Below this many logits one thread is faster than a fork/join.
constexpr int64_t kParallelMin = 1 << 13;

// out[j] = z[j] * inv_tau - logsumexp(z * inv_tau).
template <class T>
void row_log_softmax(const T* z, int cols, double inv_tau, double* out) {
  double mx = -INFINITY;
  for (int j = 0; j < cols; ++j) {
    out[j] = double(z[j]) * inv_tau;
    mx = std::max(mx, out[j]);
  }
  double sum = 0;
  for (int j = 0; j < cols; ++j) sum += std::exp(out[j] - mx);
  const double lse = mx + std::log(sum);
  for (int j = 0; j < cols; ++j) out[j] -= lse;
}

template <class T>
double row_logsumexp(const T* z, int cols) {
  double mx = -INFINITY;
  for (int j = 0; j < cols; ++j) mx = std::max(mx, double(z[j]));
  double sum = 0;
  for (int j = 0; j < cols; ++j) sum += std::exp(double(z[j]) - mx);
  return mx + std::log(sum);
}

template <class T>
int first_argmax(const T* z, int cols) {
  int best = 0;
  for (int j = 1; j < cols; ++j)
    if (z[j] > z[best]) best = j;
  return best;
}

double mean_in_row_order(const std::vector<double>& per_row) {
  double total = 0;
  for (double v : per_row) total += v;
  return total / double(per_row.size());
}

void check_labels(int rows, int cols, const int32_t* labels) {
  for (int r = 0; r < rows; ++r)
    KD_CHECK(labels[r] >= 0 && labels[r] < cols, "cross_entropy: label "
                                                     << labels[r] << " at row " << r
                                                     << " outside [0, " << cols << ")");
}

void check_distill(int rows, int cols, double tau) {
  KD_CHECK(rows > 0 && cols > 0, "distill_loss: empty logits " << rows << "x" << cols);
  KD_CHECK(tau > 0, "distill_loss: temperature must be positive, got " << tau);
}

// One row of a distillation loss from log p (teacher) and log q (student) at temperature tau.
double distill_row_value(DistillKind kind, int cols, const double* logp, const double* logq,
                         int hard, double t2) {
  double s = 0;
  switch (kind) {
    case DistillKind::kForwardCE:
      for (int j = 0; j < cols; ++j) s += std::exp(logp[j]) * logq[j];
      return -t2 * s;
    case DistillKind::kKL:
      for (int j = 0; j < cols; ++j) s += std::exp(logp[j]) * (logp[j] - logq[j]);
      return s;
    case DistillKind::kReverseCE:
      for (int j = 0; j < cols; ++j) s += std::exp(logq[j]) * logp[j];
      return -t2 * s;
    case DistillKind::kSymmetricKL:  // KL(p||q) + KL(q||p) = sum (p - q)(log p - log q)
      for (int j = 0; j < cols; ++j)
        s += (std::exp(logp[j]) - std::exp(logq[j])) * (logp[j] - logq[j]);
      return s;
    case DistillKind::kBrier:
      for (int j = 0; j < cols; ++j) {
        double d = std::exp(logq[j]) - std::exp(logp[j]);
        s += d * d;
      }
      return s / cols;
    case DistillKind::kHardCE:
      return -t2 * logq[hard];
  }
  return 0;
}

// dz[k] = d(row loss)/d z_k with z = student / tau, in closed form (one comment per case; derived
// from dq_j/dz_k = q_j (delta_jk - q_k)). Overwrites dz.
void distill_row_grad(DistillKind kind, int cols, const double* logp, const double* logq,
                      int hard, double t2, double* dz) {
  double e = 0;
  switch (kind) {
    case DistillKind::kForwardCE:  // tau^2 (q - p)
      for (int k = 0; k < cols; ++k) dz[k] = t2 * (std::exp(logq[k]) - std::exp(logp[k]));
      return;
    case DistillKind::kKL:  // q - p
      for (int k = 0; k < cols; ++k) dz[k] = std::exp(logq[k]) - std::exp(logp[k]);
      return;
    case DistillKind::kReverseCE:  // -tau^2 q_k (log p_k - E_q[log p])
      for (int j = 0; j < cols; ++j) e += std::exp(logq[j]) * logp[j];
      for (int k = 0; k < cols; ++k) dz[k] = -t2 * std::exp(logq[k]) * (logp[k] - e);
      return;
    case DistillKind::kSymmetricKL:  // (q - p) + q_k (f_k - E_q f), f = log q - log p
      for (int j = 0; j < cols; ++j) e += std::exp(logq[j]) * (logq[j] - logp[j]);
      for (int k = 0; k < cols; ++k) {
        const double q = std::exp(logq[k]);
        dz[k] = q - std::exp(logp[k]) + q * ((logq[k] - logp[k]) - e);
      }
      return;
    case DistillKind::kBrier:  // (2/C) q_k ((q_k - p_k) - E_q[q - p])
      for (int j = 0; j < cols; ++j) {
        const double q = std::exp(logq[j]);
        e += q * (q - std::exp(logp[j]));
      }
      for (int k = 0; k < cols; ++k) {
        const double q = std::exp(logq[k]);
        dz[k] = 2.0 / cols * q * ((q - std::exp(logp[k])) - e);
      }
      return;
    case DistillKind::kHardCE:  // tau^2 (q - onehot(hard))
      for (int k = 0; k < cols; ++k) dz[k] = t2 * (std::exp(logq[k]) - (k == hard ? 1.0 : 0.0));
      return;
  }
}

}  // namespace

template <class T>
void log_softmax_forward(int rows, int cols, const T* x, T* y) {
#pragma omp parallel for schedule(static) if (int64_t(rows) * cols >= kParallelMin)
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    const double lse = row_logsumexp(x + o, cols);
    for (int j = 0; j < cols; ++j) y[o + j] = T(double(x[o + j]) - lse);
  }
}

template <class T>
void log_softmax_backward(int rows, int cols, const T* y, const T* dy, T* dx) {
#pragma omp parallel for schedule(static) if (int64_t(rows) * cols >= kParallelMin)
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    double sum_dy = 0;
    for (int j = 0; j < cols; ++j) sum_dy += double(dy[o + j]);
    for (int j = 0; j < cols; ++j)
      dx[o + j] += T(double(dy[o + j]) - std::exp(double(y[o + j])) * sum_dy);
  }
}

template <class T>
T cross_entropy_value(int rows, int cols, const T* x, const int32_t* labels) {
  KD_CHECK(rows > 0 && cols > 0, "cross_entropy: empty logits " << rows << "x" << cols);
  check_labels(rows, cols, labels);
  std::vector<double> per_row(rows);
#pragma omp parallel for schedule(static) if (int64_t(rows) * cols >= kParallelMin)
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    per_row[r] = row_logsumexp(x + o, cols) - double(x[o + labels[r]]);
  }
  return T(mean_in_row_order(per_row));
}

template <class T>
void cross_entropy_backward(int rows, int cols, const T* x, const int32_t* labels, const T* dloss_in,
                            T* dx) {
  const T dloss = *dloss_in;
  KD_CHECK(rows > 0 && cols > 0, "cross_entropy: empty logits " << rows << "x" << cols);
  check_labels(rows, cols, labels);
  const double scale = double(dloss) / rows;
#pragma omp parallel for schedule(static) if (int64_t(rows) * cols >= kParallelMin)
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    const double lse = row_logsumexp(x + o, cols);
    for (int j = 0; j < cols; ++j) {
      const double onehot = j == labels[r] ? 1.0 : 0.0;
      dx[o + j] += T(scale * (std::exp(double(x[o + j]) - lse) - onehot));
    }
  }
}

template <class T>
T distill_loss_value(DistillKind kind, int rows, int cols, const T* teacher, const T* student,
                       T tau) {
  check_distill(rows, cols, tau);
  const double inv_tau = 1.0 / double(tau), t2 = double(tau) * double(tau);
  std::vector<double> per_row(rows);
  ThreadScratch<double> scratch(2 * size_t(cols));
#pragma omp parallel if (int64_t(rows) * cols >= kParallelMin)
  {
    double* logp = scratch.mine();
    double* logq = logp + cols;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const int64_t o = int64_t(r) * cols;
      row_log_softmax(teacher + o, cols, inv_tau, logp);
      row_log_softmax(student + o, cols, inv_tau, logq);
      const int hard = kind == DistillKind::kHardCE ? first_argmax(teacher + o, cols) : 0;
      per_row[r] = distill_row_value(kind, cols, logp, logq, hard, t2);
    }
  }
  return T(mean_in_row_order(per_row));
}

template <class T>
void distill_loss_backward(DistillKind kind, int rows, int cols, const T* teacher,
                           const T* student, T tau, const T* dloss_in, T* dstudent) {
  const T dloss = *dloss_in;
  check_distill(rows, cols, tau);
  const double inv_tau = 1.0 / double(tau), t2 = double(tau) * double(tau);
  const double scale = double(dloss) / rows * inv_tau;  // d z / d student = 1 / tau
  ThreadScratch<double> scratch(3 * size_t(cols));
#pragma omp parallel if (int64_t(rows) * cols >= kParallelMin)
  {
    double* logp = scratch.mine();
    double* logq = logp + cols;
    double* dz = logq + cols;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const int64_t o = int64_t(r) * cols;
      row_log_softmax(teacher + o, cols, inv_tau, logp);
      row_log_softmax(student + o, cols, inv_tau, logq);
      const int hard = kind == DistillKind::kHardCE ? first_argmax(teacher + o, cols) : 0;
      distill_row_grad(kind, cols, logp, logq, hard, t2, dz);
      for (int k = 0; k < cols; ++k) dstudent[o + k] += T(scale * dz[k]);
    }
  }
}

template <class T>
void ensemble_reduce_forward(int members, int rows, int cols, const T* x, T* y) {
  KD_CHECK(members > 0, "ensemble_reduce: need at least one member, got " << members);
  const int64_t block = int64_t(rows) * cols;
  const double log_m = std::log(double(members));
  ThreadScratch<double> scratch(size_t(members) * cols);  // member-major log-softmax rows
#pragma omp parallel if (block * members >= kParallelMin)
  {
    double* ls = scratch.mine();
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const int64_t o = int64_t(r) * cols;
      for (int i = 0; i < members; ++i)
        row_log_softmax(x + i * block + o, cols, 1.0, ls + size_t(i) * cols);
      for (int j = 0; j < cols; ++j) {
        double mx = -INFINITY;
        for (int i = 0; i < members; ++i) mx = std::max(mx, ls[size_t(i) * cols + j]);
        double sum = 0;
        for (int i = 0; i < members; ++i) sum += std::exp(ls[size_t(i) * cols + j] - mx);
        y[o + j] = T(mx + std::log(sum) - log_m);
      }
    }
  }
}

// dx_ik += dy_k w_ik - q_ik sum_j dy_j w_ij, with w_ij = q_ij / (m exp(y_j)).
template <class T>
void ensemble_reduce_backward(int members, int rows, int cols, const T* x, const T* y,
                              const T* dy, T* dx) {
  KD_CHECK(members > 0, "ensemble_reduce: need at least one member, got " << members);
  const int64_t block = int64_t(rows) * cols;
  const double log_m = std::log(double(members));
  ThreadScratch<double> scratch(2 * size_t(cols));
#pragma omp parallel if (block * members >= kParallelMin)
  {
    double* ls = scratch.mine();
    double* w = ls + cols;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const int64_t o = int64_t(r) * cols;
      for (int i = 0; i < members; ++i) {
        row_log_softmax(x + i * block + o, cols, 1.0, ls);
        double sum_dy_w = 0;
        for (int j = 0; j < cols; ++j) {
          w[j] = std::exp(ls[j] - log_m - double(y[o + j]));
          sum_dy_w += double(dy[o + j]) * w[j];
        }
        T* dxi = dx + i * block + o;
        for (int k = 0; k < cols; ++k)
          dxi[k] += T(double(dy[o + k]) * w[k] - std::exp(ls[k]) * sum_dy_w);
      }
    }
  }
}

KD_LOSS_FORWARDS_FROM_VALUES

KD_DEFINE_REGISTRAR(register_loss, KD_LOSS_KERNELS)

}  // namespace cpu
}  // namespace kd
