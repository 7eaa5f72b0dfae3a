// Thread block clusters on the grid emulator (kernels/cuda_grid/cluster.h), with test kernels
// compiled like a .cu file: cluster.sync() across blocks, block_rank() and num_blocks(),
// distributed shared memory (map_shared_rank) giving each block its peers' partial sums, the
// launch checks (a cluster that does not divide the grid, more than 16 blocks), and the errors a
// broken cluster kernel must give instead of a hang: a block that exits while its peers wait in
// cluster.sync(), a block that fails while they wait (its own error is the one reported), and
// map_shared_rank of a rank past the cluster or of memory the emulator cannot map.
#include <gtest/gtest.h>

#include <cooperative_groups.h>

#include <string>
#include <vector>

#include "base/check.h"
#include "kernels/cuda/launch.cuh"
#include "tests/cuda_testing.h"

namespace {

namespace cg = cooperative_groups;
using kd::cuda_testing::DeviceArray;

using kd::cuda_testing::expect_cuda_error;

constexpr int kThreads = 64;

// Each block sums its kThreads inputs into its shared memory; after cluster.sync() every block
// adds its cluster's partial sums, read from the peers' shared memory in rank order. The second
// sync keeps each block's shared memory alive until every peer has read it, as CUDA requires.
__global__ void cluster_sum_kernel(const float* in, float* total, int* rank, int* blocks) {
  KD_DYNAMIC_SHARED(float, part);
  const cg::cluster_group cluster = cg::this_cluster();
  const int t = threadIdx.x;
  part[1 + t] = in[blockIdx.x * kThreads + t];
  __syncthreads();
  if (t == 0) {
    float s = 0;
    for (int i = 0; i < kThreads; ++i) s += part[1 + i];
    part[0] = s;
  }
  cluster.sync();
  if (t == 0) {
    float s = 0;
    for (unsigned r = 0; r < cluster.num_blocks(); ++r) s += *cluster.map_shared_rank(part, r);
    total[blockIdx.x] = s;
    rank[blockIdx.x] = int(cluster.block_rank());
    blocks[blockIdx.x] = int(cluster.num_blocks());
  }
  cluster.sync();
}

void check_cluster_sums(int grid, int cluster) {
  SCOPED_TRACE("grid " + std::to_string(grid) + ", clusters of " + std::to_string(cluster));
  std::vector<float> in(size_t(grid) * kThreads);
  for (size_t i = 0; i < in.size(); ++i) in[i] = float(i % 13) - 4.0f;
  DeviceArray<float> d_in(in), total{size_t(grid)};
  DeviceArray<int> rank{size_t(grid)}, blocks{size_t(grid)};
  KD_LAUNCH_CLUSTER(cluster_sum_kernel, unsigned(grid), kThreads, (kThreads + 1) * sizeof(float),
                    unsigned(cluster), d_in.get(), total.get(), rank.get(), blocks.get());
  const std::vector<float> got = total.host();
  const std::vector<int> got_rank = rank.host(), got_blocks = blocks.host();
  for (int b = 0; b < grid; ++b) {
    const int first = b / cluster * cluster;
    float want = 0;
    for (int r = 0; r < cluster; ++r) {
      float part = 0;
      for (int i = 0; i < kThreads; ++i) part += in[size_t((first + r) * kThreads + i)];
      want += part;
    }
    EXPECT_EQ(got[size_t(b)], want) << "block " << b;
    EXPECT_EQ(got_rank[size_t(b)], b % cluster) << "block " << b;
    EXPECT_EQ(got_blocks[size_t(b)], cluster) << "block " << b;
  }
}

TEST(GridCluster, BlocksOfAClusterReadEachOthersSharedMemoryAfterClusterSync) {
  check_cluster_sums(12, 4);
  check_cluster_sums(16, 16);  // the largest cluster sm_90 runs (non-portable size)
  check_cluster_sums(6, 1);    // a launch of one-block clusters: sync is a block barrier
}

TEST(GridCluster, TheClusterMustDivideTheGridAndHoldAtMostSixteenBlocks) {
  DeviceArray<float> in(size_t(32) * kThreads), total(32);
  DeviceArray<int> rank(32), blocks(32);
  const size_t shared = (kThreads + 1) * sizeof(float);
  expect_cuda_error(
      [&] {
        KD_LAUNCH_CLUSTER(cluster_sum_kernel, 10, kThreads, shared, 4, in.get(), total.get(),
                          rank.get(), blocks.get());
      },
      {"cluster_sum_kernel", "does not divide the grid"});
  expect_cuda_error(
      [&] {
        KD_LAUNCH_CLUSTER(cluster_sum_kernel, 32, kThreads, shared, 32, in.get(), total.get(),
                          rank.get(), blocks.get());
      },
      {"32 blocks per cluster exceed"});
}

__global__ void early_exit_kernel(int* out) {
  const cg::cluster_group cluster = cg::this_cluster();
  if (cluster.block_rank() == 1) return;  // never reaches the cluster barrier
  cluster.sync();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

TEST(GridCluster, ABlockThatExitsWhileItsPeersWaitIsAnErrorNotAHang) {
  DeviceArray<int> out(size_t(8) * 32);
  expect_cuda_error([&] { KD_LAUNCH_CLUSTER(early_exit_kernel, 8, 32, 0, 4, out.get()); },
                    {"early_exit_kernel", "exited without reaching the cluster.sync()",
                     "test_grid_cluster.cpp"});
}

__global__ void failing_peer_kernel(int* out) {
  const cg::cluster_group cluster = cg::this_cluster();
  if (cluster.block_rank() == 2 && threadIdx.x == 7) KD_CHECK(false, "device-side check");
  cluster.sync();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

TEST(GridCluster, AFailingBlockIsReportedNotThePeersItStopped) {
  DeviceArray<int> out(size_t(8) * 32);
  expect_cuda_error([&] { KD_LAUNCH_CLUSTER(failing_peer_kernel, 8, 32, 0, 4, out.get()); },
                    {"failing_peer_kernel", "block (2,0,0)", "thread 7", "device-side check"});
}

__global__ void map_past_cluster_kernel(int* out) {
  KD_DYNAMIC_SHARED(int, mine);
  const cg::cluster_group cluster = cg::this_cluster();
  mine[0] = 1;
  cluster.sync();
  out[blockIdx.x] = *cluster.map_shared_rank(mine, cluster.num_blocks());
  cluster.sync();
}

__global__ void map_static_shared_kernel(int* out) {
  __shared__ int mine[4];
  const cg::cluster_group cluster = cg::this_cluster();
  mine[0] = 1;
  cluster.sync();
  out[blockIdx.x] = *cluster.map_shared_rank(mine, 0);
  cluster.sync();
}

TEST(GridCluster, MapSharedRankChecksTheRankAndTheMemory) {
  DeviceArray<int> out(4);
  expect_cuda_error(
      [&] { KD_LAUNCH_CLUSTER(map_past_cluster_kernel, 4, 1, sizeof(int), 2, out.get()); },
      {"map_past_cluster_kernel", "map_shared_rank to block rank 2 of a cluster of 2 blocks"});
  expect_cuda_error(
      [&] { KD_LAUNCH_CLUSTER(map_static_shared_kernel, 4, 1, 0, 2, out.get()); },
      {"map_static_shared_kernel", "outside this block's dynamic shared memory"});
}

}  // namespace
