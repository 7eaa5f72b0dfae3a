// CUDA runtime seam (see runtime.h): device discovery, raw memory and copies on one stream.
#include <cuda_runtime.h>

#include <cstdlib>
#include <sstream>

#include "kernels/check.h"
#include "kernels/cuda/runtime.h"

#define KD_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    cudaError_t kd_err_ = (call);                                                        \
    if (kd_err_ != cudaSuccess) {                                                        \
      std::ostringstream kd_os_;                                                         \
      kd_os_ << #call << " failed: " << cudaGetErrorString(kd_err_) << " at " << __FILE__ \
             << ":" << __LINE__;                                                         \
      throw ::kd::CudaError(kd_os_.str());                                               \
    }                                                                                    \
  } while (0)

namespace kd {
namespace cuda {

bool built_with_cuda() { return true; }
bool has_op_kernels() { return false; }  // the op kernels arrive with the CUDA backend

int device_count() {
  static const int count = [] {
    const char* off = std::getenv("KDLAB_DISABLE_CUDA");
    if (off && *off && std::string(off) != "0") return 0;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no device" error
      return 0;
    }
    return n;
  }();
  return count;
}

std::string device_name(int index) {
  cudaDeviceProp prop{};
  KD_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return prop.name;
}

void* malloc_device(size_t bytes) {
  void* ptr = nullptr;
  cudaError_t err = cudaMalloc(&ptr, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  KD_CUDA_CHECK(err);
  return ptr;
}

void free_device(void* ptr) { KD_CUDA_CHECK(cudaFree(ptr)); }

void memcpy_host_to_device(void* dst, const void* src, size_t bytes) {
  KD_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void memcpy_device_to_host(void* dst, const void* src, size_t bytes) {
  KD_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void memcpy_device_to_device(void* dst, const void* src, size_t bytes) {
  KD_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}
void memset_device(void* dst, int value, size_t bytes) {
  KD_CUDA_CHECK(cudaMemset(dst, value, bytes));
}
void synchronize() { KD_CUDA_CHECK(cudaDeviceSynchronize()); }

size_t free_device_bytes() {
  size_t free_bytes = 0, total = 0;
  KD_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  return free_bytes;
}

}  // namespace cuda
}  // namespace kd
