// CUDA per-example evaluation quantities (contract: kernels/metrics.h). One warp per row computes,
// in double from T logits and exactly as kernels/cpu/metrics.cpp row_contribution defines them,
// the kRowStatFields doubles of the row (ASSIGNED): correct, nll, confidence, agree, kl. The host
// folds them in row order (fold_row_stats, kernels/cpu/metrics_fold.cpp), so binning and the
// sums are the CPU's code. An out-of-range label gives nll NaN rather than an out-of-bounds read.
#include <cmath>
#include <cstdint>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/warp_rows.cuh"
#include "kernels/metrics.h"

namespace kd {
namespace cuda {

namespace {

using namespace warp_rows;

// sum_j exp(z_j - z_top): logsumexp = z_top + log(sum), max softmax = 1 / sum.
template <class T>
__device__ double warp_exp_sum_below(const T* z, int cols, double top_value, int lane) {
  double sum = 0;
  for (int j = lane; j < cols; j += kWarp) sum += exp(double(z[j]) - top_value);
  return warp_sum(sum);
}

template <class T>
__global__ void classifier_row_stats_kernel(int rows, int cols, const T* logits,
                                            const int32_t* labels, const T* teacher,
                                            double* per_row) {
  const int64_t r = warp_unit();
  if (r >= rows) return;
  const int lane = lane_id();
  const int64_t o = r * cols;
  const T* z = logits + o;
  const int top = warp_first_argmax(z, cols, lane);
  const double sum = warp_exp_sum_below(z, cols, double(z[top]), lane);
  const double lse = double(z[top]) + log(sum);
  const int32_t label = labels[r];
  const bool valid = label >= 0 && label < cols;
  double agree = 0, kl = 0;
  if (teacher) {  // uniform across the grid
    const T* t = teacher + o;
    const int t_top = warp_first_argmax(t, cols, lane);
    const double t_lse =
        double(t[t_top]) + log(warp_exp_sum_below(t, cols, double(t[t_top]), lane));
    for (int j = lane; j < cols; j += kWarp) {  // KL(p_teacher || p_model)
      const double log_pt = double(t[j]) - t_lse;
      kl += exp(log_pt) * (log_pt - (double(z[j]) - lse));
    }
    kl = warp_sum(kl);
    agree = t_top == top ? 1.0 : 0.0;
  }
  if (lane == 0) {
    double* f = per_row + r * kRowStatFields;
    f[0] = top == label ? 1.0 : 0.0;
    f[1] = valid ? lse - double(z[label]) : nan("");
    f[2] = 1.0 / sum;
    f[3] = agree;
    f[4] = kl;
  }
}

}  // namespace

template <class T>
void classifier_row_stats(int rows, int cols, const T* logits, const int32_t* labels,
                          const T* teacher, double* per_row) {
  KD_CHECK(rows >= 0, "classifier_row_stats: negative row count " << rows);
  if (rows == 0) return;
  KD_CHECK(cols > 0, "classifier_row_stats: " << rows << " rows of 0 classes");
  KD_LAUNCH(classifier_row_stats_kernel<T>, blocks_for_rows(rows), kRowThreads, 0,
            rows, cols, logits, labels, teacher, per_row);
}

KD_DEFINE_REGISTRAR(register_metrics, KD_METRICS_KERNELS)

}  // namespace cuda
}  // namespace kd
