// The block-level tile programs of our CUDA implicit-GEMM convolution (kernels/cuda/conv2d.cu,
// its only includer): which tile a block computes, its double-buffered shared K tiles, the FMA
// program (register prefetch, any conv_gemm::TileShape), the TF32 tensor-core one (cp.async,
// 64x64; register-staged for bf16 storage), and the weight pass's in-launch split-K fold with
// its tickets. The per-thread index maths they run is conv_gemm's (conv2d_gather.h,
// conv2d_block.h, conv2d_mma.h), tested on the host; these add shared memory, barriers and
// asynchronous copies, proven on the grid emulator.
// Layouts: shared tiles [kTileK][stride] for A and B (stride: the tile's rows plus one, or
// kMmaStride for the tensor-core tiles). The epilogues ASSIGN y / the workspace or add into dx
// as conv_gemm::epilogue says; the fold ACCUMULATES into dw.
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/conv2d_block.h"
#include "kernels/cuda/conv2d_mma.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/tensor_core.cuh"

namespace kd {
namespace cuda {
namespace conv_tiles {

using conv_gemm::Pass;

// The output tile a block computes: x over N tiles, y over M tiles, slice = its K slice, of a
// GEMM whose grid of tiles is `grid`. A plain launch takes it from blockIdx; the fused backward
// launch (conv_backward_kernel) numbers two GEMMs' tiles one after the other.
struct Tile {
  int x, y, slice;
  conv_gemm::Grid3 grid;
};
inline __device__ Tile block_tile() {
  return {int(blockIdx.x), int(blockIdx.y), int(blockIdx.z),
          {int(gridDim.x), int(gridDim.y), int(gridDim.z)}};
}
// Tile `index` of `grid`, counted x fastest, then y, then slice.
inline __device__ Tile nth_tile(int index, const conv_gemm::Grid3& grid) {
  const int per_slice = grid.x * grid.y, in_slice = index % per_slice;
  return {in_slice % grid.x, in_slice / grid.x, index / per_slice, grid};
}

// The double-buffered K tiles of one block: [kTileK][stride] for A and B. The FMA kernel pads
// the rows by one (bank spread), the tensor-core one by eight with 16-byte rows for cp.async.
// Both also hold two K tiles' decomposed K indices (KTables).
template <class T, bool TensorCores, class Shape = conv_gemm::Tile64>
struct StageTiles {
  T a[2][conv_gemm::kTileK * Shape::kStrideM];
  T b[2][conv_gemm::kTileK * Shape::kStrideN];
  conv_gemm::KTable k_table[2];
};
template <class Shape>
struct StageTiles<float, true, Shape> {
  __align__(16) float a[2][conv_gemm::kTileK * conv_gemm::kMmaStride];
  __align__(16) float b[2][conv_gemm::kTileK * conv_gemm::kMmaStride];
  conv_gemm::KTable k_table[2];
};

// The tables of decomposed K indices (conv_gemm::k_table_entry) that a block's loads read, K tile
// i's in buffer i & 1, each filled by the block's first kTileK threads: two integer divisions
// per K index once per block instead of once per load. The kernels fill them two K tiles ahead.
template <Pass P>
struct KTables {
  conv_gemm::KTable* buf;  // two, in shared memory
  const conv_gemm::ConvDims& d;
  conv_gemm::KRange kr;
  int tid;
  __device__ void fill(int tile_index) const {
    if (tid < conv_gemm::kTileK && tile_index < kr.tiles)
      buf[tile_index & 1].template entries<P>()[tid] =
          conv_gemm::k_table_entry<P>(d, kr.begin + tile_index * conv_gemm::kTileK, tid);
  }
  __device__ const conv_gemm::KEntry<P>* of(int tile_index) const {
    return buf[tile_index & 1].template entries<P>();
  }
};

// One ticket per output tile for the weight pass's fold; zero at module load, and the last block
// of each tile puts its counter back to zero. Launches on the one compute stream never overlap.
// Defined here: conv2d.cu is the one includer.
__device__ unsigned g_splitk_tickets[conv_gemm::kMaxFoldTiles] = {};

// After the block has written its slice of the tile: the block that takes the tile's last ticket
// adds every slice of the tile into dw, slice 0 first (splitk_sum's order, so the bits are those
// of the separate summing launch). Every thread fences its own slice writes before the barrier;
// splitk_sum reads the slices through volatile (L2), as in fixed_order::last_block_sum2. Layout:
// which tile element each thread's accumulators held (conv_gemm::FmaLayout or MmaLayout).
template <class Layout, class T, class S>
__device__ void fold_slices(const conv_gemm::GemmParams<T, Pass::BackwardWeight, S>& prm,
                            const Tile& tile, int tid, int m0, int n0) {
  using namespace conv_gemm;
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    unsigned* counter = &g_splitk_tickets[tile.y * tile.grid.x + tile.x];
    last = fixed_order::take_ticket(counter) == unsigned(tile.grid.z) - 1;
    if (last) atomicExch(counter, 0u);  // every slice of the tile has taken its ticket
  }
  __syncthreads();
  if (!last) return;
  const int64_t mn = int64_t(prm.g.m) * prm.g.n;
#pragma unroll
  for (int j = 0; j < kMicro; ++j) {
    const int col = n0 + Layout::col(tid, j);
    if (col >= prm.g.n) continue;
#pragma unroll
    for (int i = 0; i < kMicro; ++i) {
      const int m = m0 + Layout::row(tid, i);
      if (m >= prm.g.m) continue;
      const int64_t e = weight_out_offset(prm.g, 0, m, col);
      const T sum = splitk_sum(prm.out, tile.grid.z, mn, e);
      prm.fold_into[e] = narrow<S>(widen<T>(prm.fold_into[e]) + sum);
    }
  }
}

// One Shape tile (64x64; 16x256 / 32x128 for narrow layers; 64x256 / 128x128 at Micro 8) of
// C = A * B over the K range of slice blockIdx.z. Registers prefetch the next K tile from global
// memory while the current one is multiplied out of the other shared buffer, so one
// __syncthreads per K tile suffices: buffer cur ^ 1 was last read in the previous iteration,
// before that iteration's barrier. The tables of decomposed K indices run two K tiles ahead:
// iteration t fills tile t + 2's into k_table[t & 1], which tile t's loads (in iteration t - 1)
// read before that iteration's barrier and tile t + 2's (iteration t + 1) read after this one's;
// the first two are filled before one extra barrier.
template <class T, Pass P, class S, class Shape>
__device__ void fma_gemm_tile(const conv_gemm::GemmParams<T, P, S>& prm, const Tile& tile,
                              StageTiles<T, false, Shape>& tiles) {
  using namespace conv_gemm;
  auto& a_tile = tiles.a;
  auto& b_tile = tiles.b;
  const int tid = threadIdx.x;
  const int m0 = tile.y * Shape::kM, n0 = tile.x * Shape::kN, slice = tile.slice;
  const KRange kr = k_range(prm.g, prm.k_chunk, slice);  // the same for the whole block
  const BCols<P> cols = make_b_cols<Shape>(prm, tid, n0);
  T a_reg[Shape::kLoadsA] = {}, b_reg[Shape::kLoadsB] = {};  // {}: g++ -O1 cannot see `more`
  T acc[Shape::kMicro][Shape::kMicro];
#pragma unroll
  for (int i = 0; i < Shape::kMicro; ++i)
#pragma unroll
    for (int j = 0; j < Shape::kMicro; ++j) acc[i][j] = T(0);

  const KTables<P> tables{tiles.k_table, prm.d, kr, tid};
  const bool a_packs = a_in_packs<Shape>(prm);
  tables.fill(0);
  tables.fill(1);
  __syncthreads();
  if (kr.tiles > 0) {
    load_stage<Shape>(prm, cols, tid, m0, kr.begin, kr.end, a_reg, b_reg, tables.of(0));
    store_stage<T, P, Shape>(tid, a_reg, b_reg, a_tile[0], b_tile[0], a_packs);
  }
  __syncthreads();
  for (int t = 0; t < kr.tiles; ++t) {
    const int cur = t & 1;
    const bool more = t + 1 < kr.tiles;
    if (more)
      load_stage<Shape>(prm, cols, tid, m0, kr.begin + (t + 1) * kTileK, kr.end, a_reg, b_reg,
                        tables.of(t + 1));
    mma_tile<Shape>(a_tile[cur], b_tile[cur], tid, acc);
    if (more)
      store_stage<T, P, Shape>(tid, a_reg, b_reg, a_tile[cur ^ 1], b_tile[cur ^ 1], a_packs);
    tables.fill(t + 2);
    __syncthreads();
  }
  epilogue<FmaLayoutOf<Shape>>(prm, tid, m0, n0, slice, acc);
  if constexpr (P == Pass::BackwardWeight) {
    static_assert(std::is_same<Shape, Tile64>::value, "the weight pass's fold is 64x64");
    if (prm.fold_into) fold_slices<FmaLayout>(prm, tile, tid, m0, n0);  // uniform in the block
  }
}

// The K tile at k0 from global memory straight into the [kTileK][kMmaStride] shared tiles, one
// 4-byte cp.async per element (zero-filled outside the tensors and in the padding); table: the
// K tile's decomposed K indices (KTables).
template <Pass P>
__device__ void issue_stage_async(const conv_gemm::GemmParams<float, P>& prm,
                                  const conv_gemm::BCols<P>& cols, int tid, int m0, int k0,
                                  int k_end, float* a_tile, float* b_tile,
                                  const conv_gemm::KEntry<P>* table) {
  using namespace conv_gemm;
  int64_t a_off[kLoads], b_off[kLoads];
  stage_offsets(prm, cols, tid, m0, k0, k_end, a_off, b_off, table);
#pragma unroll
  for (int i = 0; i < kLoads; ++i) {
    tc::cp_async_zfill4(a_tile + a_store_index(tid, i), prm.a + (a_off[i] >= 0 ? a_off[i] : 0),
                        a_off[i] >= 0);
    tc::cp_async_zfill4(b_tile + b_store_index<P>(tid, i), prm.b + (b_off[i] >= 0 ? b_off[i] : 0),
                        b_off[i] >= 0);
  }
}

// acc += A_tile * B_tile on tensor cores: per k step of 8, this warp's 2 x 2 m16n8k8 tiles.
inline __device__ void mma_tile_tf32(const float* a_tile, const float* b_tile, int tid,
                              float (&acc)[conv_gemm::kMicro][conv_gemm::kMicro]) {
  using namespace conv_gemm;
#pragma unroll
  for (int ks = 0; ks < kTileK; ks += 8) {
    uint32_t a[2][4], b[2][2];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int r = 0; r < 4; ++r) a[mi][r] = tc::tf32_bits(a_tile[a_frag_index(tid, mi, ks, r)]);
#pragma unroll
    for (int ni = 0; ni < 2; ++ni)
#pragma unroll
      for (int r = 0; r < 2; ++r) b[ni][r] = tc::tf32_bits(b_tile[b_frag_index(tid, ni, ks, r)]);
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ni = 0; ni < 2; ++ni) {
        const FragmentRefs<float> c = c_fragment(acc, mi, ni);
        float d[4] = {*c.r[0], *c.r[1], *c.r[2], *c.r[3]};
        tc::mma_tf32(d, a[mi], b[ni]);
#pragma unroll
        for (int r = 0; r < 4; ++r) *c.r[r] = d[r];
      }
  }
}

// fma_gemm_tile on tensor cores (float only). Tile t + 1 is copied by cp.async while tile t
// is multiplied; every iteration commits one group (empty on the last tile), so waiting for all
// but the newest group always means "tile t has landed". The second barrier keeps the next
// iteration's copies out of the buffer until every warp has read it. The K-index tables run two
// tiles ahead between the two barriers: tile t + 2's goes where tile t's was, last read by the
// copies issued before this iteration's first barrier, and is next read by iteration t + 1's
// copies, after the second; the first two are filled before one extra barrier.
template <Pass P>
__device__ void tf32_gemm_tile(const conv_gemm::GemmParams<float, P>& prm, const Tile& tile,
                               StageTiles<float, true>& tiles) {
  using namespace conv_gemm;
  auto& a_tile = tiles.a;
  auto& b_tile = tiles.b;
  const int tid = threadIdx.x;
  const int m0 = tile.y * kTileM, n0 = tile.x * kTileN, slice = tile.slice;
  const KRange kr = k_range(prm.g, prm.k_chunk, slice);
  const BCols<P> cols = make_b_cols(prm, tid, n0);
  float acc[kMicro][kMicro];
#pragma unroll
  for (int i = 0; i < kMicro; ++i)
#pragma unroll
    for (int j = 0; j < kMicro; ++j) acc[i][j] = 0.f;

  const KTables<P> tables{tiles.k_table, prm.d, kr, tid};
  tables.fill(0);
  tables.fill(1);
  __syncthreads();
  if (kr.tiles > 0)
    issue_stage_async(prm, cols, tid, m0, kr.begin, kr.end, a_tile[0], b_tile[0], tables.of(0));
  tc::cp_async_commit();
  for (int t = 0; t < kr.tiles; ++t) {
    const int cur = t & 1;
    if (t + 1 < kr.tiles)
      issue_stage_async(prm, cols, tid, m0, kr.begin + (t + 1) * kTileK, kr.end, a_tile[cur ^ 1],
                        b_tile[cur ^ 1], tables.of(t + 1));
    tc::cp_async_commit();
    tc::cp_async_wait<1>();
    __syncthreads();
    mma_tile_tf32(a_tile[cur], b_tile[cur], tid, acc);
    tables.fill(t + 2);
    __syncthreads();
  }
  tc::cp_async_wait<0>();  // only empty groups can be left; the thread exits with none queued
  epilogue<MmaLayout>(prm, tid, m0, n0, slice, acc);
  if constexpr (P == Pass::BackwardWeight) {
    if (prm.fold_into) fold_slices<MmaLayout>(prm, tile, tid, m0, n0);
  }
}

// tf32_gemm_tile for bf16-stored operands (--precision bf16 under --tf32). cp.async copies bytes
// and cannot widen, so registers stage the loads as in fma_gemm_tile (load_stage widens to float,
// reading the K-index tables) and store them where the tensor-core tiles want them
// (a_store_index, b_store_index). A bf16 value is exact in TF32, so nothing is rounded before the
// multiply, and the fragments, the mma order and the epilogue are tf32_gemm_tile's: the bits are
// the float kernel's on the widened operands, the bf16 entries' contract.
template <Pass P, class S>
__device__ void staged_tf32_gemm_tile(const conv_gemm::GemmParams<float, P, S>& prm,
                                      const Tile& tile, StageTiles<float, true>& tiles) {
  using namespace conv_gemm;
  auto& a_tile = tiles.a;
  auto& b_tile = tiles.b;
  const int tid = threadIdx.x;
  const int m0 = tile.y * kTileM, n0 = tile.x * kTileN, slice = tile.slice;
  const KRange kr = k_range(prm.g, prm.k_chunk, slice);
  const BCols<P> cols = make_b_cols(prm, tid, n0);
  float a_reg[kLoads] = {}, b_reg[kLoads] = {};
  float acc[kMicro][kMicro];
#pragma unroll
  for (int i = 0; i < kMicro; ++i)
#pragma unroll
    for (int j = 0; j < kMicro; ++j) acc[i][j] = 0.f;
  auto store = [&](int buf) {
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      a_tile[buf][a_store_index(tid, i)] = a_reg[i];
      b_tile[buf][b_store_index<P>(tid, i)] = b_reg[i];
    }
  };

  const KTables<P> tables{tiles.k_table, prm.d, kr, tid};
  tables.fill(0);
  tables.fill(1);
  __syncthreads();
  if (kr.tiles > 0) {
    load_stage(prm, cols, tid, m0, kr.begin, kr.end, a_reg, b_reg, tables.of(0));
    store(0);
  }
  __syncthreads();
  for (int t = 0; t < kr.tiles; ++t) {
    const int cur = t & 1;
    const bool more = t + 1 < kr.tiles;
    if (more)
      load_stage(prm, cols, tid, m0, kr.begin + (t + 1) * kTileK, kr.end, a_reg, b_reg,
                 tables.of(t + 1));
    mma_tile_tf32(a_tile[cur], b_tile[cur], tid, acc);
    if (more) store(cur ^ 1);
    tables.fill(t + 2);
    __syncthreads();
  }
  epilogue<MmaLayout>(prm, tid, m0, n0, slice, acc);
  if constexpr (P == Pass::BackwardWeight) {
    if (prm.fold_into) fold_slices<MmaLayout>(prm, tile, tid, m0, n0);
  }
}

template <bool TensorCores, class Shape = conv_gemm::Tile64, class T, Pass P, class S>
__device__ void gemm_tile(const conv_gemm::GemmParams<T, P, S>& prm, const Tile& tile,
                          StageTiles<T, TensorCores, Shape>& tiles) {
  if constexpr (TensorCores) {
    static_assert(std::is_same<T, float>::value, "tensor cores multiply float (TF32)");
    static_assert(std::is_same<Shape, conv_gemm::Tile64>::value, "tensor cores tile 64x64");
    if constexpr (std::is_same<S, T>::value) {
      tf32_gemm_tile(prm, tile, tiles);  // cp.async straight from global memory
    } else {
      staged_tf32_gemm_tile(prm, tile, tiles);
    }
  } else {
    fma_gemm_tile(prm, tile, tiles);
  }
}

}  // namespace conv_tiles
}  // namespace cuda
}  // namespace kd
