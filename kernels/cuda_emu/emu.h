// The emulated CUDA backend (KDLAB_EMULATED_CUDA builds only, kdlab_emu_tests): "device" memory
// is host memory and every cuda::/cudnn:: kernel runs its cpu:: twin, so the GPU plumbing of the
// engine (dispatch, device tensors, device-side losses, multi-tensor optimizer, per-row
// evaluation, device batches) runs in CI without a GPU, with the CPU's results bit for bit.
// Every device block is tracked: a kernel or copy given a pointer outside the live device blocks
// (a host pointer, a freed block) throws CudaError, and copies are bounds-checked.
// Guard mode (set_guard(true), or KDLAB_EMU_GUARD=1 in the environment) is stricter: device
// blocks are PROT_NONE pages except while an emulated kernel or copy that was handed a pointer
// into them runs, so host code that dereferences a device pointer (a crash on a real GPU), or a
// kernel touching a block it was not given, faults at once; a SIGSEGV handler names the address
// and prints a backtrace. Host-only header.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <vector>

namespace kd {
namespace cuda {

void count_launch();  // kernels/cuda/runtime.h

namespace emu {

// Switch guard mode for later allocations (blocks allocated before keep their kind). The
// default comes from KDLAB_EMU_GUARD at the first call into the emulated runtime.
void set_guard(bool on);
bool guard();

// Opens the device blocks holding `pointers` (nulls are skipped) for this scope's lifetime;
// scopes nest. Throws CudaError naming `what` if a pointer is in no live device block.
class DeviceAccess {
 public:
  DeviceAccess(const char* what, const std::vector<const void*>& pointers);
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;

 private:
  std::vector<const void*> opened_;  // block bases this scope opened
  const char* previous_ = nullptr;   // the enclosing scope's name, restored at the end
};

// Opens every guarded page of the device arena for this scope's lifetime, with one mprotect
// rather than one per block: the grid emulator runs our kernels inside one (their arguments hold
// device pointers in structs, too deep to list). Freed blocks are opened as well, so in guard mode
// a kernel's use of freed memory reads zeros rather than faulting; out-of-bounds writes are
// still caught by the redzones.
class AllDeviceMemory {
 public:
  explicit AllDeviceMemory(const char* what);
  ~AllDeviceMemory();
  AllDeviceMemory(const AllDeviceMemory&) = delete;
  AllDeviceMemory& operator=(const AllDeviceMemory&) = delete;

 private:
  const char* previous_ = nullptr;
};

// One emulated kernel launch: counts it (cuda::launch_count, as KD_LAUNCH does) and opens the
// blocks of its pointer arguments; the other arguments (sizes, geometry, scalars) are ignored.
// Every pointer argument must be a device pointer.
class Launch {
 public:
  template <class... Args>
  explicit Launch(const char* kernel, const Args&... args)
      : access_(kernel, std::vector<const void*>{pointer_or_null(args)...}) {
    count_launch();
  }

 private:
  template <class A>
  static const void* pointer_or_null(const A& a) {
    if constexpr (std::is_pointer_v<A>) return static_cast<const void*>(a);
    else return nullptr;
  }
  DeviceAccess access_;
};

// Every live device block, redzone included (the grid emulator's schedule check snapshots them).
struct DeviceSpan {
  void* base;
  size_t bytes;
};
std::vector<DeviceSpan> device_blocks();

// Throws CudaError naming `what` if anything wrote into the redzone of a device block: each block
// is followed by at least 64 bytes of 0x7F (reads past the end give 3.4e38 as a float, 1.4e306 as
// a double, 2139062143 as an int32: garbage no test can mistake for an answer). The grid
// emulator checks after every kernel.
void check_redzones(const char* what);

// True when ptr lies in a guarded device block (for tests of the guard itself).
bool is_guarded_device_pointer(const void* ptr);

}  // namespace emu
}  // namespace cuda
}  // namespace kd
