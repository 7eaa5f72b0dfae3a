// CUDA softmax-family ops and losses on row-major [rows, cols] logits (contract: kernels/loss.h;
// specification kernels/cpu/loss_ref.cpp, closed forms as kernels/cpu/loss.cpp). Forward ASSIGNS
// (a loss goes to a one-element device array), backward ACCUMULATES scaled by the upstream scalar
// read from device memory. One warp per row (kernels/cuda/warp_rows.cuh), all maths in double
// from a max-subtracted logsumexp. A loss mean is two launches: per-row values into the shared
// workspace, then one block sums them in a fixed order (deterministic, no atomics).
// Labels cannot be validated on the host without a copy; an out-of-range label makes that row
// NaN (loss and gradient) instead of reading out of bounds.
#include <cmath>
#include <cstdint>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/row_math.h"
#include "kernels/cuda/warp_rows.cuh"
#include "kernels/loss.h"

namespace kd {
namespace cuda {

namespace {

using namespace warp_rows;

constexpr int kMeanThreads = 1024;

// out[0] = T(sum(per_row) / rows): thread t sums rows t, t+1024, ... in order, then a fixed tree.
template <class T>
__global__ void mean_of_rows_kernel(const double* per_row, int rows, T* out) {
  __shared__ double part[kMeanThreads];
  double s = 0;
  for (int i = threadIdx.x; i < rows; i += kMeanThreads) s += per_row[i];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int width = kMeanThreads / 2; width > 0; width /= 2) {
    if (int(threadIdx.x) < width) part[threadIdx.x] += part[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = T(part[0] / rows);
}

template <class T>
void launch_mean_of_rows(const double* per_row, int rows, T* out) {
  KD_LAUNCH(mean_of_rows_kernel<T>, 1, kMeanThreads, 0, per_row, rows, out);
}

double* row_workspace(int64_t n) {
  return static_cast<double*>(workspace(size_t(n) * sizeof(double)));
}

template <class T>
__global__ void log_softmax_forward_kernel(int rows, int cols, const T* x, T* y) {
  const int64_t r = warp_unit();
  if (r >= rows) return;
  const int lane = lane_id();
  const int64_t o = r * cols;
  const double lse = warp_row_logsumexp(x + o, cols, 1.0, lane);
  for (int j = lane; j < cols; j += kWarp) y[o + j] = T(double(x[o + j]) - lse);
}

template <class T>
__global__ void log_softmax_backward_kernel(int rows, int cols, const T* y, const T* dy, T* dx) {
  const int64_t r = warp_unit();
  if (r >= rows) return;
  const int lane = lane_id();
  const int64_t o = r * cols;
  double sum_dy = 0;
  for (int j = lane; j < cols; j += kWarp) sum_dy += double(dy[o + j]);
  sum_dy = warp_sum(sum_dy);
  for (int j = lane; j < cols; j += kWarp)
    dx[o + j] += T(double(dy[o + j]) - exp(double(y[o + j])) * sum_dy);
}

template <class T>
__global__ void cross_entropy_rows_kernel(int rows, int cols, const T* x, const int32_t* labels,
                                          double* per_row) {
  const int64_t r = warp_unit();
  if (r >= rows) return;
  const int lane = lane_id();
  const int64_t o = r * cols;
  const double lse = warp_row_logsumexp(x + o, cols, 1.0, lane);
  const int32_t label = labels[r];
  if (lane == 0) per_row[r] = label >= 0 && label < cols ? lse - double(x[o + label]) : nan("");
}

template <class T>
__global__ void cross_entropy_backward_kernel(int rows, int cols, const T* x, const int32_t* labels,
                                              const T* dloss, T* dx) {
  const int64_t r = warp_unit();
  if (r >= rows) return;
  const int lane = lane_id();
  const int64_t o = r * cols;
  const double scale = double(*dloss) / rows;
  const double lse = warp_row_logsumexp(x + o, cols, 1.0, lane);
  const int32_t label = labels[r];
  const bool valid = label >= 0 && label < cols;
  for (int j = lane; j < cols; j += kWarp) {
    const double onehot = j == label ? 1.0 : 0.0;
    const double g = valid ? scale * (exp(double(x[o + j]) - lse) - onehot) : nan("");
    dx[o + j] += T(g);
  }
}

// Everything a distillation row needs: the teacher's and student's logsumexp at tau and, for
// kHardCE, the teacher's first maximum.
struct DistillRow {
  double lse_p, lse_q;
  int hard;
};

template <class T>
__device__ DistillRow distill_row(DistillKind kind, int cols, const T* t, const T* s,
                                  double inv_tau, int lane) {
  DistillRow d;
  d.lse_p = warp_row_logsumexp(t, cols, inv_tau, lane);
  d.lse_q = warp_row_logsumexp(s, cols, inv_tau, lane);
  d.hard = kind == DistillKind::kHardCE ? warp_first_argmax(t, cols, lane) : -1;
  return d;
}

template <class T>
__global__ void distill_rows_kernel(DistillKind kind, int rows, int cols, const T* teacher,
                                    const T* student, double inv_tau, double t2, double* per_row) {
  const int64_t r = warp_unit();
  if (r >= rows) return;
  const int lane = lane_id();
  const int64_t o = r * cols;
  const T* t = teacher + o;
  const T* s = student + o;
  const DistillRow d = distill_row(kind, cols, t, s, inv_tau, lane);
  double sum = 0;
  for (int j = lane; j < cols; j += kWarp) {
    const double logp = double(t[j]) * inv_tau - d.lse_p;
    const double logq = double(s[j]) * inv_tau - d.lse_q;
    sum += row_math::distill_term(kind, logp, logq, j == d.hard);
  }
  sum = warp_sum(sum);
  if (lane == 0) per_row[r] = row_math::distill_finish(kind, sum, t2, cols);
}

template <class T>
__global__ void distill_backward_kernel(DistillKind kind, int rows, int cols, const T* teacher,
                                        const T* student, double inv_tau, double t2, const T* dloss,
                                        T* dstudent) {
  const int64_t r = warp_unit();
  if (r >= rows) return;
  const int lane = lane_id();
  const int64_t o = r * cols;
  const T* t = teacher + o;
  const T* s = student + o;
  const double scale = double(*dloss) / rows * inv_tau;  // d z / d student = 1 / tau
  const DistillRow d = distill_row(kind, cols, t, s, inv_tau, lane);
  double e = 0;
  if (row_math::distill_needs_expectation(kind)) {  // kind is uniform: no divergence
    for (int j = lane; j < cols; j += kWarp)
      e += row_math::distill_expect_term(kind, double(t[j]) * inv_tau - d.lse_p,
                                         double(s[j]) * inv_tau - d.lse_q);
    e = warp_sum(e);
  }
  for (int k = lane; k < cols; k += kWarp) {
    const double logp = double(t[k]) * inv_tau - d.lse_p;
    const double logq = double(s[k]) * inv_tau - d.lse_q;
    dstudent[o + k] +=
        T(scale * row_math::distill_grad(kind, logp, logq, e, k == d.hard, t2, cols));
  }
}

// lse[u] = logsumexp of row u of x viewed as [units, cols] (member-major: u = member * rows + r).
template <class T>
__global__ void row_logsumexp_kernel(int64_t units, int cols, const T* x, double* lse) {
  const int64_t u = warp_unit();
  if (u >= units) return;
  const int lane = lane_id();
  const double v = warp_row_logsumexp(x + u * cols, cols, 1.0, lane);
  if (lane == 0) lse[u] = v;
}

// y[r, j] = logsumexp_i(log softmax(x_i)[r, j]) - log m; one thread per output element.
template <class T>
__global__ void ensemble_forward_kernel(int members, int rows, int cols, const T* x,
                                        const double* lse, double log_m, T* y) {
  const int64_t block = int64_t(rows) * cols;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < block;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / cols;
    double mx = -INFINITY;
    for (int i = 0; i < members; ++i)
      mx = fmax(mx, double(x[i * block + idx]) - lse[i * int64_t(rows) + r]);
    double sum = 0;
    for (int i = 0; i < members; ++i)
      sum += exp(double(x[i * block + idx]) - lse[i * int64_t(rows) + r] - mx);
    y[idx] = T(mx + log(sum) - log_m);
  }
}

// dx_ik += dy_k w_ik - q_ik sum_j dy_j w_ij, w_ij = q_ij / (m exp(y_j)); one warp per member-row.
template <class T>
__global__ void ensemble_backward_kernel(int members, int rows, int cols, const T* x, const T* y,
                                         const T* dy, double log_m, T* dx) {
  const int64_t u = warp_unit();
  if (u >= int64_t(members) * rows) return;
  const int lane = lane_id();
  const int64_t xo = u * cols, o = (u % rows) * cols;
  const double lse = warp_row_logsumexp(x + xo, cols, 1.0, lane);
  double sum_dy_w = 0;
  for (int j = lane; j < cols; j += kWarp)
    sum_dy_w += double(dy[o + j]) * exp(double(x[xo + j]) - lse - log_m - double(y[o + j]));
  sum_dy_w = warp_sum(sum_dy_w);
  for (int k = lane; k < cols; k += kWarp) {
    const double ls = double(x[xo + k]) - lse;
    const double w = exp(ls - log_m - double(y[o + k]));
    dx[xo + k] += T(double(dy[o + k]) * w - exp(ls) * sum_dy_w);
  }
}

void check_distill(int rows, int cols, double tau) {
  KD_CHECK(rows > 0 && cols > 0, "distill_loss: empty logits " << rows << "x" << cols);
  KD_CHECK(tau > 0, "distill_loss: temperature must be positive, got " << tau);
}

}  // namespace

template <class T>
void log_softmax_forward(int rows, int cols, const T* x, T* y) {
  if (rows <= 0 || cols <= 0) return;
  KD_LAUNCH(log_softmax_forward_kernel<T>, blocks_for_rows(rows), kRowThreads, 0, rows, cols, x, y);
}

template <class T>
void log_softmax_backward(int rows, int cols, const T* y, const T* dy, T* dx) {
  if (rows <= 0 || cols <= 0) return;
  KD_LAUNCH(log_softmax_backward_kernel<T>, blocks_for_rows(rows), kRowThreads, 0,
            rows, cols, y, dy, dx);
}

template <class T>
void cross_entropy_forward(int rows, int cols, const T* x, const int32_t* labels, T* loss) {
  KD_CHECK(rows > 0 && cols > 0, "cross_entropy: empty logits " << rows << "x" << cols);
  double* per_row = row_workspace(rows);
  KD_LAUNCH(cross_entropy_rows_kernel<T>, blocks_for_rows(rows), kRowThreads, 0,
            rows, cols, x, labels, per_row);
  launch_mean_of_rows(per_row, rows, loss);
}

template <class T>
void cross_entropy_backward(int rows, int cols, const T* x, const int32_t* labels, const T* dloss,
                            T* dx) {
  KD_CHECK(rows > 0 && cols > 0, "cross_entropy: empty logits " << rows << "x" << cols);
  KD_LAUNCH(cross_entropy_backward_kernel<T>, blocks_for_rows(rows), kRowThreads, 0,
            rows, cols, x, labels, dloss, dx);
}

template <class T>
void distill_loss_forward(DistillKind kind, int rows, int cols, const T* teacher, const T* student,
                          T tau, T* loss) {
  check_distill(rows, cols, tau);
  const double inv_tau = 1.0 / double(tau), t2 = double(tau) * double(tau);
  double* per_row = row_workspace(rows);
  KD_LAUNCH(distill_rows_kernel<T>, blocks_for_rows(rows), kRowThreads, 0,
            kind, rows, cols, teacher, student, inv_tau, t2, per_row);
  launch_mean_of_rows(per_row, rows, loss);
}

template <class T>
void distill_loss_backward(DistillKind kind, int rows, int cols, const T* teacher, const T* student,
                           T tau, const T* dloss, T* dstudent) {
  check_distill(rows, cols, tau);
  const double inv_tau = 1.0 / double(tau), t2 = double(tau) * double(tau);
  KD_LAUNCH(distill_backward_kernel<T>, blocks_for_rows(rows), kRowThreads, 0,
            kind, rows, cols, teacher, student, inv_tau, t2, dloss, dstudent);
}

template <class T>
void ensemble_reduce_forward(int members, int rows, int cols, const T* x, T* y) {
  KD_CHECK(members > 0, "ensemble_reduce: need at least one member, got " << members);
  if (rows <= 0 || cols <= 0) return;
  const int64_t units = int64_t(members) * rows;
  double* lse = row_workspace(units);
  KD_LAUNCH(row_logsumexp_kernel<T>, blocks_for_rows(units), kRowThreads, 0, units, cols, x, lse);
  constexpr int kThreads = 256;
  KD_LAUNCH(ensemble_forward_kernel<T>, grid_for(int64_t(rows) * cols, kThreads), kThreads, 0,
            members, rows, cols, x, lse, std::log(double(members)), y);
}

template <class T>
void ensemble_reduce_backward(int members, int rows, int cols, const T* x, const T* y, const T* dy,
                              T* dx) {
  KD_CHECK(members > 0, "ensemble_reduce: need at least one member, got " << members);
  if (rows <= 0 || cols <= 0) return;
  const int64_t units = int64_t(members) * rows;
  KD_LAUNCH(ensemble_backward_kernel<T>, blocks_for_rows(units), kRowThreads, 0,
            members, rows, cols, x, y, dy, std::log(double(members)), dx);
}

KD_DEFINE_REGISTRAR(register_loss, KD_LOSS_KERNELS)

}  // namespace cuda
}  // namespace kd
