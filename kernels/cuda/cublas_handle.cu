// The process-wide cuBLAS handle (see cublas_handle.h). Created on first use and never destroyed:
// like the compute stream, tearing it down at exit would race the driver's own teardown.
// Reproducibility: cuBLAS gives bitwise-identical results run to run on the same GPU model when
// one stream is used and atomics are off, so deterministic mode needs no PEDANTIC maths; it only
// has to keep TF32 off (DEFAULT_MATH never uses TF32 or the BF16x9 emulation for FP32).
#include "kernels/cuda/cublas_handle.h"

#include <mutex>

#include "base/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/runtime.h"

namespace kd {
namespace cuda {

namespace {
cublasMath_t wanted_math(const MathMode& mode) {
  return (mode.tf32 && !mode.deterministic) ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
}
}  // namespace

cublasHandle_t cublas_handle() {
  static cublasHandle_t handle = [] {
    cublasHandle_t created = nullptr;
    CUBLAS_CHECK(cublasCreate(&created));
    // A failed setting must not leak the handle: the static stays unset and the next call
    // tries again from scratch.
    cublasStatus_t status = cublasSetStream(created, stream());
    if (status == CUBLAS_STATUS_SUCCESS)
      status = cublasSetPointerMode(created, CUBLAS_POINTER_MODE_HOST);
    if (status == CUBLAS_STATUS_SUCCESS)
      status = cublasSetAtomicsMode(created, CUBLAS_ATOMICS_NOT_ALLOWED);
    if (status == CUBLAS_STATUS_SUCCESS) status = cublasSetMathMode(created, CUBLAS_DEFAULT_MATH);
    if (status != CUBLAS_STATUS_SUCCESS) cublasDestroy(created);
    CUBLAS_CHECK(status);
    return created;
  }();
  // The math mode can change between calls (set_math_mode); setting it is a host-side field
  // write, done only when it differs from what the handle holds.
  static std::mutex mutex;
  static cublasMath_t applied = CUBLAS_DEFAULT_MATH;
  const cublasMath_t want = wanted_math(math_mode());
  std::lock_guard<std::mutex> lock(mutex);
  if (want != applied) {
    CUBLAS_CHECK(cublasSetMathMode(handle, want));
    applied = want;
  }
  return handle;
}

}  // namespace cuda
}  // namespace kd
