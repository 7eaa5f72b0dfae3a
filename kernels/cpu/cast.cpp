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

namespace ref {

template <class T>
void to_bf16(int64_t n, const T* x, bf16* y, bool accumulate) {
  for (int64_t i = 0; i < n; ++i) y[i] = to_bf16_rn(accumulate ? bf16_to<T>(y[i]) + x[i] : x[i]);
}

template <class T>
void from_bf16(int64_t n, const bf16* x, T* y, bool accumulate) {
  for (int64_t i = 0; i < n; ++i) y[i] = accumulate ? y[i] + bf16_to<T>(x[i]) : bf16_to<T>(x[i]);
}

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

KD_DEFINE_REGISTRAR(register_cast, KD_CAST_KERNELS)
}  // namespace cpu

}  // namespace kd
