// Host side of the GPU evaluation path (contract: kernels/metrics.h): folds per-example rows
// (correct, nll, confidence, agree, kl; kRowStatFields doubles each) into ClassifierStats in row
// order, ACCUMULATING. It adds exactly what kernels/cpu/metrics.cpp adds per row, in the same
// order and with the same ECE bin function, so given the CPU's per-row values the sums are the
// CPU's bitwise. Plain host code: it links in builds without CUDA.
#include <cstdint>

#include "base/check.h"
#include "kernels/metrics.h"

namespace kd {

void fold_row_stats(int rows, const double* per_row, bool with_teacher, ClassifierStats* stats) {
  KD_CHECK(stats != nullptr, "fold_row_stats: null stats");
  KD_CHECK(rows >= 0, "fold_row_stats: negative row count " << rows);
  KD_CHECK(rows == 0 || per_row != nullptr, "fold_row_stats: null rows");
  for (int r = 0; r < rows; ++r) {
    const double* f = per_row + int64_t(r) * kRowStatFields;
    const bool correct = f[0] != 0.0;
    const double confidence = f[2];
    const int bin = ece_bin(confidence);
    stats->count += 1;
    stats->correct += correct ? 1 : 0;
    stats->nll_sum += f[1];
    stats->bin_count[bin] += 1;
    stats->bin_conf_sum[bin] += confidence;
    stats->bin_correct_sum[bin] += correct ? 1.0 : 0.0;
    if (with_teacher) {
      stats->agree += f[3] != 0.0 ? 1 : 0;
      stats->kl_sum += f[4];
    }
  }
}

}  // namespace kd
