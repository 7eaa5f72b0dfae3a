// What every .cu file needs: the compute stream, the one way a kernel is launched, and grid
// sizing. Included by kernels/cuda/*.cu and data/cuda/*.cu, in both builds of them:
//  - nvcc: `kernel<<<grid, block, shmem, stream()>>>(args...)`, checked and counted;
//  - the grid emulator (KDLAB_GRID_EMULATOR, g++; kernels/cuda_grid/grid.h): the same kernel
//    source runs on the CPU with every thread a fiber, under the schedule check, with the
//    emulated device memory (kernels/cuda_emu/) opened for the kernel and its redzones checked
//    after it.
// Every launch goes through KD_LAUNCH, so grep finds every caller of a kernel.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "base/check.h"
#include "kernels/cuda/runtime.h"
#if KDLAB_GRID_EMULATOR
#include "kernels/cuda_emu/emu.h"
#endif

// KD_DYNAMIC_SHARED(T, name): T* name = the block's dynamic shared memory (16-byte aligned). The
// emulator defines its own (kernels/cuda_grid/builtins.h), poisoned at every block start.
#if !KDLAB_GRID_EMULATOR
#define KD_DYNAMIC_SHARED(T, name)                                     \
  extern __shared__ __align__(16) unsigned char kd_dynamic_shared_[]; \
  T* name = reinterpret_cast<T*>(kd_dynamic_shared_)
#endif

namespace kd {
namespace cuda {

#if KDLAB_GRID_EMULATOR
inline cudaStream_t stream() { return nullptr; }  // the emulator runs each launch at once
#else
cudaStream_t stream();  // the one compute stream (created on first use)
#endif

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
inline unsigned grid_for(int64_t n, int threads, int64_t cap = kGridStrideBlockCap) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > cap) blocks = cap;
  return static_cast<unsigned>(blocks);
}

struct LaunchSite {
  const char* kernel;
  const char* file;
  int line;
};

#if KDLAB_GRID_EMULATOR
inline std::vector<::kd::grid::Region> grid_device_regions() {
  std::vector<::kd::grid::Region> out;
  for (const emu::DeviceSpan& s : emu::device_blocks()) out.push_back({s.base, s.bytes});
  return out;
}

// Both launch forms on the emulator, in clusters of `cluster` blocks (1: none). Arguments by
// value, as a GPU copies them at the launch (or the capture).
template <class... Params, class... Args>
void emulated_launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                     size_t shmem, dim3 cluster, const Args&... args) {
  emu::stream_op([=] {
    const emu::AllDeviceMemory open(name);  // kernels see all device memory
    ::kd::grid::launch_cluster(name, &grid_device_regions, kernel, grid, block, shmem, cluster,
                               args...);
    emu::check_redzones(name);
  });
}
#endif

// kernel<<<grid, block, shmem>>>(args...) on the compute stream; use it through KD_LAUNCH.
template <class... Params, class... Args>
void launch(const LaunchSite& site, void (*kernel)(Params...), dim3 grid, dim3 block,
            size_t shmem, Args&&... args) {
#if KDLAB_GRID_EMULATOR
  emulated_launch(site.kernel, kernel, grid, block, shmem, dim3(1, 1, 1), args...);
#else
  kernel<<<grid, block, shmem, stream()>>>(std::forward<Args>(args)...);
#endif
  check_launch(site.kernel, site.file, site.line);
}

// The same in thread block clusters of `cluster` blocks along x (sm_90; at most 16, above 8
// with the non-portable size allowed): use it through KD_LAUNCH_CLUSTER. The grid's x is a
// multiple of `cluster`; the blocks of a cluster run together and meet in cluster.sync().
template <class... Params, class... Args>
void launch_cluster(const LaunchSite& site, void (*kernel)(Params...), dim3 grid, dim3 block,
                    size_t shmem, unsigned cluster, Args&&... args) {
#if KDLAB_GRID_EMULATOR
  emulated_launch(site.kernel, kernel, grid, block, shmem, dim3(cluster, 1, 1), args...);
#else
  if (cluster > 8) {
    const cudaError_t err = cudaFuncSetAttribute(
        reinterpret_cast<const void*>(kernel), cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (err != cudaSuccess)
      ::kd::detail::throw_library<::kd::CudaError>(site.kernel, cudaGetErrorString(err),
                                                   int(err), site.file, site.line);
  }
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeClusterDimension;
  attribute[0].val.clusterDim.x = cluster;
  attribute[0].val.clusterDim.y = 1;
  attribute[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shmem;
  config.stream = stream();
  config.attrs = attribute;
  config.numAttrs = 1;
  const cudaError_t err = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  if (err != cudaSuccess)
    ::kd::detail::throw_library<::kd::CudaError>(site.kernel, cudaGetErrorString(err), int(err),
                                                 site.file, site.line);
#endif
  check_launch(site.kernel, site.file, site.line);
}

}  // namespace cuda
}  // namespace kd

// KD_LAUNCH(kernel, grid, block, shmem, args...). A template kernel whose arguments hold a comma
// goes in parentheses: KD_LAUNCH((conv_gemm_kernel<T, P>), ...).
#define KD_LAUNCH(kernel, grid, block, shmem, ...)                                        \
  ::kd::cuda::launch(::kd::cuda::LaunchSite{#kernel, __FILE__, __LINE__}, kernel, grid, block, \
                     shmem, __VA_ARGS__)
// KD_LAUNCH_CLUSTER(kernel, grid, block, shmem, cluster, args...): clusters of `cluster` blocks.
#define KD_LAUNCH_CLUSTER(kernel, grid, block, shmem, cluster, ...)                          \
  ::kd::cuda::launch_cluster(::kd::cuda::LaunchSite{#kernel, __FILE__, __LINE__}, kernel, grid, \
                             block, shmem, cluster, __VA_ARGS__)
