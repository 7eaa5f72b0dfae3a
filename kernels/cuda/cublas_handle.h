// The one cuBLAS handle of the process, bound to the compute stream (kernels/cuda/launch.cuh).
// CUDA-only: included by the .cu files that issue GEMMs. Each call re-applies cuda::math_mode():
// TF32 tensor cores only when tf32 && !deterministic, otherwise full FP32 (CUBLAS_DEFAULT_MATH).
// Callers count one launch (cuda::count_launch) per cuBLAS call and wrap each in CUBLAS_CHECK.
#pragma once
#include <cublas_v2.h>

namespace kd {
namespace cuda {

cublasHandle_t cublas_handle();

}  // namespace cuda
}  // namespace kd
