// The caching allocator, on the host and (in *Cuda* tests) on the device: a freed block is handed
// out again for the same size class, the out-of-memory path releases the cache and retries once
// before an error that states requested, free and cached bytes (an artificial limit stands in
// for a full device), and 1000 training steps leave exactly the memory they started with.
#include <gtest/gtest.h>

#include <string>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "models/classifier.h"
#include "tests/cuda_testing.h"

namespace kd {
namespace {

// A private allocator over the device's raw calls, so limits and statistics are the test's own.
CachingAllocator make_allocator(Device device) {
  if (device.is_cuda())
    return CachingAllocator("cuda-test", cuda_testing::gpu().malloc_device, cuda_testing::gpu().free_device,
                            cuda_testing::gpu().free_device_bytes);
  return CachingAllocator(
      "cpu-test", [](size_t n) { return std::malloc(n); }, [](void* p) { std::free(p); }, nullptr);
}

void check_reuse(Device device) {
  CachingAllocator a = make_allocator(device);
  void* p = a.allocate(1000);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(a.in_use_bytes(), CachingAllocator::round_size(1000));
  a.deallocate(p, 1000);
  EXPECT_EQ(a.in_use_bytes(), 0u);
  EXPECT_EQ(a.cached_bytes(), CachingAllocator::round_size(1000));
  void* q = a.allocate(900);  // same 1024-byte class
  EXPECT_EQ(q, p) << "a cached block of the same size class must be reused";
  EXPECT_EQ(a.cached_bytes(), 0u);
  void* r = a.allocate(5000);  // another class: a fresh block
  EXPECT_NE(r, p);
  a.deallocate(q, 900);
  a.deallocate(r, 5000);
  a.release_cache();
  EXPECT_EQ(a.cached_bytes(), 0u);
}

void check_out_of_memory(Device device) {
  CachingAllocator a = make_allocator(device);
  a.set_limit(64 << 10);
  void* big = a.allocate(40 << 10);
  a.deallocate(big, 40 << 10);  // cached: 40 KiB
  // 40 KiB cached + 30 KiB requested exceeds 64 KiB: the cache goes and the retry succeeds.
  void* other = a.allocate(30 << 10);
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(a.cached_bytes(), 0u) << "the cache must be released before the retry";
  // 30 KiB in use + 40 KiB requested: no cache to release, so the error comes.
  try {
    a.allocate(40 << 10);
    FAIL() << "allocation past the limit succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("requested 40960 bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("30720 in use"), std::string::npos) << msg;
    EXPECT_NE(msg.find("free"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cached"), std::string::npos) << msg;
  }
  a.deallocate(other, 30 << 10);
}

// Device memory in use before and after 1000 steps of a small model: no step may leak a block.
void check_no_leak(Device device, int steps) {
  CachingAllocator& alloc = CachingAllocator::for_device(device);
  auto model = models::make_model("lenet5", 10, 1, 1);
  model->to(device);
  SgdParams h;
  h.lr = 0.01, h.momentum = 0.9;
  Sgd sgd(model->parameters(), h);
  Tensor x = Tensor::full({8, 1, 28, 28}, 0.5).to(device);
  Tensor y = Tensor::zeros({8}, DType::I32).to(device);
  auto step = [&] {
    Tensor loss = ops::cross_entropy(model->forward(x), y);
    sgd.zero_grad();
    backward(loss);
    sgd.step();
  };
  step();  // gradients and momentum buffers exist from here on
  step();  // and the gradients have moved into the optimizer's arena (engine/optim.h)
  const size_t in_use = alloc.in_use_bytes();
  for (int i = 0; i < steps; ++i) step();
  EXPECT_EQ(alloc.in_use_bytes(), in_use) << steps << " steps changed the memory in use";
  EXPECT_EQ(tape_size(), 0u);
}

TEST(Allocator, ReusesFreedBlockOfSameSizeClass) { check_reuse(Device::cpu()); }
TEST(Allocator, OutOfMemoryReleasesCacheRetriesOnceThenExplains) {
  check_out_of_memory(Device::cpu());
}
TEST(Allocator, ThousandTrainingStepsLeakNothing) { check_no_leak(Device::cpu(), 1000); }

TEST(CudaAllocator, ReusesFreedBlockOfSameSizeClass) {
  KD_REQUIRE_CUDA();
  check_reuse(Device::cuda());
}
TEST(CudaAllocator, OutOfMemoryReleasesCacheRetriesOnceThenExplains) {
  KD_REQUIRE_CUDA();
  check_out_of_memory(Device::cuda());
}
TEST(CudaAllocator, ThousandTrainingStepsLeakNothing) {
  KD_REQUIRE_CUDA();
  // Our kernels on the CPU grid emulator take ~0.15 s a step: 100 steps there, 1000 on a GPU.
  cuda_testing::WholeModelSchedule schedule;
  check_no_leak(Device::cuda(), cuda_testing::emulated_device() ? 100 : 1000);
}

}  // namespace
}  // namespace kd
