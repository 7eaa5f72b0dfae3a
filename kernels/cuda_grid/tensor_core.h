// The sm_80 warp-level instructions our kernels reach through kernels/cuda/tensor_core.cuh, on the
// grid emulator: TF32 rounding, the m16n8k8 TF32 mma.sync, and cp.async with its groups.
//  - cvt.rna.tf32.f32 is kd::tf32_round_bits (kernels/tf32.h).
//  - mma_m16n8k8_tf32: D = A*B + C for a 16x8x8 tile spread over the 32 lanes of a warp in the
//    PTX ISA's fragment layout (g = lane / 4, t = lane % 4):
//      a[0..3] = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]     (A is 16x8, row-major)
//      b[0..1] = B[t][g], B[t+4][g]                             (B is 8x8)
//      c[0..3] = C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1] (C, D are 16x8)
//    Operands are read as TF32 (their low 13 bits dropped, as the tensor core ignores them); the
//    8 products are exact in double and each D element is C plus their sum, rounded once to
//    float. A GPU's tensor core sums in its own order and precision, so results agree within
//    float rounding of the sum, not bit for bit. Every lane of the warp must take part: the lanes
//    meet at two __syncwarp(0xffffffff) around a per-warp exchange area.
//  - cp.async (cp_async_zfill, cp_async_commit, cp_async_wait): a copy is only queued on its
//    thread; cp.async.wait_group N performs every copy of the committed groups but the newest N.
//    Shared memory read between the copy and the wait holds the old bytes (the emulator poisons
//    dynamic shared memory; static shared memory keeps the previous block's data), so a missing
//    wait shows up as a wrong result. A thread that exits with copies still queued is an error.
// Host-only header, part of kernels/cuda_grid/grid.h.
#pragma once
#include <cstdint>
#include <cstring>

#include "base/check.h"
#include "kernels/cuda_grid/block.h"
#include "kernels/cuda_grid/builtins.h"
#include "kernels/tf32.h"

namespace kd {
namespace grid {

namespace detail {
inline double tf32_operand(uint32_t bits) {
  bits &= ~0x1fffu;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return double(f);
}
// Each warp's fragments, exchanged through this area: one per OS thread, like __shared__, and a
// block never leaves its OS thread.
struct MmaExchange {
  uint32_t a[32][4], b[32][2];
};
inline thread_local MmaExchange g_mma_exchange[32];
}  // namespace detail

inline void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::Thread* th = detail::g_current;
  KD_CHECK(th, "mma.sync called outside an emulated kernel");
  detail::MmaExchange& x = detail::g_mma_exchange[th->warp];
  const int lane = th->lane, g = lane / 4, t = lane % 4;
  for (int r = 0; r < 4; ++r) x.a[lane][r] = a[r];
  for (int r = 0; r < 2; ++r) x.b[lane][r] = b[r];
  __syncwarp(0xffffffffu, file, line);
  // A[row][k] sits in lane row%8*4 + k%4, register (row >= 8) + 2*(k >= 4); B[k][col] in lane
  // col*4 + k%4, register k >= 4.
  for (int r = 0; r < 4; ++r) {
    const int row = g + 8 * (r / 2), col = 2 * t + r % 2;
    double sum = 0;
    for (int k = 0; k < 8; ++k) {
      const double av = detail::tf32_operand(x.a[row % 8 * 4 + k % 4][(row >= 8) + 2 * (k >= 4)]);
      const double bv = detail::tf32_operand(x.b[col * 4 + k % 4][k >= 4]);
      sum += av * bv;
    }
    d[r] = float(double(d[r]) + sum);
  }
  if (lane == 0) __atomic_fetch_add(&counters().mma_tiles, 1, __ATOMIC_RELAXED);
  __syncwarp(0xffffffffu, file, line);  // no lane refills the area before every lane has read it
}

inline void cp_async_zfill(void* dst, const void* src, int bytes, bool valid) {
  detail::Thread* th = detail::g_current;
  KD_CHECK(th, "cp.async called outside an emulated kernel");
  th->async_copies.push_back({dst, src, bytes, valid ? bytes : 0, -1});
}
inline void cp_async_commit() {
  detail::Thread* th = detail::g_current;
  KD_CHECK(th, "cp.async.commit_group called outside an emulated kernel");
  for (detail::AsyncCopy& c : th->async_copies)
    if (c.group < 0) c.group = th->async_groups;
  ++th->async_groups;
}
// Completes every committed group but the newest `newest_pending` ones.
inline void cp_async_wait(int newest_pending) {
  detail::Thread* th = detail::g_current;
  KD_CHECK(th, "cp.async.wait_group called outside an emulated kernel");
  const int done_below = th->async_groups - newest_pending;
  std::vector<detail::AsyncCopy> kept;
  for (const detail::AsyncCopy& c : th->async_copies) {
    if (c.group < 0 || c.group >= done_below) {
      kept.push_back(c);
      continue;
    }
    std::memcpy(c.dst, c.src, size_t(c.src_bytes));
    std::memset(static_cast<char*>(c.dst) + c.src_bytes, 0, size_t(c.bytes - c.src_bytes));
  }
  th->async_copies.swap(kept);
}

}  // namespace grid
}  // namespace kd
