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
#include <functional>
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

// Stream capture (CUDA graphs, runtime.h's capture_begin) on the emulated device. Emulated work
// runs when it is issued, except while a capture is open: then each stream operation (a grid
// launch, a copy or memset between device blocks, an emulated cuBLAS or cuDNN call) is recorded
// by stream_op, with its arguments by value, and graph_launch runs the recording in order. The
// launch counter counts each operation once, when it is issued (captured), as on a GPU.
// forbid_in_capture throws CudaError naming `what` for the calls a GPU refuses during a capture
// (host copies, synchronize, cudaFree, events).
bool capturing();
void record(std::function<void()> op);
void forbid_in_capture(const char* what);
template <class F>
void stream_op(F&& op) {
  if (capturing()) record(std::function<void()>(std::forward<F>(op)));
  else op();
}

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
