// The GPU backend's table (kernels/backend.h): our kernels (kernels/cuda/, registered at the end
// of each .cu file), cuDNN's convolution and batchnorm, and the runtime seam (runtime.h). This
// file is the entry point of libkdlab_cuda.so (nvcc) and, compiled by g++ for the CPU grid
// emulator, of libkdlab_grid.so, whose runtime is kernels/cuda_emu/ and whose cuDNN stand-ins
// run the host's CPU kernels.
#include "kernels/backend.h"
#include "kernels/cuda/runtime.h"
#if KDLAB_GRID_EMULATOR
#include "kernels/cuda_emu/emu.h"
#include "kernels/cuda_grid/schedule.h"
#endif

namespace kd {
namespace cuda {
#if KDLAB_GRID_EMULATOR
namespace emu {
extern const Backend* g_host_backend;  // kernels/cuda_emu/cudnn_emu.cpp
}
#endif
namespace {

template <class T>
void register_all(KernelTable<T>& t) {
#define KD_CALL_(fn) cuda::fn<T>(t);
  KD_HOST_REGISTRARS(KD_CALL_)
#undef KD_CALL_
  register_optim_multi<T>(t);
}

#if KDLAB_GRID_EMULATOR
int swap_schedule(int schedule) {
  grid::Settings s = grid::settings();
  const int previous = static_cast<int>(s.schedule);
  s.schedule = static_cast<grid::Schedule>(schedule);
  grid::set_settings(s);
  return previous;
}
uint64_t blocks_run() { return __atomic_load_n(&grid::counters().blocks, __ATOMIC_RELAXED); }
uint64_t mma_tiles_run() {
  return __atomic_load_n(&grid::counters().mma_tiles, __ATOMIC_RELAXED);
}
const EmulatorControls kEmulatorControls = {swap_schedule, emu::set_guard,
                                            emu::is_guarded_device_pointer, blocks_run,
                                            mma_tiles_run};
#endif

Backend make_backend(const Backend* host) {
  Backend b;
#if KDLAB_GRID_EMULATOR
  b.name = "grid";
  b.library = "libkdlab_grid.so";
  b.emulator = &kEmulatorControls;
  emu::g_host_backend = host;
  b.has_cudnn = true;
#else
  (void)host;
  b.name = "cuda";
  b.library = "libkdlab_cuda.so";
  b.has_cudnn = built_with_cudnn();
#endif
  b.grid_stride_block_cap = kGridStrideBlockCap;
  b.device_count = device_count;
  b.device_name = device_name;
  b.malloc_device = malloc_device;
  b.free_device = free_device;
  b.free_device_bytes = free_device_bytes;
  b.malloc_pinned = malloc_pinned;
  b.free_pinned = free_pinned;
  b.copy_host_to_device = memcpy_host_to_device;
  b.copy_host_to_device_async = memcpy_host_to_device_async;
  b.copy_device_to_host = memcpy_device_to_host;
  b.copy_device_to_host_async = memcpy_device_to_host_async;
  b.copy_device_to_device = memcpy_device_to_device;
  b.memset_device = memset_device;
  b.synchronize = synchronize;
  b.workspace = workspace;
  b.counter_add = counter_add;
  b.set_math_mode = set_math_mode;
  b.math_mode = math_mode;
  b.launch_count = launch_count;
  b.mark_stream = mark_stream;
  b.elapsed_ms = elapsed_ms;
  b.destroy_mark = destroy_mark;
  b.capture_begin = capture_begin;
  b.capture_end = capture_end;
  b.capture_abandon = capture_abandon;
  b.graph_launch = graph_launch;
  b.graph_destroy = graph_destroy;
  b.graph_nodes = graph_nodes;
  b.range_push = range_push;
  b.range_pop = range_pop;
  b.profiler_start = profiler_start;
  b.profiler_stop = profiler_stop;
  register_all(b.f32);
  register_all(b.f64);
#if KDLAB_HAVE_CUDNN || KDLAB_GRID_EMULATOR
  cudnn::register_conv2d(b.cudnn_f32);
  cudnn::register_conv2d(b.cudnn_f64);
  cudnn::register_batchnorm(b.cudnn_f32);
  cudnn::register_batchnorm(b.cudnn_f64);
#endif
  return b;
}

}  // namespace
}  // namespace cuda
}  // namespace kd

extern "C" __attribute__((visibility("default"))) const kd::Backend* kdlab_gpu_backend(
    const kd::Backend* host) {
  static const kd::Backend backend = kd::cuda::make_backend(host);
  return &backend;
}
