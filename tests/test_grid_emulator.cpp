// The grid emulator's own semantics (kernels/cuda_grid/), with test kernels compiled like a .cu
// file: built-in indices, shared memory per block, barriers, the warp shuffles and votes with
// widths and partial masks, atomics across blocks, dynamic shared memory, launch limits, and
// every error a broken kernel must produce instead of a hang or a silent wrong answer: a barrier
// some threads skip or meet at another line, a mask naming a lane that exited or does not exist,
// a shuffle reading outside its mask, a deadlock, a write past the end of a device array, and a
// result that depends on the thread schedule (a missing __syncthreads).
#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "base/check.h"
#include "kernels/cuda/launch.cuh"
#include "tests/cuda_testing.h"

namespace {

#if defined(KDLAB_GRID_TSAN_BUILD)
// The ThreadSanitizer binary: the CPU twins' OpenMP and OpenBLAS threads synchronise in ways TSan
// cannot see (futexes in uninstrumented libraries), so they run single-threaded there.
const bool g_single_threaded_twins = [] {
  omp_set_num_threads(1);
  openblas_set_num_threads(1);
  return true;
}();
#endif

using kd::cuda_testing::DeviceArray;
using kd::grid::Schedule;
using kd::grid::ScheduleScope;

using kd::cuda_testing::expect_cuda_error;

__global__ void index_kernel(int* out) {
  const unsigned bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned per_block = blockDim.x * blockDim.y * blockDim.z;
  out[bx * per_block + tx] = int(bx * 1000 + tx);
}

TEST(GridEmulator, BuiltInIndicesCoverA3dGridOf3dBlocks) {
  const dim3 grid(3, 2, 2), block(4, 3, 5);
  const int total = 12 * 60;
  DeviceArray<int> out(std::vector<int>(total, -1));
  KD_LAUNCH(index_kernel, grid, block, 0, out.get());
  const std::vector<int> got = out.host();
  for (int b = 0; b < 12; ++b)
    for (int t = 0; t < 60; ++t) ASSERT_EQ(got[size_t(b * 60 + t)], b * 1000 + t);
}

// Block sum through shared memory with a barrier per halving step.
template <int kThreads>
__global__ void block_sum_kernel(const float* in, float* out) {
  __shared__ float part[kThreads];
  const int t = threadIdx.x;
  part[t] = in[blockIdx.x * kThreads + t];
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (t < half) part[t] += part[t + half];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = part[0];
}

TEST(GridEmulator, SharedMemoryIsPerBlockAndBarriersOrderIt) {
  constexpr int kThreads = 256, kBlocks = 37;
  std::vector<float> in(kThreads * kBlocks);
  for (size_t i = 0; i < in.size(); ++i) in[i] = float(i % 17);
  DeviceArray<float> d_in(in), d_out(kBlocks);
  KD_LAUNCH(block_sum_kernel<kThreads>, kBlocks, kThreads, 0, d_in.get(), d_out.get());
  const std::vector<float> got = d_out.host();
  for (int b = 0; b < kBlocks; ++b) {
    float want = 0;
    for (int t = 0; t < kThreads; ++t) want += in[size_t(b * kThreads + t)];
    EXPECT_EQ(got[size_t(b)], want) << "block " << b;
  }
}

// The same reduction without the barrier after the stores: the first reads race the stores.
template <int kThreads>
__global__ void missing_barrier_kernel(const float* in, float* out) {
  __shared__ float part[kThreads];
  const int t = threadIdx.x;
  part[t] = in[blockIdx.x * kThreads + t];
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (t < half) part[t] += part[t + half];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = part[0];
}

// Under ThreadSanitizer this race is reported as such instead (and fails the run): that build
// proves the same point with tests/grid_planted_race.cpp.
#if !defined(KDLAB_GRID_TSAN_BUILD)
TEST(GridEmulator, AMissingBarrierFailsTheScheduleCheck) {
  constexpr int kThreads = 64;
  std::vector<float> in(kThreads * 4);
  for (size_t i = 0; i < in.size(); ++i) in[i] = float(i);
  DeviceArray<float> d_in(in), d_out(4);
  ScheduleScope all(Schedule::All);
  expect_cuda_error(
      [&] {
        KD_LAUNCH(missing_barrier_kernel<kThreads>, 4, kThreads, 0, d_in.get(), d_out.get());
      },
      {"missing_barrier_kernel", "schedules wrote different bytes"});
}
#endif

__global__ void skipped_barrier_kernel(int* out) {
  if (threadIdx.x >= 40) return;  // threads 40.. never reach the barrier
  __syncthreads();
  out[threadIdx.x] = 1;
}

TEST(GridEmulator, ABarrierThatSomeThreadsSkipIsAnError) {
  DeviceArray<int> out(64);
  expect_cuda_error([&] { KD_LAUNCH(skipped_barrier_kernel, 1, 64, 0, out.get()); },
                    {"skipped_barrier_kernel", "block (0,0,0)", "exited without reaching",
                     "test_grid_emulator.cpp"});
}

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

TEST(GridEmulator, BarriersAtTwoLinesAreAnError) {
  DeviceArray<int> out(32);
  expect_cuda_error([&] { KD_LAUNCH(divergent_barrier_kernel, 1, 32, 0, out.get()); },
                    {"divergent_barrier_kernel", "divergent code"});
}

// Every shuffle flavour at width 32 and at a narrower width, plus the votes.
__global__ void shuffle_kernel(int width, int* out) {
  const int lane = int(threadIdx.x % 32);
  const unsigned full = 0xffffffffu;
  int* o = out + threadIdx.x * 7;
  o[0] = __shfl_sync(full, lane * 10, 3, width);
  o[1] = __shfl_up_sync(full, lane * 10, 2, width);
  o[2] = __shfl_down_sync(full, lane * 10, 5, width);
  o[3] = __shfl_xor_sync(full, lane * 10, 6, width);
  o[4] = int(__ballot_sync(full, lane % 3 == 0));
  o[5] = __any_sync(full, lane == 17);
  o[6] = __all_sync(full, lane < 31);
}

TEST(GridEmulator, ShufflesAndVotesFollowCuda) {
  for (int width : {32, 8}) {
    DeviceArray<int> out(64 * 7);
    KD_LAUNCH(shuffle_kernel, 1, 64, 0, width, out.get());
    const std::vector<int> got = out.host();
    unsigned ballot = 0;
    for (int l = 0; l < 32; l += 3) ballot |= 1u << l;
    for (int t = 0; t < 64; ++t) {
      const int lane = t % 32, seg = lane & ~(width - 1), in_seg = lane & (width - 1);
      const int* o = got.data() + t * 7;
      const std::string at = "thread " + std::to_string(t) + " width " + std::to_string(width);
      EXPECT_EQ(o[0], (seg + 3 % width) * 10) << at;
      EXPECT_EQ(o[1], (in_seg >= 2 ? lane - 2 : lane) * 10) << at;
      EXPECT_EQ(o[2], (in_seg + 5 < width ? lane + 5 : lane) * 10) << at;
      const int x = lane ^ 6;
      EXPECT_EQ(o[3], (x < seg + width ? x : lane) * 10) << at;
      EXPECT_EQ(unsigned(o[4]), ballot) << at;
      EXPECT_EQ(o[5], 1) << at;
      EXPECT_EQ(o[6], 0) << at;
    }
  }
}

// Lanes 0..15 and 16..31 shuffle in two disjoint groups at the same time.
__global__ void split_mask_kernel(double* out) {
  const int lane = int(threadIdx.x);
  const unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  double v = lane;
  for (int offset = 8; offset > 0; offset /= 2) v += __shfl_xor_sync(mask, v, offset);
  __syncwarp();
  out[lane] = v;
}

TEST(GridEmulator, DisjointMasksShuffleIndependently) {
  DeviceArray<double> out(32);
  KD_LAUNCH(split_mask_kernel, 1, 32, 0, out.get());
  const std::vector<double> got = out.host();
  for (int l = 0; l < 32; ++l) EXPECT_EQ(got[size_t(l)], l < 16 ? 120.0 : 376.0) << "lane " << l;
}

__global__ void exited_lane_kernel(float* out) {
  if (threadIdx.x == 7) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1.0f, 1);
}

TEST(GridEmulator, AMaskNamingAnExitedLaneIsAnErrorNotAHang) {
  DeviceArray<float> out(32);
  expect_cuda_error([&] { KD_LAUNCH(exited_lane_kernel, 1, 32, 0, out.get()); },
                    {"exited_lane_kernel", "__shfl_down_sync", "lane 7"});
}

__global__ void partial_warp_kernel(float* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 2.0f, 1);
}

TEST(GridEmulator, AFullMaskInAPartialWarpIsAnError) {
  DeviceArray<float> out(48);
  expect_cuda_error([&] { KD_LAUNCH(partial_warp_kernel, 1, 48, 0, out.get()); },
                    {"partial_warp_kernel", "past the end of this partial warp of 16"});
}

__global__ void outside_mask_kernel(int* out) {
  if (threadIdx.x < 8) out[threadIdx.x] = __shfl_down_sync(0xffu, int(threadIdx.x), 4);
}

TEST(GridEmulator, AShuffleReadingOutsideItsMaskIsAnError) {
  DeviceArray<int> out(32);
  expect_cuda_error([&] { KD_LAUNCH(outside_mask_kernel, 1, 32, 0, out.get()); },
                    {"outside_mask_kernel", "not in the mask 0xff"});
}

__global__ void deadlock_kernel(int* out) {
  if (threadIdx.x == 5) {
    __syncthreads();
  } else {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
    __syncthreads();
  }
}

TEST(GridEmulator, ADeadlockIsReportedWithWhoWaitsWhere) {
  DeviceArray<int> out(32);
  expect_cuda_error([&] { KD_LAUNCH(deadlock_kernel, 1, 32, 0, out.get()); },
                    {"deadlock_kernel", "deadlock", "__shfl_sync", "lane 5 (in __syncthreads"});
}

__global__ void atomic_count_kernel(unsigned long long* count, double* sum) {
  atomicAdd(count, 1ull);
  atomicAdd(sum, 0.5);
}

TEST(GridEmulator, AtomicsAreExactAcrossBlocks) {
  DeviceArray<unsigned long long> count(1);
  DeviceArray<double> sum(1);
  ScheduleScope one(Schedule::Random);
  KD_LAUNCH(atomic_count_kernel, 300, 128, 0, count.get(), sum.get());
  EXPECT_EQ(count.host()[0], 300ull * 128);
  EXPECT_EQ(sum.host()[0], 300.0 * 128 * 0.5);
}

__global__ void dynamic_shared_kernel(float* out) {
  KD_DYNAMIC_SHARED(float, buf);
  out[blockIdx.x * 64 + threadIdx.x] = buf[threadIdx.x + 64];  // never written: poison
  buf[threadIdx.x] = float(blockIdx.x);
  __syncthreads();
  out[128 + blockIdx.x * 64 + threadIdx.x] = buf[63 - threadIdx.x];
}

TEST(GridEmulator, DynamicSharedMemoryIsPoisonedPerBlock) {
  DeviceArray<float> out(256);
  KD_LAUNCH(dynamic_shared_kernel, 2, 64, 128 * sizeof(float), out.get());
  const std::vector<float> got = out.host();
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 64; ++t) {
      EXPECT_TRUE(std::isnan(got[size_t(b * 64 + t)])) << "uninitialised read, block " << b;
      EXPECT_EQ(got[size_t(128 + b * 64 + t)], float(b));
    }
}

TEST(GridEmulator, LaunchLimitsAreCheckedLikeAGpu) {
  DeviceArray<float> out(64);
  expect_cuda_error([&] { KD_LAUNCH(partial_warp_kernel, 1, 1025, 0, out.get()); },
                    {"1025 threads per block exceed the limit of 1024"});
  expect_cuda_error([&] { KD_LAUNCH(partial_warp_kernel, 1, dim3(1, 1, 65), 0, out.get()); },
                    {"exceeds the limits"});
  expect_cuda_error([&] { KD_LAUNCH(partial_warp_kernel, 0, 32, 0, out.get()); },
                    {"empty launch grid"});
  expect_cuda_error([&] { KD_LAUNCH(dynamic_shared_kernel, 1, 64, 49 * 1024, out.get()); },
                    {"dynamic shared memory exceed the 48 KiB limit"});
}

__global__ void off_by_one_kernel(int n, float* out) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i <= n) out[i] = 1.0f;  // should be i < n
}

TEST(GridEmulator, AWritePastTheEndOfADeviceArrayIsCaught) {
  DeviceArray<float> out(100);
  expect_cuda_error([&] { KD_LAUNCH(off_by_one_kernel, 1, 128, 0, 100, out.get()); },
                    {"off_by_one_kernel", "wrote past the end of a device block of 400 bytes"});
}

__global__ void read_past_end_kernel(const float* in, float* out) { out[0] = in[4]; }

TEST(GridEmulator, AReadPastTheEndGivesAHugeValue) {
  DeviceArray<float> in(std::vector<float>{1, 2, 3, 4}), out(1);
  KD_LAUNCH(read_past_end_kernel, 1, 1, 0, in.get(), out.get());
  EXPECT_GT(out.host()[0], 3e38f);
}

// The redzone must also see a write past the end that adds to what it read there.
__global__ void accumulate_past_end_kernel(int n, const float* in, float* out) {
  const int i = int(threadIdx.x);
  if (i <= n) out[i] += in[i] / 7.0f;  // should be i < n
}

TEST(GridEmulator, AnAccumulatingWritePastTheEndIsCaught) {
  DeviceArray<float> in(std::vector<float>(5, 1.0f)), out(5);
  expect_cuda_error([&] { KD_LAUNCH(accumulate_past_end_kernel, 1, 32, 0, 5, in.get(), out.get()); },
                    {"accumulate_past_end_kernel", "wrote past the end"});
}

__global__ void throwing_kernel(int* out) {
  if (threadIdx.x == 3) KD_CHECK(false, "device-side check");
  out[threadIdx.x] = 1;
}

TEST(GridEmulator, AnExceptionInDeviceCodeNamesTheThread) {
  DeviceArray<int> out(8);
  expect_cuda_error([&] { KD_LAUNCH(throwing_kernel, 1, 8, 0, out.get()); },
                    {"throwing_kernel", "thread 3", "device-side check"});
}

// Every schedule gives the same bits for a correct kernel, and each order really differs: a
// kernel that records the order threads start in sees forward, reverse and a permutation.
__global__ void arrival_order_kernel(int* ticket, int* order) {
  order[threadIdx.x] = atomicAdd(ticket, 1);
}

TEST(GridEmulator, SchedulesRunThreadsInTheirOrder) {
  for (Schedule s : {Schedule::Forward, Schedule::Reverse, Schedule::Random}) {
    ScheduleScope scope(s);
    DeviceArray<int> ticket(1), order(64);
    KD_LAUNCH(arrival_order_kernel, 1, 64, 0, ticket.get(), order.get());
    const std::vector<int> got = order.host();
    int forward = 0, reverse = 0;
    for (int t = 0; t < 64; ++t) {
      forward += got[size_t(t)] == t;
      reverse += got[size_t(t)] == 63 - t;
    }
    const bool right = s == Schedule::Forward   ? forward == 64
                       : s == Schedule::Reverse ? reverse == 64
                                                : forward < 64 && reverse < 64;
    EXPECT_TRUE(right) << "schedule " << int(s) << ": " << forward << " threads in forward order, "
                       << reverse << " in reverse order";
  }
}

}  // namespace
