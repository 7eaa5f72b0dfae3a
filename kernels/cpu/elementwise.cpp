// Elementwise maps over flat arrays of length n (contract: kernels/elementwise.h).
// relu_forward, add_forward and fill ASSIGN; relu_backward ACCUMULATES into dx; accumulate and
// scale update dst in place. ref:: is the plain loop; cpu:: is the same expression under
// `omp parallel for schedule(static)`: no element is reduced across iterations, so the result is
// bitwise identical to ref:: for any thread count.
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
void relu_backward(int64_t n, const T* y, const T* dy, T* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] += y[i] > T(0) ? dy[i] : T(0);
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

}  // namespace ref

namespace cpu {

template <class T>
void relu_forward(int64_t n, const T* x, T* y) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
}

template <class T>
void relu_backward(int64_t n, const T* y, const T* dy, T* dx) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) dx[i] += y[i] > T(0) ? dy[i] : T(0);
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

void counter_add(int64_t* counter, int64_t delta) { *counter += delta; }

}  // namespace cpu

namespace ref {
KD_DEFINE_REGISTRAR(register_elementwise, KD_ELEMENTWISE_KERNELS)
}
namespace cpu {
KD_DEFINE_REGISTRAR(register_elementwise, KD_ELEMENTWISE_KERNELS)
}

}  // namespace kd
