// A kernel with a planted shared-memory race, for the ThreadSanitizer build of the grid emulator
// (ctest grid-tsan/PlantedSharedMemoryRaceIsReported, via tests/expect_tsan_race.cmake): each
// thread writes its slot of a shared array and then, with the __syncthreads that should separate
// them missing, reads its neighbour's. The emulator must make TSan report the race, naming
// planted_race_kernel; a detector that reports nothing fails that test. With the argument
// `cluster` it runs planted_cluster_race_kernel instead (grid-tsan/PlantedClusterRaceIsReported):
// each block of a cluster writes its dynamic shared memory and reads a peer's with the
// cluster.sync() that should separate them missing.
#include <cooperative_groups.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/runtime.h"

namespace {

constexpr int kThreads = 64;

__global__ void planted_race_kernel(float* out) {
  __shared__ float slot[kThreads];
  const int t = threadIdx.x;
  slot[t] = float(t);
  // The barrier belongs here.
  out[blockIdx.x * kThreads + t] = slot[(t + 1) % kThreads];
}

__global__ void planted_cluster_race_kernel(float* out) {
  KD_DYNAMIC_SHARED(float, slot);
  const cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
  const int t = threadIdx.x;
  slot[t] = float(t);
  // The cluster.sync() belongs here.
  const unsigned peer = (cluster.block_rank() + 1) % cluster.num_blocks();
  out[blockIdx.x * kThreads + t] = cluster.map_shared_rank(slot, peer)[t];
  cluster.sync();  // no block leaves while a peer may read it
}

}  // namespace

int main(int argc, char** argv) {
  float* out = static_cast<float*>(kd::cuda::malloc_device(2 * kThreads * sizeof(float)));
  if (argc > 1 && std::strcmp(argv[1], "cluster") == 0)
    KD_LAUNCH_CLUSTER(planted_cluster_race_kernel, 2, kThreads, kThreads * sizeof(float), 2, out);
  else
    KD_LAUNCH(planted_race_kernel, 2, kThreads, 0, out);
  std::vector<float> host(2 * kThreads);
  kd::cuda::memcpy_device_to_host(host.data(), out, host.size() * sizeof(float));
  kd::cuda::free_device(out);
  std::printf("the planted kernel ran; out[0] = %g\n", host[0]);
  return 0;
}
