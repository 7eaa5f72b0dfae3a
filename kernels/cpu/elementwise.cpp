// Elementwise maps over flat arrays of length n (contract: kernels/elementwise.h).
// relu_forward, add_forward, fill and dropout_forward ASSIGN; relu_backward (unless told to assign) and dropout_backward
// ACCUMULATE into dx; accumulate and scale update dst in place. ref:: is the plain loop; cpu:: is
// the same expression under `omp parallel for schedule(static)`: no element is reduced across
// iterations, so the result is bitwise identical to ref:: for any thread count.
#include "kernels/backend.h"
#include "kernels/elementwise.h"

namespace kd {

namespace {
// Below this length the fork/join costs more than the loop itself.
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

// relu written as `x < 0 ? 0 : x` so a NaN input stays NaN (as in PyTorch) and shows up downstream.
namespace ref {

template <class T>
void relu_forward(int64_t n, const T* x, T* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
}

template <class T>
void relu_backward(int64_t n, const T* y, const T* dy, T* dx, bool accumulate) {
  for (int64_t i = 0; i < n; ++i) {
    const T g = y[i] > T(0) ? dy[i] : T(0);
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

template <class T>
void add_forward(int64_t n, const T* a, const T* b, T* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

template <class T>
void accumulate(int64_t n, T alpha, const T* src, T* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] += alpha * src[i];
}

template <class T>
void fill(int64_t n, T value, T* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = value;
}

template <class T>
void scale(int64_t n, T alpha, T* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] *= alpha;
}

// One Philox block per element: the contract's keep(i), written out as plainly as it reads.
template <class T>
void dropout_forward(int64_t n, const DropoutMask& mask, T scale, const T* x, T* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * (dropout_keeps(mask, i) ? scale : T(0));
}

template <class T>
void dropout_backward(int64_t n, const DropoutMask& mask, T scale, const T* dy, T* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * (dropout_keeps(mask, i) ? scale : T(0));
}

}  // namespace ref

namespace cpu {

template <class T>
void relu_forward(int64_t n, const T* x, T* y) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
}

template <class T>
void relu_backward(int64_t n, const T* y, const T* dy, T* dx, bool accumulate) {
  if (accumulate) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) dx[i] += y[i] > T(0) ? dy[i] : T(0);
  } else {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
  }
}

template <class T>
void add_forward(int64_t n, const T* a, const T* b, T* y) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

template <class T>
void accumulate(int64_t n, T alpha, const T* src, T* dst) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] += alpha * src[i];
}

template <class T>
void fill(int64_t n, T value, T* dst) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] = value;
}

template <class T>
void scale(int64_t n, T alpha, T* dst) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] *= alpha;
}

// Dropout: one Philox block serves four consecutive elements (a quarter of ref::'s draws); the
// groups are independent, so any split over threads gives ref::'s bytes.
template <class T, class F>
void dropout_groups(int64_t n, const DropoutMask& mask, T scale, F&& apply) {
  const int64_t groups = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t g = 0; g < groups; ++g) {
    const Philox4 r = dropout_block(mask, g);
    const int64_t end = g * 4 + 4 < n ? g * 4 + 4 : n;
    for (int64_t i = g * 4; i < end; ++i)
      apply(i, r.v[i & 3] >= mask.keep_threshold ? scale : T(0));
  }
}

template <class T>
void dropout_forward(int64_t n, const DropoutMask& mask, T scale, const T* x, T* y) {
  dropout_groups(n, mask, scale, [&](int64_t i, T m) { y[i] = x[i] * m; });
}

template <class T>
void dropout_backward(int64_t n, const DropoutMask& mask, T scale, const T* dy, T* dx) {
  dropout_groups(n, mask, scale, [&](int64_t i, T m) { dx[i] += dy[i] * m; });
}

void counter_add(int64_t* counter, int64_t delta) { *counter += delta; }

}  // namespace cpu

namespace ref {
KD_DEFINE_REGISTRAR(register_elementwise, KD_ELEMENTWISE_KERNELS)
}
namespace cpu {
KD_DEFINE_REGISTRAR(register_elementwise, KD_ELEMENTWISE_KERNELS)
}

}  // namespace kd
