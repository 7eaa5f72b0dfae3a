// Per-element formulas of the softmax-family losses and the first-maximum rule, shared by the
// CUDA row kernels (kernels/cuda/loss.cu, metrics.cu) and host tests. Plain C++ with
// KD_HOST_DEVICE so a host test runs the very code the GPU runs against the ref:: loops; the GPU
// only adds the lane-strided loops and warp sums around it. Everything here is in double, from
// max-subtracted log-probabilities logp (teacher) and logq (student) at temperature tau, and
// mirrors the closed forms of kernels/cpu/loss.cpp (distill_row_value / distill_row_grad).
#pragma once
#include <climits>
#include <cmath>

#include "kernels/loss.h"
#include "base/philox.h"  // KD_HOST_DEVICE

namespace kd {
namespace row_math {

// One element's share of a distillation row sum; distill_finish turns the sum into the row loss.
KD_HOST_DEVICE inline double distill_term(DistillKind kind, double logp, double logq,
                                          bool is_hard) {
  switch (kind) {
    case DistillKind::kForwardCE: return exp(logp) * logq;
    case DistillKind::kKL: return exp(logp) * (logp - logq);
    case DistillKind::kReverseCE: return exp(logq) * logp;
    case DistillKind::kSymmetricKL: return (exp(logp) - exp(logq)) * (logp - logq);
    case DistillKind::kBrier: {
      const double d = exp(logq) - exp(logp);
      return d * d;
    }
    case DistillKind::kHardCE: return is_hard ? logq : 0.0;
  }
  return 0.0;
}

KD_HOST_DEVICE inline double distill_finish(DistillKind kind, double sum, double t2, int cols) {
  switch (kind) {
    case DistillKind::kForwardCE:
    case DistillKind::kReverseCE:
    case DistillKind::kHardCE: return -t2 * sum;
    case DistillKind::kKL:
    case DistillKind::kSymmetricKL: return sum;
    case DistillKind::kBrier: return sum / cols;
  }
  return 0.0;
}

// The gradients of ReverseCE, SymmetricKL and Brier subtract an expectation under q over the row;
// this is one element's share of it (0 for the kinds that need none).
KD_HOST_DEVICE inline bool distill_needs_expectation(DistillKind kind) {
  return kind == DistillKind::kReverseCE || kind == DistillKind::kSymmetricKL ||
         kind == DistillKind::kBrier;
}

KD_HOST_DEVICE inline double distill_expect_term(DistillKind kind, double logp, double logq) {
  switch (kind) {
    case DistillKind::kReverseCE: return exp(logq) * logp;
    case DistillKind::kSymmetricKL: return exp(logq) * (logq - logp);
    case DistillKind::kBrier: {
      const double q = exp(logq);
      return q * (q - exp(logp));
    }
    default: return 0.0;
  }
}

// d(row loss)/dz_k with z = student / tau, given the row's expectation e (see above). The caller
// multiplies by dloss / rows / tau.
KD_HOST_DEVICE inline double distill_grad(DistillKind kind, double logp, double logq, double e,
                                          bool is_hard, double t2, int cols) {
  const double q = exp(logq);
  switch (kind) {
    case DistillKind::kForwardCE: return t2 * (q - exp(logp));
    case DistillKind::kKL: return q - exp(logp);
    case DistillKind::kReverseCE: return -t2 * q * (logp - e);
    case DistillKind::kSymmetricKL: return q - exp(logp) + q * ((logq - logp) - e);
    case DistillKind::kBrier: return 2.0 / cols * q * ((q - exp(logp)) - e);
    case DistillKind::kHardCE: return t2 * (q - (is_hard ? 1.0 : 0.0));
  }
  return 0.0;
}

// First maximum over a row split into `stride` lanes: each lane scans its elements in order
// keeping its first strict maximum (lane_argmax), then lanes combine by (larger value, then
// smaller index). That order is total, so any combining tree returns the row's first maximum.
struct ArgMax {
  double value;
  int index;  // INT_MAX for a lane that saw no element
};

template <class T>
KD_HOST_DEVICE inline ArgMax lane_argmax(const T* z, int cols, int lane, int stride) {
  ArgMax a{-INFINITY, INT_MAX};
  for (int j = lane; j < cols; j += stride) {
    const double v = double(z[j]);
    if (a.index == INT_MAX || v > a.value) a = ArgMax{v, j};
  }
  return a;
}

KD_HOST_DEVICE inline ArgMax argmax_combine(ArgMax mine, ArgMax other) {
  const bool take =
      other.value > mine.value || (other.value == mine.value && other.index < mine.index);
  return take ? other : mine;
}

}  // namespace row_math
}  // namespace kd
