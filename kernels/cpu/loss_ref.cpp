// Reference softmax-family ops and losses on row-major [rows, cols] logits (contract:
// kernels/loss.h): the specification the fast kernels are tested against. Forward ASSIGNS,
// backward ACCUMULATES scaled by dloss. Everything runs in double from a max-subtracted
// log-softmax, never as the log of a softmax. Each distillation gradient is written as
// dL/d(log q), pushed through the log-softmax Jacobian (d log q_j / d z_k = delta_jk - q_k) and
// divided by tau: a derivation independent of the closed forms used by the fast path (loss.cpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/loss.h"

namespace kd {
namespace ref {

namespace {

// log softmax(z / tau) for one row of length cols.
template <class T>
std::vector<double> row_log_softmax(const T* z, int cols, double tau) {
  std::vector<double> out(cols);
  double mx = -INFINITY;
  for (int j = 0; j < cols; ++j) mx = std::max(mx, double(z[j]) / tau);
  double sum = 0;
  for (int j = 0; j < cols; ++j) sum += std::exp(double(z[j]) / tau - mx);
  const double lse = mx + std::log(sum);
  for (int j = 0; j < cols; ++j) out[j] = double(z[j]) / tau - lse;
  return out;
}

template <class T>
int first_argmax(const T* z, int cols) {
  int best = 0;
  for (int j = 1; j < cols; ++j)
    if (z[j] > z[best]) best = j;
  return best;
}

void check_label(int32_t label, int cols, int row) {
  KD_CHECK(label >= 0 && label < cols,
           "cross_entropy: label " << label << " at row " << row << " outside [0, " << cols << ")");
}

}  // namespace

template <class T>
void log_softmax_forward(int rows, int cols, const T* x, T* y) {
  for (int r = 0; r < rows; ++r) {
    std::vector<double> ls = row_log_softmax(x + int64_t(r) * cols, cols, 1.0);
    for (int j = 0; j < cols; ++j) y[int64_t(r) * cols + j] = T(ls[j]);
  }
}

template <class T>
void log_softmax_backward(int rows, int cols, const T* y, const T* dy, T* dx) {
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    double sum_dy = 0;
    for (int j = 0; j < cols; ++j) sum_dy += dy[o + j];
    for (int j = 0; j < cols; ++j) dx[o + j] += T(dy[o + j] - std::exp(double(y[o + j])) * sum_dy);
  }
}

template <class T>
T cross_entropy_value(int rows, int cols, const T* x, const int32_t* labels) {
  KD_CHECK(rows > 0 && cols > 0, "cross_entropy: empty logits " << rows << "x" << cols);
  double total = 0;
  for (int r = 0; r < rows; ++r) {
    check_label(labels[r], cols, r);
    total -= row_log_softmax(x + int64_t(r) * cols, cols, 1.0)[labels[r]];
  }
  return T(total / rows);
}

template <class T>
void cross_entropy_backward(int rows, int cols, const T* x, const int32_t* labels, const T* dloss_in,
                            T* dx) {
  const T dloss = *dloss_in;
  KD_CHECK(rows > 0 && cols > 0, "cross_entropy: empty logits " << rows << "x" << cols);
  const double scale = double(dloss) / rows;
  for (int r = 0; r < rows; ++r) {
    check_label(labels[r], cols, r);
    std::vector<double> ls = row_log_softmax(x + int64_t(r) * cols, cols, 1.0);
    for (int j = 0; j < cols; ++j) {
      double onehot = j == labels[r] ? 1.0 : 0.0;
      dx[int64_t(r) * cols + j] += T(scale * (std::exp(ls[j]) - onehot));
    }
  }
}

template <class T>
T distill_loss_value(DistillKind kind, int rows, int cols, const T* teacher, const T* student,
                       T tau) {
  KD_CHECK(rows > 0 && cols > 0, "distill_loss: empty logits " << rows << "x" << cols);
  KD_CHECK(tau > 0, "distill_loss: temperature must be positive, got " << tau);
  const double t = tau, t2 = t * t;
  double total = 0;
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    std::vector<double> logp = row_log_softmax(teacher + o, cols, t);
    std::vector<double> logq = row_log_softmax(student + o, cols, t);
    const int hard = first_argmax(teacher + o, cols);
    double row = 0;
    for (int j = 0; j < cols; ++j) {
      const double p = std::exp(logp[j]), q = std::exp(logq[j]);
      switch (kind) {
        case DistillKind::kForwardCE: row -= t2 * p * logq[j]; break;
        case DistillKind::kKL: row += p * (logp[j] - logq[j]); break;
        case DistillKind::kReverseCE: row -= t2 * q * logp[j]; break;
        case DistillKind::kSymmetricKL:
          row += p * (logp[j] - logq[j]) + q * (logq[j] - logp[j]);
          break;
        case DistillKind::kBrier: row += (q - p) * (q - p) / cols; break;
        case DistillKind::kHardCE:
          if (j == hard) row -= t2 * logq[j];
          break;
      }
    }
    total += row;
  }
  return T(total / rows);
}

template <class T>
void distill_loss_backward(DistillKind kind, int rows, int cols, const T* teacher,
                           const T* student, T tau, const T* dloss_in, T* dstudent) {
  const T dloss = *dloss_in;
  KD_CHECK(rows > 0 && cols > 0, "distill_loss: empty logits " << rows << "x" << cols);
  KD_CHECK(tau > 0, "distill_loss: temperature must be positive, got " << tau);
  const double t = tau, t2 = t * t, scale = double(dloss) / rows;
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    std::vector<double> logp = row_log_softmax(teacher + o, cols, t);
    std::vector<double> logq = row_log_softmax(student + o, cols, t);
    const int hard = first_argmax(teacher + o, cols);
    std::vector<double> g(cols);  // dL_row / d(log q_j)
    for (int j = 0; j < cols; ++j) {
      const double p = std::exp(logp[j]), q = std::exp(logq[j]);
      switch (kind) {
        case DistillKind::kForwardCE: g[j] = -t2 * p; break;
        case DistillKind::kKL: g[j] = -p; break;
        case DistillKind::kReverseCE: g[j] = -t2 * q * logp[j]; break;
        case DistillKind::kSymmetricKL: g[j] = -p + q * (logq[j] - logp[j]) + q; break;
        case DistillKind::kBrier: g[j] = 2.0 * (q - p) * q / cols; break;
        case DistillKind::kHardCE: g[j] = j == hard ? -t2 : 0.0; break;
      }
    }
    double sum_g = 0;
    for (int j = 0; j < cols; ++j) sum_g += g[j];
    for (int k = 0; k < cols; ++k) {
      const double dz = g[k] - std::exp(logq[k]) * sum_g;  // dL/dz, z = student / tau
      dstudent[o + k] += T(scale * dz / t);
    }
  }
}

// y_j = log mean_i softmax(x_i)_j = logsumexp_i(log softmax(x_i)_j) - log m.
template <class T>
void ensemble_reduce_forward(int members, int rows, int cols, const T* x, T* y) {
  KD_CHECK(members > 0, "ensemble_reduce: need at least one member, got " << members);
  const int64_t block = int64_t(rows) * cols;
  for (int r = 0; r < rows; ++r) {
    std::vector<std::vector<double>> ls(members);
    for (int i = 0; i < members; ++i)
      ls[i] = row_log_softmax(x + i * block + int64_t(r) * cols, cols, 1.0);
    for (int j = 0; j < cols; ++j) {
      double mx = -INFINITY;
      for (int i = 0; i < members; ++i) mx = std::max(mx, ls[i][j]);
      double sum = 0;
      for (int i = 0; i < members; ++i) sum += std::exp(ls[i][j] - mx);
      y[int64_t(r) * cols + j] = T(mx + std::log(sum) - std::log(double(members)));
    }
  }
}

// With q_i = softmax(x_i) and responsibilities w_ij = q_ij / (m * exp(y_j)) (sum_i w_ij = 1):
//   dx_ik += dy_k * w_ik - q_ik * sum_j dy_j * w_ij.
template <class T>
void ensemble_reduce_backward(int members, int rows, int cols, const T* x, const T* y,
                              const T* dy, T* dx) {
  KD_CHECK(members > 0, "ensemble_reduce: need at least one member, got " << members);
  const int64_t block = int64_t(rows) * cols;
  const double log_m = std::log(double(members));
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    for (int i = 0; i < members; ++i) {
      std::vector<double> ls = row_log_softmax(x + i * block + o, cols, 1.0);
      std::vector<double> w(cols);
      double sum_dy_w = 0;
      for (int j = 0; j < cols; ++j) {
        w[j] = std::exp(ls[j] - log_m - double(y[o + j]));
        sum_dy_w += dy[o + j] * w[j];
      }
      for (int k = 0; k < cols; ++k)
        dx[i * block + o + k] += T(dy[o + k] * w[k] - std::exp(ls[k]) * sum_dy_w);
    }
  }
}

KD_LOSS_FORWARDS_FROM_VALUES

KD_DEFINE_REGISTRAR(register_loss, KD_LOSS_KERNELS)

}  // namespace ref
}  // namespace kd
