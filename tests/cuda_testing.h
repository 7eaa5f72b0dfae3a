// Helpers for the *Cuda* tests: skip cleanly without a usable GPU backend, reach its kernels and
// runtime through the backend table (kernels/backend.h), and move raw arrays to and from the
// device so a CUDA kernel can be compared with its CPU twin (tests/kernel_testing.h has the
// random inputs and the comparisons). The same test bodies run on a real GPU (libkdlab_cuda.so)
// and on the CPU grid emulator (KDLAB_GPU_BACKEND=grid, libkdlab_grid.so; ctest label "grid").
#pragma once
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "base/check.h"

// First statement of every *Cuda* test.
#define KD_REQUIRE_CUDA()                                                                  \
  do {                                                                                     \
    if (!::kd::cuda_testing::gpu_usable())                                                 \
      GTEST_SKIP() << "no usable GPU backend (" << ::kd::cuda_testing::why_not_usable()   \
                   << "); KDLAB_GPU_BACKEND=grid runs these tests on the CPU grid emulator"; \
  } while (0)

// First statement of the tests that need the emulated GPU itself (its guard, its host-side
// twins of device memory): they run under KDLAB_GPU_BACKEND=grid only.
#define KD_REQUIRE_EMULATED_GPU()                                                        \
  do {                                                                                   \
    if (!::kd::cuda_testing::gpu_usable() || !::kd::cuda_testing::emulated_device())     \
      GTEST_SKIP() << "needs the emulated GPU (KDLAB_GPU_BACKEND=grid)";                 \
  } while (0)

namespace kd {
namespace cuda_testing {

inline bool gpu_usable() {
  const Backend* b = gpu_backend();
  return b && b->device_count() > 0;
}
inline std::string why_not_usable() {
  const Backend* b = gpu_backend();
  return b ? std::string(b->name) + " backend: no device (or KDLAB_DISABLE_CUDA set)"
           : gpu_backend_error();
}

// The GPU backend (tests call this after KD_REQUIRE_CUDA) and its kernels.
inline const Backend& gpu() {
  const Backend* b = gpu_backend();
  if (!b) throw Error("no GPU backend: " + gpu_backend_error());
  return *b;
}
template <class T>
const KernelTable<T>& gpu_kernels() {
  return gpu().kernels<T>();
}
template <class T>
const KernelTable<T>& cudnn_kernels() {
  if (!gpu().has_cudnn) throw Error("the GPU backend has no cuDNN");
  return gpu().cudnn<T>();
}

// True on the emulated GPU, where our kernels run on the CPU grid emulator.
inline bool emulated_device() { return gpu_backend() && gpu_backend()->emulator != nullptr; }

// Whole-model tests issue thousands of launches. On the grid emulator each then runs once, in a
// seeded random thread order (schedule 3), instead of under the three-schedule check that every
// kernel test gets (forward, reverse, random, equal bytes); the kernels themselves are proven by
// those. On a GPU this does nothing.
class WholeModelSchedule {
 public:
  WholeModelSchedule() {
    if (emulated_device()) saved_ = gpu().emulator->swap_schedule(3);
  }
  ~WholeModelSchedule() {
    if (saved_ >= 0) gpu().emulator->swap_schedule(saved_);
  }
  WholeModelSchedule(const WholeModelSchedule&) = delete;
  WholeModelSchedule& operator=(const WholeModelSchedule&) = delete;

 private:
  int saved_ = -1;
};

// The GPU backend's MathMode for one scope (cuBLAS, cuDNN and our convolutions follow it).
class ScopedMathMode {
 public:
  ScopedMathMode(bool deterministic, bool tf32) : saved_(gpu().math_mode()) {
    MathMode m;
    m.deterministic = deterministic;
    m.tf32 = tf32;
    gpu().set_math_mode(m);
  }
  ~ScopedMathMode() { gpu().set_math_mode(saved_); }
  ScopedMathMode(const ScopedMathMode&) = delete;
  ScopedMathMode& operator=(const ScopedMathMode&) = delete;

 private:
  MathMode saved_;
};

// One of the CUDA kernels' A/B switches (kernels/cuda/env_switch.h: KDLAB_BN_CLUSTERS,
// KDLAB_CONV_1X1) set for a scope; the backend reads it at every call.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* v = std::getenv(name)) saved_ = v, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_.c_str(), saved_.c_str(), 1);
    else unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, saved_;
  bool had_ = false;
};

// An owning device array of n T, optionally filled from a host vector.
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    ptr_ = static_cast<T*>(gpu().malloc_device(bytes()));
    if (!ptr_) throw CudaError("DeviceArray: out of device memory");
    gpu().memset_device(ptr_, 0, bytes());
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    if (n_) gpu().copy_host_to_device(ptr_, host.data(), n_ * sizeof(T));
  }
  ~DeviceArray() {
    if (ptr_) gpu().free_device(ptr_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ > 0 ? n_ * sizeof(T) : sizeof(T); }
  std::vector<T> host() const {
    std::vector<T> out(n_);
    if (n_) gpu().copy_device_to_host(out.data(), ptr_, n_ * sizeof(T));
    return out;
  }

 private:
  size_t n_;
  T* ptr_ = nullptr;
};

// Runs `launch` and expects a CudaError whose message holds every one of `parts` (the emulator's
// checks: a broken kernel must fail with a message that says where and why).
template <class F>
void expect_cuda_error(F launch, const std::vector<std::string>& parts) {
  try {
    launch();
    ADD_FAILURE() << "no error; expected one mentioning '" << parts.front() << "'";
  } catch (const CudaError& e) {
    const std::string what = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(what.find(p), std::string::npos) << "'" << p << "' not in: " << what;
  }
}

}  // namespace cuda_testing
}  // namespace kd
