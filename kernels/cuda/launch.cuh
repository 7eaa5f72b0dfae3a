// What every .cu file needs: the compute stream, the launch check that follows every kernel
// launch, and grid sizing. CUDA-only (included by kernels/cuda/*.cu and data/cuda/*.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/check.h"
#include "kernels/cuda/runtime.h"

namespace kd {
namespace cuda {

cudaStream_t stream();  // the one compute stream (created on first use)

// Throws CudaError for a bad launch configuration and counts the launch. Asynchronous faults
// surface at the next synchronizing call.
inline void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    ::kd::detail::throw_library<::kd::CudaError>(kernel, cudaGetErrorString(err), int(err), file,
                                                 line);
  count_launch();
}

// Blocks of `threads` covering n items, capped so grid-stride loops take over on huge arrays.
inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535LL * 8) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > cap) blocks = cap;
  return static_cast<unsigned>(blocks);
}

}  // namespace cuda
}  // namespace kd

// Launch `kernel<<<grid, block, shmem, stream()>>>(args...)` and check it.
#define KD_LAUNCH(kernel, grid, block, shmem, ...)                                     \
  do {                                                                                \
    kernel<<<(grid), (block), (shmem), ::kd::cuda::stream()>>>(__VA_ARGS__);          \
    ::kd::cuda::check_launch(#kernel, __FILE__, __LINE__);                            \
  } while (0)
// For launches the macro above cannot take (template arguments with commas).
#define KD_CHECK_LAUNCH(name) ::kd::cuda::check_launch(name, __FILE__, __LINE__)
