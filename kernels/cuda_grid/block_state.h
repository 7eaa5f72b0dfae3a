// The state of an emulated thread block (block.h's BlockRunner runs it): CUDA's vector types
// and built-in variables, the launch job, the emulator's counters, and each thread's record (its
// fiber, what it waits in, its warp-collective operands, its queued cp.async copies). Host-only
// header, part of kernels/cuda_grid/grid.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

#include "kernels/cuda_grid/fiber.h"

// CUDA's vector types and built-in variables. The built-ins are per OS thread: the scheduler
// writes them before it resumes a fiber, and a block never leaves its OS thread.
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
constexpr int warpSize = 32;

namespace kd {
namespace grid {

enum class Order { Forward, Reverse, Random };
inline const char* order_name(Order o) {
  return o == Order::Forward ? "forward" : o == Order::Reverse ? "reverse" : "random";
}

enum class WarpOp : uint8_t { Shfl, ShflUp, ShflDown, ShflXor, Ballot, Any, All, SyncWarp };
inline const char* warp_op_name(WarpOp op) {
  switch (op) {
    case WarpOp::Shfl: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::All: return "__all_sync";
    case WarpOp::SyncWarp: return "__syncwarp";
  }
  return "?";
}

// The kernel to run: invoke(args) calls it with the launch's arguments.
struct KernelBody {
  void (*invoke)(const void* args) = nullptr;
  const void* args = nullptr;
};

struct BlockJob {
  const char* kernel = "";
  dim3 grid, block;
  dim3 cluster;  // blocks per cluster in x, y, z (1, 1, 1: no clusters)
  size_t dynamic_shared = 0;
  KernelBody body;
  Order order = Order::Forward;
  uint64_t seed = 0;
};

// Emulator counters, summed over OS threads (for the speed report and tests).
struct Counters {
  uint64_t launches = 0, blocks = 0, threads = 0, switches = 0;
  uint64_t mma_tiles = 0;  // warp-wide mma.sync instructions (tensor_core.h), one per warp
};
inline Counters& counters() {
  static Counters c;
  return c;
}

namespace detail {

enum class State : uint8_t { Runnable, AtBarrier, AtWarp, Exited, Failed };

class BlockRunner;

// A cp.async copy issued and not yet done (tensor_core.h): it lands in shared memory only when a
// cp.async.wait_group covers its group, so a read before the wait sees the old bytes.
struct AsyncCopy {
  void* dst;
  const void* src;
  int bytes, src_bytes;  // src_bytes < bytes: the rest is zero-filled
  int group;             // -1 until cp.async.commit_group closes it
};

struct Thread {
  Context ctx;
  BlockRunner* runner = nullptr;
  State state = State::Runnable;
  bool started = false;  // has run at least once
  bool abort = false;    // its block failed: release and stop at the next resume
  int tid = 0, warp = 0, lane = 0;
  uint3 idx{0, 0, 0};
  const char* file = "";  // call site of the barrier or warp operation it waits in
  int line = 0;
  bool cluster_barrier = false;  // the barrier it waits in is cluster.sync()
  WarpOp op = WarpOp::Shfl;
  unsigned mask = 0;
  uint64_t value = 0;  // the lane's contribution (raw bits, or the vote predicate)
  int arg = 0;         // source lane, delta or lane mask
  int width = 32;
  uint64_t result = 0;
  std::exception_ptr error;
  std::vector<AsyncCopy> async_copies;  // issued, not yet done (oldest first)
  int async_groups = 0;                 // groups committed so far
};

struct WarpGroup {  // a collective some lanes of one warp wait in
  WarpOp op;
  unsigned mask, arrived;
};

inline thread_local Thread* g_current = nullptr;

inline uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace detail
}  // namespace grid
}  // namespace kd
