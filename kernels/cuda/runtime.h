// The CUDA runtime seam. Everything the engine needs from the GPU driver goes through here, so a
// build without nvcc links kernels/cuda_stub/runtime_stub.cpp instead and still runs on the CPU.
// Raw memory only: caching lives in engine/allocator.
#pragma once
#include <cstddef>
#include <string>

namespace kd {
namespace cuda {

bool built_with_cuda();    // true when this binary was compiled by nvcc
bool has_op_kernels();     // true when the op kernels (kernels/cuda/*.cu) are part of the build
int device_count();        // 0 without a device, without CUDA, or with KDLAB_DISABLE_CUDA set
std::string device_name(int index);

void* malloc_device(size_t bytes);  // nullptr on out-of-memory; throws CudaError otherwise
void free_device(void* ptr);
void memcpy_host_to_device(void* dst, const void* src, size_t bytes);
void memcpy_device_to_host(void* dst, const void* src, size_t bytes);
void memcpy_device_to_device(void* dst, const void* src, size_t bytes);
void memset_device(void* dst, int value, size_t bytes);
void synchronize();
size_t free_device_bytes();

}  // namespace cuda
}  // namespace kd
