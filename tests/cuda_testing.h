// Helpers for the *Cuda* tests: skip cleanly without a usable GPU, and move raw arrays to and from
// the device so a CUDA kernel can be compared with its CPU twin (tests/kernel_testing.h has the
// random inputs and the comparisons). The kernels only exist in a CUDA build: test files guard
// their bodies with `#if KDLAB_HAVE_CUDA`.
#pragma once
#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

#include "kernels/check.h"
#include "kernels/cuda/runtime.h"
#if defined(KDLAB_EMULATED_CUDA)
#include "kernels/cuda_grid/schedule.h"
#endif

// First statement of every *Cuda* test.
#define KD_REQUIRE_CUDA()                                                         \
  do {                                                                            \
    if (!::kd::cuda::has_op_kernels() || ::kd::cuda::device_count() == 0)        \
      GTEST_SKIP() << "no usable CUDA device (none found, no CUDA build, or "     \
                      "KDLAB_DISABLE_CUDA set)";                                  \
  } while (0)

namespace kd {
namespace cuda_testing {

// True in the emulated-device build, where our kernels run on the CPU grid emulator.
#if defined(KDLAB_EMULATED_CUDA)
constexpr bool kEmulatedDevice = true;
#else
constexpr bool kEmulatedDevice = false;
#endif

// Whole-model tests issue thousands of launches. On the grid emulator each then runs once, in a
// seeded random thread order, instead of under the three-schedule check that every kernel test
// gets (forward, reverse, random, equal bytes); the kernels themselves are proven by those. On a
// GPU this does nothing.
class WholeModelSchedule {
 public:
  WholeModelSchedule() {}   // user-provided: a scope object, never "unused"
  ~WholeModelSchedule() {}
  WholeModelSchedule(const WholeModelSchedule&) = delete;
  WholeModelSchedule& operator=(const WholeModelSchedule&) = delete;

 private:
#if defined(KDLAB_EMULATED_CUDA)
  grid::ScheduleScope scope_{grid::Schedule::Random};
#endif
};

// An owning device array of n T, optionally filled from a host vector.
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    ptr_ = static_cast<T*>(cuda::malloc_device(bytes()));
    if (!ptr_) throw CudaError("DeviceArray: out of device memory");
    cuda::memset_device(ptr_, 0, bytes());
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    cuda::memcpy_host_to_device(ptr_, host.data(), bytes());
  }
  ~DeviceArray() {
    if (ptr_) cuda::free_device(ptr_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ > 0 ? n_ * sizeof(T) : sizeof(T); }
  std::vector<T> host() const {
    std::vector<T> out(n_);
    if (n_) cuda::memcpy_device_to_host(out.data(), ptr_, n_ * sizeof(T));
    return out;
  }

 private:
  size_t n_;
  T* ptr_ = nullptr;
};

}  // namespace cuda_testing
}  // namespace kd
