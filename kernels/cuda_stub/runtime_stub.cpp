// Linked instead of kernels/cuda/runtime.cu when nvcc was not found: the binary runs on the CPU
// and every attempt to touch a GPU says so. Profiling hooks are silent no-ops.
#include "kernels/check.h"
#include "kernels/cuda/runtime.h"

namespace kd {
namespace cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw CudaError(std::string(what) + ": kdlab was built without CUDA (nvcc was not found)");
}
MathMode g_math_mode;
}  // namespace

bool built_with_cuda() { return false; }
bool has_op_kernels() { return false; }
bool built_with_cudnn() { return false; }
int device_count() { return 0; }
std::string device_name(int) { no_cuda("device_name"); }
void* malloc_device(size_t) { no_cuda("malloc_device"); }
void free_device(void*) { no_cuda("free_device"); }
void* malloc_pinned(size_t) { no_cuda("malloc_pinned"); }
void free_pinned(void*) { no_cuda("free_pinned"); }
void memcpy_host_to_device(void*, const void*, size_t) { no_cuda("memcpy_host_to_device"); }
void memcpy_device_to_host(void*, const void*, size_t) { no_cuda("memcpy_device_to_host"); }
void memcpy_device_to_device(void*, const void*, size_t) { no_cuda("memcpy_device_to_device"); }
void memset_device(void*, int, size_t) { no_cuda("memset_device"); }
void synchronize() {}
size_t free_device_bytes() { return 0; }
void* workspace(size_t) { no_cuda("workspace"); }
void set_math_mode(const MathMode& mode) { g_math_mode = mode; }
MathMode math_mode() { return g_math_mode; }
StreamMark mark_stream() { no_cuda("mark_stream"); }
double elapsed_ms(StreamMark, StreamMark) { no_cuda("elapsed_ms"); }
void destroy_mark(StreamMark) {}
uint64_t launch_count() { return 0; }
void count_launch() {}
void range_push(const char*) {}
void range_pop() {}
void profiler_start() {}
void profiler_stop() {}

}  // namespace cuda
}  // namespace kd
