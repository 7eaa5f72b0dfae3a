// The tensor-core variant of the implicit-GEMM block program (kernels/cuda/conv2d_block.h): the
// same 64x64x16 tiles, index maps, loads and epilogue, with the multiply done by TF32 mma.sync
// m16n8k8 (kernels/cuda/tensor_core.cuh) instead of per-thread FMAs. Host-testable like the rest
// of the block program (tests/test_conv_gather.cpp runs it on the host).
//  - Warps: the 8 warps of a block tile the 64x64 output 2 (rows) x 4 (columns); each warp owns a
//    32x16 block = 2 x 2 mma tiles of 16x8. A lane's 16 accumulators are then a 4x4 grid of
//    rows {g, g+8, g+16, g+24} and columns {2t, 2t+1, 8+2t, 9+2t} of its warp block (g = lane/4,
//    t = lane%4): MmaLayout, so acc[i][j] carries the FMA kernel's shape into the epilogue.
//  - Shared tiles: [kTileK][kMmaStride] for A and B, written by cp.async at the positions
//    a_load_pos / b_load_pos give. The stride 72 puts the 32 lanes of a fragment read (8 rows x 4
//    k) in 32 different banks: k*72 + row = 8k + row (mod 32).
#pragma once
#include "kernels/cuda/conv2d_block.h"

namespace kd {
namespace conv_gemm {

constexpr int kMmaStride = kTileM + 8;
constexpr int kWarpRows = 32, kWarpCols = 16;
static_assert(kTileM == kTileN && kTileK % 8 == 0, "");
static_assert((kTileM / kWarpRows) * (kTileN / kWarpCols) * 32 == kThreads, "");

KD_HOST_DEVICE inline int warp_row0(int tid) { return (tid / 32) % (kTileM / kWarpRows) * kWarpRows; }
KD_HOST_DEVICE inline int warp_col0(int tid) { return (tid / 32) / (kTileM / kWarpRows) * kWarpCols; }

struct MmaLayout {
  KD_HOST_DEVICE static int row(int tid, int i) { return warp_row0(tid) + tid % 32 / 4 + 8 * i; }
  KD_HOST_DEVICE static int col(int tid, int j) {
    return warp_col0(tid) + j / 2 * 8 + 2 * (tid % 4) + j % 2;
  }
};

// Shared-tile index of register r of the A fragment of mma row block mi (0, 1) at k step ks
// (0, 8): A[g + 8 (r%2)][t + 4 (r/2)] of that 16x8 block.
KD_HOST_DEVICE inline int a_frag_index(int tid, int mi, int ks, int r) {
  const int lane = tid % 32;
  const int row = warp_row0(tid) + 16 * mi + lane / 4 + 8 * (r % 2);
  return (ks + lane % 4 + 4 * (r / 2)) * kMmaStride + row;
}
// Register r of the B fragment of mma column block ni (0, 1): B[t + 4r][g].
KD_HOST_DEVICE inline int b_frag_index(int tid, int ni, int ks, int r) {
  const int lane = tid % 32;
  const int col = warp_col0(tid) + 8 * ni + lane / 4;
  return (ks + lane % 4 + 4 * r) * kMmaStride + col;
}
// The accumulators of mma tile (mi, ni), in the order of the C fragment's registers.
template <class T>
struct FragmentRefs {
  T* r[4];
};
template <class T>
KD_HOST_DEVICE inline FragmentRefs<T> c_fragment(T (&acc)[kMicro][kMicro], int mi, int ni) {
  return {{&acc[2 * mi][2 * ni], &acc[2 * mi][2 * ni + 1], &acc[2 * mi + 1][2 * ni],
           &acc[2 * mi + 1][2 * ni + 1]}};
}

// Where this thread's load i of the stage goes in the [kTileK][kMmaStride] tiles.
KD_HOST_DEVICE inline int a_store_index(int tid, int i) {
  const TilePos p = a_load_pos(tid, i);
  return p.kk * kMmaStride + p.mn;
}
template <Pass P>
KD_HOST_DEVICE inline int b_store_index(int tid, int i) {
  const TilePos p = b_load_pos(kBAlongK<P>, tid, i);
  return p.kk * kMmaStride + p.mn;
}

}  // namespace conv_gemm
}  // namespace kd
