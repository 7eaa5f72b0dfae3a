// The CUDA runtime seam inside the GPU backend: kernels/cuda/backend.cu puts these functions in
// the backend table (kernels/backend.h), the only way the rest of kdlab reaches them. Implemented
// by runtime.cu (the GPU) and kernels/cuda_emu/runtime_emu.cpp (the emulated GPU).
// Raw memory only: caching lives in engine/allocator. All GPU work runs on one compute stream
// (kernels/cuda/launch.cuh hands it to kernels); copies are ordered on that stream too.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/backend.h"  // MathMode, StreamMark

namespace kd {
namespace cuda {

// grid_for (kernels/cuda/launch.cuh) caps the blocks of a grid-stride loop here. On the emulated
// device the cap is small, so the loops wrap after a few thousand elements: every test exercises
// them, and each emulated thread does a real share of the work.
#if KDLAB_EMULATED_CUDA
constexpr int64_t kGridStrideBlockCap = 64;
#else
constexpr int64_t kGridStrideBlockCap = 65535LL * 8;
#endif

bool built_with_cudnn();   // true when the cuDNN paths (--conv/--bn cudnn) are compiled in
int device_count();        // 0 without a device, without CUDA, or with KDLAB_DISABLE_CUDA set
std::string device_name(int index);
// Whether the current device runs the sm_80 instructions of kernels/cuda/tensor_core.cuh (TF32
// mma.sync, cp.async). The emulated GPU implements them, so it says yes.
bool tensor_cores_available();
// Whether the current device launches thread block clusters (sm_90: kernels/cuda/launch.cuh's
// KD_LAUNCH_CLUSTER). The emulated GPU does (kernels/cuda_grid/cluster.h).
bool clusters_available();

void* malloc_device(size_t bytes);  // nullptr on out-of-memory; throws CudaError otherwise
void free_device(void* ptr);
void* malloc_pinned(size_t bytes);  // page-locked host memory for transfers
void free_pinned(void* ptr);
void memcpy_host_to_device(void* dst, const void* src, size_t bytes);
void memcpy_device_to_host(void* dst, const void* src, size_t bytes);  // waits for the stream
void memcpy_device_to_device(void* dst, const void* src, size_t bytes);
// Ordered on the stream, returning at once: the host side must be pinned (malloc_pinned) and
// stay untouched until a synchronize().
void memcpy_host_to_device_async(void* dst, const void* src, size_t bytes);
void memcpy_device_to_host_async(void* dst, const void* src, size_t bytes);
void memset_device(void* dst, int value, size_t bytes);
void synchronize();  // waits for the compute stream
size_t free_device_bytes();

// One grow-only device workspace (split-K partial sums, cuDNN workspaces). The pointer is valid
// until the next call; every user runs on the one stream, so consecutive users never overlap.
// A kernel wrapper asks once per call and must not hold the pointer past its own launches.
void* workspace(size_t bytes);

// kd::MathMode (kernels/backend.h): how cuBLAS, cuDNN and our reductions may trade
// reproducibility for speed.
void set_math_mode(const MathMode& mode);
MathMode math_mode();

// Kernel launches issued by kdlab on the compute stream since the process started (a cuBLAS or
// cuDNN call counts as one): `kdlab bench` reports launches per training step.
uint64_t launch_count();
void count_launch();

// Timing on the compute stream without synchronizing: record a mark between steps, read the
// intervals after one synchronize(). Marks are CUDA events; destroy them when done.
StreamMark mark_stream();
double elapsed_ms(StreamMark from, StreamMark to);  // call after synchronize()
void destroy_mark(StreamMark mark);

// CUDA graphs (see Backend::capture_begin in kernels/backend.h). One capture at a time, on the
// compute stream; a graph replays on it too.
void capture_begin();
void* capture_end();
void capture_abandon();
void graph_launch(void* graph);
void graph_destroy(void* graph);
int64_t graph_nodes(void* graph);

// Profiling: NVTX ranges in the "kdlab" domain (no-ops without CUDA) and the profiler window
// that `--profile-steps A:B` opens and closes for Nsight.
void range_push(const char* name);
void range_pop();
void profiler_start();
void profiler_stop();

}  // namespace cuda
}  // namespace kd
