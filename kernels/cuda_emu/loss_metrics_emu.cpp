// Emulated cuda:: losses (kernels/loss.h) and per-example evaluation rows (kernels/metrics.h).
// The device contract keeps the loss on the device: the forward ASSIGNS the mean loss to *loss,
// the backward reads the upstream scalar from *dloss; both run the cpu:: twin. The row stats
// come from cpu::classifier_stats run on one row at a time into empty stats, which gives back
// exactly the row's correct, nll, confidence, agree and kl (0 + x == x), so fold_row_stats of
// these rows reproduces the CPU's sums bitwise. As on the GPU, an out-of-range label is not an
// error: cross-entropy gives that row NaN loss and gradient, the row stats correct 0 and nll NaN.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/check.h"
#include "kernels/cuda_emu/emu.h"
#include "kernels/loss.h"
#include "kernels/metrics.h"

namespace kd {
namespace cuda {

template <class T>
void log_softmax_forward(int rows, int cols, const T* x, T* y) {
  emu::Launch launch("cuda::log_softmax_forward", x, y);
  cpu::log_softmax_forward<T>(rows, cols, x, y);
}

template <class T>
void log_softmax_backward(int rows, int cols, const T* y, const T* dy, T* dx) {
  emu::Launch launch("cuda::log_softmax_backward", y, dy, dx);
  cpu::log_softmax_backward<T>(rows, cols, y, dy, dx);
}

// The GPU does not validate labels (that would cost a copy): a row with a label outside
// [0, cols) gets loss and gradient NaN. Valid rows are the CPU's; -1 marks the bad ones.
namespace {
std::vector<int32_t> labels_or_minus_one(int rows, int cols, const int32_t* labels, bool* any_bad) {
  std::vector<int32_t> out(labels, labels + rows);
  *any_bad = false;
  for (int32_t& l : out)
    if (l < 0 || l >= cols) l = -1, *any_bad = true;
  return out;
}
}  // namespace

template <class T>
void cross_entropy_forward(int rows, int cols, const T* x, const int32_t* labels, T* loss) {
  emu::Launch launch("cuda::cross_entropy_forward", x, labels, loss);
  bool any_bad = false;
  if (rows > 0) labels_or_minus_one(rows, cols, labels, &any_bad);
  *loss = any_bad ? std::numeric_limits<T>::quiet_NaN()
                  : cpu::cross_entropy_forward<T>(rows, cols, x, labels);
}

template <class T>
void cross_entropy_backward(int rows, int cols, const T* x, const int32_t* labels,
                            const T* dloss, T* dx) {
  emu::Launch launch("cuda::cross_entropy_backward", x, labels, dloss, dx);
  bool any_bad = false;
  std::vector<int32_t> checked = rows > 0 ? labels_or_minus_one(rows, cols, labels, &any_bad)
                                          : std::vector<int32_t>();
  if (!any_bad) return cpu::cross_entropy_backward<T>(rows, cols, x, labels, *dloss, dx);
  std::vector<int32_t> patched = checked;
  for (int32_t& l : patched) l = l < 0 ? 0 : l;
  cpu::cross_entropy_backward<T>(rows, cols, x, patched.data(), *dloss, dx);
  for (int r = 0; r < rows; ++r)
    if (checked[r] < 0)
      for (int j = 0; j < cols; ++j) dx[int64_t(r) * cols + j] = std::numeric_limits<T>::quiet_NaN();
}

template <class T>
void distill_loss_forward(DistillKind kind, int rows, int cols, const T* teacher,
                          const T* student, T tau, T* loss) {
  emu::Launch launch("cuda::distill_loss_forward", teacher, student, loss);
  *loss = cpu::distill_loss_forward<T>(kind, rows, cols, teacher, student, tau);
}

template <class T>
void distill_loss_backward(DistillKind kind, int rows, int cols, const T* teacher,
                           const T* student, T tau, const T* dloss, T* dstudent) {
  emu::Launch launch("cuda::distill_loss_backward", teacher, student, dloss, dstudent);
  cpu::distill_loss_backward<T>(kind, rows, cols, teacher, student, tau, *dloss, dstudent);
}

template <class T>
void ensemble_reduce_forward(int members, int rows, int cols, const T* x, T* y) {
  emu::Launch launch("cuda::ensemble_reduce_forward", x, y);
  cpu::ensemble_reduce_forward<T>(members, rows, cols, x, y);
}

template <class T>
void ensemble_reduce_backward(int members, int rows, int cols, const T* x, const T* y,
                              const T* dy, T* dx) {
  emu::Launch launch("cuda::ensemble_reduce_backward", x, y, dy, dx);
  cpu::ensemble_reduce_backward<T>(members, rows, cols, x, y, dy, dx);
}

template <class T>
void classifier_row_stats(int rows, int cols, const T* logits, const int32_t* labels,
                          const T* teacher, double* per_row) {
  KD_CHECK(rows >= 0, "classifier_row_stats: negative row count " << rows);
  if (rows == 0) return;
  KD_CHECK(cols > 0, "classifier_row_stats: " << rows << " rows of 0 classes");
  emu::Launch launch("cuda::classifier_row_stats", logits, labels, teacher, per_row);
  for (int r = 0; r < rows; ++r) {
    const int64_t o = int64_t(r) * cols;
    const bool valid = labels[r] >= 0 && labels[r] < cols;
    const int32_t label = valid ? labels[r] : 0;  // the rest of the row does not use the label
    ClassifierStats one;
    cpu::classifier_stats<T>(1, cols, logits + o, &label, teacher ? teacher + o : nullptr, &one);
    int bin = 0;
    while (one.bin_count[bin] == 0) ++bin;  // the row's one bin
    double* f = per_row + int64_t(r) * kRowStatFields;
    f[0] = valid && one.correct ? 1.0 : 0.0;
    f[1] = valid ? one.nll_sum : std::numeric_limits<double>::quiet_NaN();
    f[2] = one.bin_conf_sum[bin];
    f[3] = teacher && one.agree ? 1.0 : 0.0;
    f[4] = teacher ? one.kl_sum : 0.0;
  }
}

#define KD_EMU_INSTANTIATE_LOSS(T)                                                            \
  template void log_softmax_forward<T>(int, int, const T*, T*);                               \
  template void log_softmax_backward<T>(int, int, const T*, const T*, T*);                    \
  template void cross_entropy_forward<T>(int, int, const T*, const int32_t*, T*);             \
  template void cross_entropy_backward<T>(int, int, const T*, const int32_t*, const T*, T*);  \
  template void distill_loss_forward<T>(DistillKind, int, int, const T*, const T*, T, T*);    \
  template void distill_loss_backward<T>(DistillKind, int, int, const T*, const T*, T,        \
                                         const T*, T*);                                       \
  template void ensemble_reduce_forward<T>(int, int, int, const T*, T*);                      \
  template void ensemble_reduce_backward<T>(int, int, int, const T*, const T*, const T*, T*); \
  template void classifier_row_stats<T>(int, int, const T*, const int32_t*, const T*, double*);
KD_EMU_INSTANTIATE_LOSS(float)
KD_EMU_INSTANTIATE_LOSS(double)
#undef KD_EMU_INSTANTIATE_LOSS

}  // namespace cuda
}  // namespace kd
