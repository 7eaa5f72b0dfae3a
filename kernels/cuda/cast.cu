// CUDA casts between T and bf16 (contract: kernels/cast.h), device pointers, on the compute
// stream. to_bf16 and from_bf16 ASSIGN, or ACCUMULATE when told to. One grid-stride loop per
// cast with int64 indices; elements are independent, so results never depend on the launch
// shape, and the rounding is kernels/bf16.h's: bitwise the CPU's (no FMA can form in a sum
// followed by a rounding).
#include "kernels/backend.h"
#include "kernels/cast.h"
#include "kernels/cuda/launch.cuh"

namespace kd {
namespace cuda {

namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void to_bf16_kernel(int64_t n, const T* x, bf16* y, bool accumulate) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = to_bf16_rn(accumulate ? bf16_to<T>(y[i]) + x[i] : x[i]);
}

template <class T>
__global__ void from_bf16_kernel(int64_t n, const bf16* x, T* y, bool accumulate) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = accumulate ? y[i] + bf16_to<T>(x[i]) : bf16_to<T>(x[i]);
}

}  // namespace

template <class T>
void to_bf16(int64_t n, const T* x, bf16* y, bool accumulate) {
  if (n <= 0) return;
  KD_LAUNCH(to_bf16_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, x, y, accumulate);
}

template <class T>
void from_bf16(int64_t n, const bf16* x, T* y, bool accumulate) {
  if (n <= 0) return;
  KD_LAUNCH(from_bf16_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, x, y, accumulate);
}

KD_DEFINE_REGISTRAR(register_cast, KD_CAST_KERNELS)

}  // namespace cuda
}  // namespace kd
