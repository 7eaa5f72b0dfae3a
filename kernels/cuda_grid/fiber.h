// Fibers for the CUDA grid emulator: one per emulated CUDA thread, switched cooperatively on the
// OS thread that runs its block, by a six-register x86-64 context switch of our own (a few ns;
// swapcontext would make a signal-mask system call on every switch). The project builds for
// x86-64 only (-mavx2), so there is no other port. Stacks are mmap'ed with a PROT_NONE guard page
// below each, so a kernel that overflows its stack faults instead of corrupting its neighbour.
// Under ThreadSanitizer every fiber is also a TSan fiber (GCC's __tsan_create_fiber /
// __tsan_switch_to_fiber), switched WITHOUT synchronisation: happens-before between emulated
// threads comes only from barriers and __syncwarp (block.h), so a missing __syncthreads shows up
// as a race. Host-only header, part of kernels/cuda_grid/grid.h.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#if !defined(__x86_64__)
#error "kernels/cuda_grid: the fiber switch is written for x86-64"
#endif

#include "base/check.h"

#if defined(__SANITIZE_THREAD__)
#define KD_GRID_TSAN 1
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_set_fiber_name(void* fiber, const char* name);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
}
// The emulator's own bookkeeping is not kernel memory: TSan must not check it, only the kernels.
#define KD_GRID_NO_TSAN __attribute__((no_sanitize_thread, noinline))
#else
#define KD_GRID_TSAN 0
#define KD_GRID_NO_TSAN
#endif

// kd_grid_switch(void** save_sp, void* load_sp): pushes the callee-saved registers, stores rsp
// in *save_sp, loads load_sp, pops the target's registers and returns into it. A new fiber's
// stack is laid out so that the pops and the return land in kd_grid_fiber_start with the entry
// function in r13 and its argument in r12. Emitted into a COMDAT group, so the header can be
// included by any number of translation units.
asm(R"(
  .pushsection .text.kd_grid_switch,"axG",@progbits,kd_grid_switch,comdat
  .weak kd_grid_switch
  .type kd_grid_switch, @function
kd_grid_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size kd_grid_switch, .-kd_grid_switch
  .weak kd_grid_fiber_start
  .type kd_grid_fiber_start, @function
kd_grid_fiber_start:
  movq %r12, %rdi
  andq $-16, %rsp
  callq *%r13
  ud2
  .size kd_grid_fiber_start, .-kd_grid_fiber_start
  .popsection
)");
extern "C" void kd_grid_switch(void** save_sp, void* load_sp);
extern "C" void kd_grid_fiber_start();

namespace kd {
namespace grid {

#if defined(KD_GRID_STACK_BYTES)
constexpr size_t kStackBytes = KD_GRID_STACK_BYTES;
#elif KD_GRID_TSAN
constexpr size_t kStackBytes = 256 << 10;  // instrumented frames are larger
#else
constexpr size_t kStackBytes = 64 << 10;
#endif

// An execution context: the OS thread's own (the scheduler) or a fiber's.
struct Context {
  void* sp = nullptr;
#if KD_GRID_TSAN
  void* tsan = nullptr;
#endif
};

using FiberEntry = void (*)(void*);

// A pool of guarded stacks, grown on demand, owned by one OS thread and reused by every block it
// runs (a block needs one stack per thread, at most 1024).
class StackPool {
 public:
  StackPool() = default;
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;
  ~StackPool() {
    for (const Region& r : regions_) munmap(r.base, r.bytes);
  }

  // The top (highest address) of stack i; stacks 0..i exist afterwards.
  char* top(int i) {
    while (int(stacks_.size()) <= i) grow();
    return stacks_[size_t(i)];
  }

 private:
  struct Region {
    void* base;
    size_t bytes;
  };
  void grow() {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t per = kStackBytes + page;  // guard page below each stack
    const int count = 64;
    const size_t bytes = per * count;
    void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) throw std::bad_alloc();
    regions_.push_back({base, bytes});
    char* b = static_cast<char*>(base);
    for (int s = 0; s < count; ++s) {
      if (mprotect(b + size_t(s) * per, page, PROT_NONE) != 0) throw std::bad_alloc();
      stacks_.push_back(b + size_t(s) * per + per);
    }
  }
  std::vector<Region> regions_;
  std::vector<char*> stacks_;
};

// Prepares `fiber` to run entry(arg) on the stack whose top is `stack_top` at its first switch.
KD_GRID_NO_TSAN inline void make_fiber(Context& fiber, char* stack_top, FiberEntry entry,
                                       void* arg) {
  uintptr_t top = reinterpret_cast<uintptr_t>(stack_top) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;  // never used: kd_grid_fiber_start realigns and calls, and never returns
  *--sp = reinterpret_cast<void*>(&kd_grid_fiber_start);
  *--sp = nullptr;                           // rbp
  *--sp = nullptr;                           // rbx
  *--sp = arg;                               // r12
  *--sp = reinterpret_cast<void*>(entry);    // r13
  *--sp = nullptr;                           // r14
  *--sp = nullptr;                           // r15
  fiber.sp = sp;
#if KD_GRID_TSAN
  // One TSan fiber per stack slot, kept for the next block: creating one costs a system call or
  // two, and blocks of one OS thread are ordered one after the other anyway (block.h).
  if (!fiber.tsan) fiber.tsan = __tsan_create_fiber(0);
#endif
}

// While alive, TSan ignores the memory accesses of the current thread or fiber: the emulator's
// bookkeeping (thread slots, warp groups, errors), shared by the scheduler and the fibers, is not
// kernel memory. Kernel code never runs inside one.
class TsanIgnore {
 public:
#if KD_GRID_TSAN
  TsanIgnore() { __tsan_ignore_thread_begin(); }
  ~TsanIgnore() { __tsan_ignore_thread_end(); }
#else
  TsanIgnore() {}
  ~TsanIgnore() {}
#endif
  TsanIgnore(const TsanIgnore&) = delete;
  TsanIgnore& operator=(const TsanIgnore&) = delete;
};

// The scheduler's own context: on TSan, the OS thread's current fiber.
KD_GRID_NO_TSAN inline void init_scheduler_context(Context& self) {
#if KD_GRID_TSAN
  self.tsan = __tsan_get_current_fiber();
#else
  (void)self;
#endif
}

// Saves the running context into `from` and resumes `to`. Without synchronisation under TSan.
KD_GRID_NO_TSAN inline void switch_to(Context& from, Context& to) {
#if KD_GRID_TSAN
  __tsan_switch_to_fiber(to.tsan, 1 /* __tsan_switch_to_fiber_no_sync */);
#endif
  kd_grid_switch(&from.sp, to.sp);
}

}  // namespace grid
}  // namespace kd
