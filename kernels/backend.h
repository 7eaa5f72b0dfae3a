// The backend interface: one table per device, chosen at run time. A backend is the CPU (host
// memory, kernels/cpu/), the CUDA GPU (kernels/cuda/ + kernels/cudnn/, built as the shared library
// libkdlab_cuda.so and opened only when a GPU is asked for), or the emulated GPU (the same CUDA
// sources on the CPU grid emulator, libkdlab_grid.so). Ops call kernels through the table of
// their tensors' device (`backend_of(device).kernels<T>().conv2d_forward(...)`), so a reader finds
// every caller of a kernel by grepping its name, and the CPU binary never maps a CUDA library.
//
// The kernel entries are generated from the one list per contract in kernels/<op>.h
// (kernel_list.h); the runtime entries (memory, copies, stream, timing, profiling) are below.
// Device pointers everywhere for a GPU backend; all GPU work is ordered on one compute stream.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/check.h"
#include "kernels/cast.h"
#include "kernels/conv2d.h"
#include "kernels/elementwise.h"
#include "kernels/kernel_list.h"
#include "kernels/linear.h"
#include "kernels/loss.h"
#include "kernels/metrics.h"
#include "kernels/normalization.h"
#include "kernels/optimizer.h"
#include "kernels/pool.h"

namespace kd {

// An entry is null where a backend has no such kernel (the cuDNN table holds convolution and
// batchnorm only); callers go through require() (below) for a clear error.
template <class T>
struct KernelTable {
  KD_TABLE_ENTRIES(KD_ELEMENTWISE_KERNELS)
  KD_TABLE_ENTRIES(KD_CAST_KERNELS)
  KD_TABLE_ENTRIES(KD_CONV2D_ALL_KERNELS)
  KD_TABLE_ENTRIES(KD_LINEAR_KERNELS)
  KD_TABLE_ENTRIES(KD_POOL_KERNELS)
  KD_TABLE_ENTRIES(KD_NORM_KERNELS)
  KD_TABLE_ENTRIES(KD_LOSS_KERNELS)
  KD_TABLE_ENTRIES(KD_METRICS_KERNELS)
  KD_TABLE_ENTRIES(KD_OPTIM_KERNELS)
  KD_TABLE_ENTRIES(KD_OPTIM_MULTI_KERNELS)
};

// The registrars each implementation file defines with KD_DEFINE_REGISTRAR (one per contract
// and namespace); a backend's table is the sum of its namespace's registrars.
#define KD_DECLARE_REGISTRAR_(fn) \
  template <class T>              \
  void fn(KernelTable<T>& table);
#define KD_HOST_REGISTRARS(X)                                                          \
  X(register_elementwise) X(register_conv2d) X(register_linear) X(register_pool)       \
  X(register_norm) X(register_loss) X(register_metrics) X(register_optim) X(register_cast)
namespace ref {
KD_HOST_REGISTRARS(KD_DECLARE_REGISTRAR_)
}
namespace cpu {
KD_HOST_REGISTRARS(KD_DECLARE_REGISTRAR_)
KD_DECLARE_REGISTRAR_(register_optim_multi)
}
namespace cuda {
KD_HOST_REGISTRARS(KD_DECLARE_REGISTRAR_)
KD_DECLARE_REGISTRAR_(register_optim_multi)
}
namespace cudnn {
KD_DECLARE_REGISTRAR_(register_conv2d)
KD_DECLARE_REGISTRAR_(register_batchnorm)
}
#undef KD_DECLARE_REGISTRAR_

// How cuBLAS, cuDNN and our reductions may trade reproducibility for speed. deterministic:
// deterministic cuDNN algorithms, no float atomics in our kernels, TF32 off. tf32: TF32 tensor
// cores for cuBLAS/cuDNN float maths (ignored when deterministic). The CPU ignores both.
// find: time every cuDNN convolution algorithm once per shape (cudnnFind*AlgorithmEx) and run the
// fastest one the rule of kernels/cudnn/algo_policy.h accepts, instead of the heuristic's first;
// with deterministic, only deterministic ones are timed (but which of them wins can differ
// between runs, and so can the bits).
struct MathMode {
  bool deterministic = false;
  bool tf32 = false;
  bool find = false;
};

// A point on the compute stream, for timing without synchronizing (CUDA events).
using StreamMark = void*;

// Controls that exist only on the emulated GPU (null elsewhere).
struct EmulatorControls {
  // Sets how each launch orders the threads of a barrier interval (0 All: forward, reverse and
  // random, compared; 1 Forward; 2 Reverse; 3 Random); returns the previous setting.
  int (*swap_schedule)(int schedule) = nullptr;
  void (*set_guard)(bool on) = nullptr;  // device pages PROT_NONE outside kernels and copies
  bool (*is_guarded_device_pointer)(const void* p) = nullptr;
  // Blocks run so far (a launch under the three-schedule check runs each block three times):
  // how a test sees which tile a kernel was launched with when the bits cannot tell.
  uint64_t (*blocks_run)() = nullptr;
  // Warp-wide tensor-core instructions (mma.sync) run so far, under the same three-fold count:
  // how a test sees that tensor cores multiplied when the bits cannot tell (bf16 operands).
  uint64_t (*mma_tiles_run)() = nullptr;
};

struct Backend {
  const char* name = "";     // "cpu", "cuda" or "grid"
  const char* library = "";  // the shared library it came from ("" for the CPU)
  const EmulatorControls* emulator = nullptr;
  bool has_cudnn = false;    // cudnn_f32/f64 hold convolution and batchnorm
  // Grid-stride loops cap their grids at this many blocks (small on the emulator, so the loops
  // wrap in every test); tests size their arrays past it.
  int64_t grid_stride_block_cap = 0;

  int (*device_count)() = nullptr;  // 0: the library loaded but no device is usable
  std::string (*device_name)(int index) = nullptr;

  // Raw memory: caching lives in engine/allocator. malloc_device returns nullptr when the device
  // is out of memory (the allocator then frees its cache and retries).
  void* (*malloc_device)(size_t bytes) = nullptr;
  void (*free_device)(void* p) = nullptr;
  size_t (*free_device_bytes)() = nullptr;
  void* (*malloc_pinned)(size_t bytes) = nullptr;  // page-locked host memory for transfers
  void (*free_pinned)(void* p) = nullptr;
  void (*copy_host_to_device)(void* dst, const void* src, size_t bytes) = nullptr;
  void (*copy_host_to_device_async)(void* dst, const void* src, size_t bytes) = nullptr;  // src pinned
  void (*copy_device_to_host)(void* dst, const void* src, size_t bytes) = nullptr;  // waits
  void (*copy_device_to_host_async)(void* dst, const void* src, size_t bytes) = nullptr;  // dst pinned
  void (*copy_device_to_device)(void* dst, const void* src, size_t bytes) = nullptr;
  void (*memset_device)(void* dst, int value, size_t bytes) = nullptr;
  void (*synchronize)() = nullptr;  // waits for the compute stream
  // One grow-only scratch buffer (split-K partial sums, cuDNN workspaces, MixUp staging), valid
  // until the next call; every user runs on the one stream, so consecutive users never overlap.
  void* (*workspace)(size_t bytes) = nullptr;
  void (*counter_add)(int64_t* counter, int64_t delta) = nullptr;  // *counter += delta

  void (*set_math_mode)(const MathMode& mode) = nullptr;
  MathMode (*math_mode)() = nullptr;
  uint64_t (*launch_count)() = nullptr;  // kernel launches since the process started

  StreamMark (*mark_stream)() = nullptr;
  double (*elapsed_ms)(StreamMark from, StreamMark to) = nullptr;  // after synchronize()
  void (*destroy_mark)(StreamMark mark) = nullptr;

  // CUDA graphs (engine/step_graph.h): the compute stream's work between capture_begin and
  // capture_end is recorded, not run, into a graph that graph_launch replays with the same
  // kernels, arguments and pointers. While a capture is open the synchronizing calls (copies to
  // or from the host, synchronize, free_device, stream marks, a workspace that would grow) throw,
  // as they fail a capture on a GPU. capture_abandon ends a failed capture and drops its work.
  // Null on the CPU.
  void (*capture_begin)() = nullptr;
  void* (*capture_end)() = nullptr;  // the executable graph
  void (*capture_abandon)() = nullptr;
  void (*graph_launch)(void* graph) = nullptr;
  void (*graph_destroy)(void* graph) = nullptr;
  int64_t (*graph_nodes)(void* graph) = nullptr;  // its kernels, copies and memsets

  // NVTX ranges in the "kdlab" domain and the profiler window of --profile-steps.
  void (*range_push)(const char* name) = nullptr;
  void (*range_pop)() = nullptr;
  void (*profiler_start)() = nullptr;
  void (*profiler_stop)() = nullptr;

  KernelTable<float> f32;
  KernelTable<double> f64;
  KernelTable<float> cudnn_f32;  // cuDNN's convolution and batchnorm (when has_cudnn)
  KernelTable<double> cudnn_f64;

  template <class T>
  const KernelTable<T>& kernels() const;
  template <class T>
  const KernelTable<T>& cudnn() const;
};
template <>
inline const KernelTable<float>& Backend::kernels<float>() const { return f32; }
template <>
inline const KernelTable<double>& Backend::kernels<double>() const { return f64; }
template <>
inline const KernelTable<float>& Backend::cudnn<float>() const { return cudnn_f32; }
template <>
inline const KernelTable<double>& Backend::cudnn<double>() const { return cudnn_f64; }

// The entry point a GPU backend library exports (extern "C", so dlsym finds it by this name).
// `host` is the CPU backend of the loading program: the emulated GPU forwards cuDNN to it.
using GpuBackendEntry = const Backend* (*)(const Backend* host);
constexpr const char* kGpuBackendEntry = "kdlab_gpu_backend";

// The backends (kernels/backend_loader.cpp).
const Backend& cpu_backend();
const Backend& ref_backend();  // the ref:: specification kernels on host memory (tests)
// The GPU backend: opened on first use from libkdlab_<name>.so beside the executable (or in
// $KDLAB_BACKEND_DIR), name from $KDLAB_GPU_BACKEND ("cuda" by default; "grid" for the emulated
// GPU); a program that links a backend statically uses that one. Null when it cannot be opened:
// gpu_backend_error() then says why (the library and dlerror's reason).
const Backend* gpu_backend();
std::string gpu_backend_error();
const Backend* gpu_backend_if_loaded();  // the GPU backend if it was opened already, else null
// Whether a GPU is worth looking for without opening any library: an NVIDIA driver is installed
// (/dev/nvidiactl), or $KDLAB_GPU_BACKEND names an emulator; false with KDLAB_DISABLE_CUDA set.
bool gpu_probably_present();
// A further symbol of the opened GPU library (data/ registers its device kernels there), or null.
void* gpu_backend_symbol(const char* name);

// The kernel, or an Error naming the backend and the kernel when the table has none.
template <class Fn>
Fn require(Fn fn, const Backend& b, const char* kernel) {
  if (!fn) throw Error(std::string("backend '") + b.name + "' has no kernel " + kernel);
  return fn;
}
#define KD_KERNEL(backend, T, name) \
  ::kd::require((backend).kernels<T>().name, (backend), #name)

}  // namespace kd
