// A kernel with a planted shared-memory race, for the ThreadSanitizer build of the grid emulator
// (ctest grid-tsan/PlantedSharedMemoryRaceIsReported, via tests/expect_tsan_race.cmake): each
// thread writes its slot of a shared array and then, with the __syncthreads that should separate
// them missing, reads its neighbour's. The emulator must make TSan report the race, naming
// planted_race_kernel; a detector that reports nothing fails that test.
#include <cstdio>
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

}  // namespace

int main() {
  float* out = static_cast<float*>(kd::cuda::malloc_device(2 * kThreads * sizeof(float)));
  KD_LAUNCH(planted_race_kernel, 2, kThreads, 0, out);
  std::vector<float> host(2 * kThreads);
  kd::cuda::memcpy_device_to_host(host.data(), out, host.size() * sizeof(float));
  kd::cuda::free_device(out);
  std::printf("planted_race_kernel ran; out[0] = %g\n", host[0]);
  return 0;
}
