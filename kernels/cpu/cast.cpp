// Casts between T and bf16 (contract: kernels/cast.h). to_bf16 and from_bf16 ASSIGN, or
// ACCUMULATE when told to. ref:: is the plain loop; cpu:: is the same expression under
// `omp parallel for schedule(static)`: elements are independent, so the bytes are ref::'s for
// any thread count.
#include "kernels/backend.h"
#include "kernels/cast.h"

namespace kd {

namespace {
constexpr int64_t kParallelMin = 1 << 15;  // below this the fork/join costs more than the loop
}  // namespace

// The multi-tensor casts over the including namespace's single casts, one tensor after another
// (on the CPU each with its own parallel loop: a model's weights are few, most large enough for
// the loop to pay for its threads).
#define KD_MULTI_CASTS_TENSOR_BY_TENSOR                                                         \
  template <class T>                                                                            \
  void to_bf16_multi(int count, const int64_t* sizes, const T* const* xs, bf16* const* ys) {    \
    for (int i = 0; i < count; ++i) to_bf16<T>(sizes[i], xs[i], ys[i], false);                  \
  }                                                                                             \
  template <class T>                                                                            \
  void from_bf16_multi(int count, const int64_t* sizes, const bf16* const* xs, T* const* ys,    \
                       bool accumulate) {                                                       \
    for (int i = 0; i < count; ++i) from_bf16<T>(sizes[i], xs[i], ys[i], accumulate);           \
  }

namespace ref {

template <class T>
void to_bf16(int64_t n, const T* x, bf16* y, bool accumulate) {
  for (int64_t i = 0; i < n; ++i) y[i] = to_bf16_rn(accumulate ? bf16_to<T>(y[i]) + x[i] : x[i]);
}

template <class T>
void from_bf16(int64_t n, const bf16* x, T* y, bool accumulate) {
  for (int64_t i = 0; i < n; ++i) y[i] = accumulate ? y[i] + bf16_to<T>(x[i]) : bf16_to<T>(x[i]);
}

KD_MULTI_CASTS_TENSOR_BY_TENSOR

KD_DEFINE_REGISTRAR(register_cast, KD_CAST_KERNELS)
}  // namespace ref

namespace cpu {

template <class T>
void to_bf16(int64_t n, const T* x, bf16* y, bool accumulate) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = to_bf16_rn(accumulate ? bf16_to<T>(y[i]) + x[i] : x[i]);
}

template <class T>
void from_bf16(int64_t n, const bf16* x, T* y, bool accumulate) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = accumulate ? y[i] + bf16_to<T>(x[i]) : bf16_to<T>(x[i]);
}

KD_MULTI_CASTS_TENSOR_BY_TENSOR

KD_DEFINE_REGISTRAR(register_cast, KD_CAST_KERNELS)
}  // namespace cpu

}  // namespace kd
