// kd::cuda:: 2-D convolution as our own implicit GEMM: no im2col buffer, the tile loads gather
// straight from the NCHW/OIHW tensors through the index maps of kernels/cuda/conv2d_gather.h
// (which also holds the per-thread block program, tested on the host). Forward ASSIGNS y (+bias);
// backward data ACCUMULATES into dx (or assigns it, when told); backward weight ACCUMULATES into dw and dbias.
// Tiles: 64x64, or for float forward and data passes of 16 or 32 rows (channels) 16x256 and 32x128
// (conv_gemm::TileShape: the same threads and per-output sum order, hence the same bits, without
// computing three quarters or half of a 64-row tile for nothing; with_tile_shape picks).
// 1x1 stride-1 unpadded convolutions run on the implicit GEMM too (its residual epilogue makes a
// bottleneck's last convolution and shortcut add one launch), unless KDLAB_CONV_1X1=cublas: then
// forward and backward data take the cuBLAS route of kernels/cuda/conv2d_pointwise.cu.
// The _bf16 entries (--precision bf16) are the same implicit GEMM over bf16 operands (template
// parameter S; conv2d_gather.h widens loads and rounds stores), FMA only, no cuBLAS route.
// Determinism: no float atomics. The weight pass splits K into a number of slices fixed by the
// shape and writes each slice's partial product to the workspace; the block that finishes a
// tile's last slice (an integer ticket per tile) sums the tile's slices in slice order into dw,
// in the same launch; dbias is one block per channel with a fixed-order tree.
#include <cstdint>
#include <type_traits>

#include "kernels/backend.h"
#include "kernels/conv2d.h"
#include "kernels/cuda/conv2d_gather.h"
#include "kernels/cuda/conv2d_mma.h"
#include "kernels/cuda/conv2d_pointwise.h"
#include "kernels/cuda/env_switch.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/tensor_core.cuh"

namespace kd {
namespace cuda {
namespace {

using conv_gemm::Pass;

// The output tile a block computes: x over N tiles, y over M tiles, slice = its K slice, of a
// GEMM whose grid of tiles is `grid`. A plain launch takes it from blockIdx; the fused backward
// launch (conv_backward_kernel) numbers two GEMMs' tiles one after the other.
struct Tile {
  int x, y, slice;
  conv_gemm::Grid3 grid;
};
__device__ Tile block_tile() {
  return {int(blockIdx.x), int(blockIdx.y), int(blockIdx.z),
          {int(gridDim.x), int(gridDim.y), int(gridDim.z)}};
}
// Tile `index` of `grid`, counted x fastest, then y, then slice.
__device__ Tile nth_tile(int index, const conv_gemm::Grid3& grid) {
  const int per_slice = grid.x * grid.y, in_slice = index % per_slice;
  return {in_slice % grid.x, in_slice / grid.x, index / per_slice, grid};
}

// The double-buffered K tiles of one block: [kTileK][stride] for A and B. The FMA kernel pads
// the rows by one (bank spread), the tensor-core one by eight with 16-byte rows for cp.async.
template <class T, bool TensorCores, class Shape = conv_gemm::Tile64>
struct StageTiles {
  T a[2][conv_gemm::kTileK * Shape::kStrideM];
  T b[2][conv_gemm::kTileK * Shape::kStrideN];
};
template <class Shape>
struct StageTiles<float, true, Shape> {
  __align__(16) float a[2][conv_gemm::kTileK * conv_gemm::kMmaStride];
  __align__(16) float b[2][conv_gemm::kTileK * conv_gemm::kMmaStride];
};

// One ticket per output tile for the weight pass's fold; zero at module load, and the last block
// of each tile puts its counter back to zero. Launches on the one compute stream never overlap.
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

// One Shape tile (64x64, or 16x256 / 32x128 for narrow layers) of C = A * B over the K range of
// slice blockIdx.z. Registers prefetch the next K tile from global memory while the current one
// is multiplied out of the other shared buffer, so one __syncthreads per K tile suffices: buffer
// cur ^ 1 was last read in the previous iteration, before that iteration's barrier.
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
  T a_reg[Shape::kLoadsA], b_reg[Shape::kLoadsB];
  T acc[kMicro][kMicro];
#pragma unroll
  for (int i = 0; i < kMicro; ++i)
#pragma unroll
    for (int j = 0; j < kMicro; ++j) acc[i][j] = T(0);

  if (kr.tiles > 0) {
    load_stage<Shape>(prm, cols, tid, m0, kr.begin, kr.end, a_reg, b_reg);
    store_stage<T, P, Shape>(tid, a_reg, b_reg, a_tile[0], b_tile[0]);
  }
  __syncthreads();
  for (int t = 0; t < kr.tiles; ++t) {
    const int cur = t & 1;
    const bool more = t + 1 < kr.tiles;
    if (more)
      load_stage<Shape>(prm, cols, tid, m0, kr.begin + (t + 1) * kTileK, kr.end, a_reg, b_reg);
    mma_tile<Shape>(a_tile[cur], b_tile[cur], tid, acc);
    if (more) store_stage<T, P, Shape>(tid, a_reg, b_reg, a_tile[cur ^ 1], b_tile[cur ^ 1]);
    __syncthreads();
  }
  epilogue<FmaLayoutOf<Shape>>(prm, tid, m0, n0, slice, acc);
  if constexpr (P == Pass::BackwardWeight) {
    static_assert(std::is_same<Shape, Tile64>::value, "the weight pass's fold is 64x64");
    if (prm.fold_into) fold_slices<FmaLayout>(prm, tile, tid, m0, n0);  // uniform in the block
  }
}

// The K tile at k0 from global memory straight into the [kTileK][kMmaStride] shared tiles, one
// 4-byte cp.async per element (zero-filled outside the tensors and in the padding).
template <Pass P>
__device__ void issue_stage_async(const conv_gemm::GemmParams<float, P>& prm,
                                  const conv_gemm::BCols<P>& cols, int tid, int m0, int k0,
                                  int k_end, float* a_tile, float* b_tile) {
  using namespace conv_gemm;
  int64_t a_off[kLoads], b_off[kLoads];
  stage_offsets(prm, cols, tid, m0, k0, k_end, a_off, b_off);
#pragma unroll
  for (int i = 0; i < kLoads; ++i) {
    tc::cp_async_zfill4(a_tile + a_store_index(tid, i), prm.a + (a_off[i] >= 0 ? a_off[i] : 0),
                        a_off[i] >= 0);
    tc::cp_async_zfill4(b_tile + b_store_index<P>(tid, i), prm.b + (b_off[i] >= 0 ? b_off[i] : 0),
                        b_off[i] >= 0);
  }
}

// acc += A_tile * B_tile on tensor cores: per k step of 8, this warp's 2 x 2 m16n8k8 tiles.
__device__ void mma_tile_tf32(const float* a_tile, const float* b_tile, int tid,
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
// iteration's copies out of the buffer until every warp has read it.
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

  if (kr.tiles > 0) issue_stage_async(prm, cols, tid, m0, kr.begin, kr.end, a_tile[0], b_tile[0]);
  tc::cp_async_commit();
  for (int t = 0; t < kr.tiles; ++t) {
    const int cur = t & 1;
    if (t + 1 < kr.tiles)
      issue_stage_async(prm, cols, tid, m0, kr.begin + (t + 1) * kTileK, kr.end, a_tile[cur ^ 1],
                        b_tile[cur ^ 1]);
    tc::cp_async_commit();
    tc::cp_async_wait<1>();
    __syncthreads();
    mma_tile_tf32(a_tile[cur], b_tile[cur], tid, acc);
    __syncthreads();
  }
  tc::cp_async_wait<0>();  // only empty groups can be left; the thread exits with none queued
  epilogue<MmaLayout>(prm, tid, m0, n0, slice, acc);
  if constexpr (P == Pass::BackwardWeight) {
    if (prm.fold_into) fold_slices<MmaLayout>(prm, tile, tid, m0, n0);
  }
}

template <bool TensorCores, class Shape = conv_gemm::Tile64, class T, Pass P, class S>
__device__ void gemm_tile(const conv_gemm::GemmParams<T, P, S>& prm, const Tile& tile,
                          StageTiles<T, TensorCores, Shape>& tiles) {
  if constexpr (TensorCores) {
    static_assert(std::is_same<S, T>::value, "the tensor-core tiles are fed by cp.async of T");
    static_assert(std::is_same<Shape, conv_gemm::Tile64>::value, "tensor cores tile 64x64");
    tf32_gemm_tile(prm, tile, tiles);
  } else {
    fma_gemm_tile(prm, tile, tiles);
  }
}

// One GEMM pass, a block per Shape tile (FMA, or TF32 tensor cores for float).
template <class T, Pass P, bool TensorCores, class S = T, class Shape = conv_gemm::Tile64>
__global__ void __launch_bounds__(conv_gemm::kThreads)
    conv_gemm_kernel(const conv_gemm::GemmParams<T, P, S> prm) {
  __shared__ StageTiles<T, TensorCores, Shape> tiles;
  gemm_tile<TensorCores, Shape>(prm, block_tile(), tiles);
}

// Both backward passes in one launch: blocks [0, data tiles) compute dx's tiles, the rest dw's
// (split-K slices and their in-launch fold included). The two read dy and write disjoint
// outputs, so neither waits for the other; the weight pass's tickets index its own tile grid.
// It asks for the blocks per SM the separate passes get (float 4, double 2): left alone, ptxas
// gave the union of the two bodies 80 registers (FMA) and 70 (TF32) against their 58-64, so 3
// blocks per SM; at 64 the TF32 form spills nothing and the FMA one 12 bytes, double none
// (nvcc 13.0, sm_90, -Xptxas -v).
// The data pass's tiles may be a narrow layer's (DataShape); one shared buffer serves either.
template <class T, bool TensorCores, class S = T, class DataShape = conv_gemm::Tile64>
__global__ void __launch_bounds__(conv_gemm::kThreads, sizeof(T) == sizeof(float) ? 4 : 2)
    conv_backward_kernel(const conv_gemm::GemmParams<T, Pass::BackwardData, S> data,
                         const conv_gemm::Grid3 data_grid,
                         const conv_gemm::GemmParams<T, Pass::BackwardWeight, S> weight,
                         const conv_gemm::Grid3 weight_grid) {
  __shared__ union {
    StageTiles<T, TensorCores, DataShape> data;
    StageTiles<T, TensorCores> weight;
  } tiles;
  const int block = int(blockIdx.x), data_tiles = data_grid.x * data_grid.y;
  if (block < data_tiles)
    gemm_tile<TensorCores, DataShape>(data, nth_tile(block, data_grid), tiles.data);
  else
    gemm_tile<TensorCores>(weight, nth_tile(block - data_tiles, weight_grid), tiles.weight);
}

// TF32 tensor cores for float convolutions: asked for (--tf32), allowed (not deterministic, as
// for cuBLAS and cuDNN) and present (sm_80+).
bool use_tensor_cores() {
  const MathMode mode = math_mode();
  return mode.tf32 && !mode.deterministic && tensor_cores_available();
}

// dw[e] += sum of the slices' partials, slice 0 first (dw stored as S, the sum in T).
template <class T, class S>
__global__ void splitk_accumulate_kernel(const T* __restrict__ ws, int slices, int64_t mn,
                                         S* __restrict__ dw) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < mn; e += step)
    dw[e] = narrow<S>(widen<T>(dw[e]) + conv_gemm::splitk_sum(ws, slices, mn, e));
}

// dbias[k] += sum over (img, pq) of dy[img, k, pq]: block k, fixed per-thread order, fixed tree.
template <class T, class S>
__global__ void __launch_bounds__(conv_gemm::kBiasThreads)
    bias_grad_kernel(const conv_gemm::ConvDims d, const S* __restrict__ dy, T* dbias) {
  __shared__ T part[conv_gemm::kBiasThreads];
  const int tid = threadIdx.x, k = blockIdx.x;
  part[tid] = conv_gemm::bias_thread_sum<S, T>(d, dy, k, tid, conv_gemm::kBiasThreads);
  __syncthreads();
  for (int half = conv_gemm::kBiasThreads / 2; half > 0; half /= 2) {
    if (tid < half) part[tid] += part[tid + half];
    __syncthreads();
  }
  if (tid == 0) dbias[k] += part[0];
}

// A planned weight pass (plan_weight_pass): its GEMM and grid of tiles.
template <class T, class S = T>
struct WeightPass {
  conv_gemm::GemmParams<T, Pass::BackwardWeight, S> prm;
  conv_gemm::Grid3 grid;
};

// Calls launch(std::bool_constant<TensorCores>): the kernels' multiply for T under the current
// math mode (TF32 tensor cores only for float stored as float, see use_tensor_cores; bf16
// operands always multiply by FMA).
template <class T, class S, class Launch>
void with_multiply(Launch launch) {
  if constexpr (std::is_same_v<T, float> && std::is_same_v<S, float>) {
    if (use_tensor_cores()) return launch(std::true_type{});
  }
  launch(std::false_type{});
}

// Calls launch(Shape{}): the tile of a pass whose GEMM has m rows. The FMA kernel's forward and
// data passes over 16 or 32 channels take the narrow tiles (conv_gemm::TileShape), float maths
// only: double's 16x256 tiles would pass the 48 KiB of static shared memory.
template <class T, Pass P, bool TensorCores, class Launch>
void with_tile_shape(int m, Launch launch) {
  if constexpr (!TensorCores && std::is_same_v<T, float> && P != Pass::BackwardWeight) {
    if (m <= 16) return launch(conv_gemm::TileShape<16>{});
    if (m <= 32) return launch(conv_gemm::TileShape<32>{});
  }
  launch(conv_gemm::Tile64{});
}

template <class T, Pass P, class S>
void launch_gemm(const conv_gemm::GemmParams<T, P, S>& prm, int slices) {
  with_multiply<T, S>([&](auto tc) {
    constexpr bool kTensorCores = decltype(tc)::value;
    with_tile_shape<T, P, kTensorCores>(prm.g.m, [&](auto shape) {
      using Shape = decltype(shape);
      const conv_gemm::Grid3 grid = conv_gemm::gemm_grid<Shape>(prm.g, slices);
      if (grid.x == 0 || grid.y == 0) return;
      const dim3 blocks(unsigned(grid.x), unsigned(grid.y), unsigned(grid.z));
      KD_LAUNCH((conv_gemm_kernel<T, P, kTensorCores, S, Shape>), blocks, conv_gemm::kThreads, 0,
                prm);
    });
  });
}

// Both passes in one launch, the data pass on its layer's tile (with_tile_shape).
template <class T, class S>
void launch_backward(const conv_gemm::GemmParams<T, Pass::BackwardData, S>& data,
                     const WeightPass<T, S>& weight) {
  with_multiply<T, S>([&](auto tc) {
    constexpr bool kTensorCores = decltype(tc)::value;
    with_tile_shape<T, Pass::BackwardData, kTensorCores>(data.g.m, [&](auto shape) {
      using Shape = decltype(shape);
      const conv_gemm::Grid3 data_grid = conv_gemm::gemm_grid<Shape>(data.g, 1);
      const int64_t blocks = int64_t(data_grid.x) * data_grid.y +
                             int64_t(weight.grid.x) * weight.grid.y * weight.grid.z;
      KD_CHECK(blocks < (int64_t(1) << 31), "conv2d backward (cuda): " << blocks << " blocks");
      KD_LAUNCH((conv_backward_kernel<T, kTensorCores, S, Shape>), unsigned(blocks),
                conv_gemm::kThreads, 0, data, data_grid, weight.prm, weight.grid);
    });
  });
}

// The data pass's GEMM: dx (assigned or accumulated) from dy and w.
template <class T, class S>
conv_gemm::GemmParams<T, Pass::BackwardData, S> data_pass(const conv_gemm::ConvDims& d,
                                                          const S* w, const S* dy, S* dx,
                                                          bool accumulate) {
  const conv_gemm::GemmDims gemm = conv_gemm::backward_data_gemm(d);
  return {d, gemm, w, dy, nullptr, dx, gemm.k, accumulate};
}

// KDLAB_CONV_FOLD (kernels/cuda/env_switch.h): `in-launch` (the default) or `separate`, the
// split-K slices then summed into dw by splitk_accumulate_kernel, a second launch, as a weight
// of more tiles than the ticket table holds always is. The A/B of the in-launch fold, and the way
// the tests reach the separate kernel without such a weight.
bool fold_in_launch() {
  return env_switch("KDLAB_CONV_FOLD", "separate", "in-launch", /*fallback=*/true);
}

// The weight pass as planned from the shape alone: split-K slices into the workspace, folded
// into dw in the same launch by each tile's last block when the tiles fit the ticket table.
template <class T, class S>
WeightPass<T, S> plan_weight_pass(const conv_gemm::ConvDims& d, const S* x, const S* dy, S* dw) {
  const conv_gemm::GemmDims gemm = conv_gemm::backward_weight_gemm(d);
  const conv_gemm::SplitK plan = conv_gemm::split_k_plan(gemm);
  const int64_t mn = int64_t(gemm.m) * gemm.n;
  T* ws = static_cast<T*>(workspace(size_t(plan.slices) * size_t(mn) * sizeof(T)));
  WeightPass<T, S> pass{{d, gemm, dy, x, nullptr, ws, plan.chunk},
                        conv_gemm::gemm_grid(gemm, plan.slices)};
  if (int64_t(pass.grid.x) * pass.grid.y <= conv_gemm::kMaxFoldTiles && fold_in_launch())
    pass.prm.fold_into = dw;
  return pass;
}

// dbias[k] += the sum of dy's channel k (see conv2d_bias_grad), dy stored as S.
template <class T, class S>
void bias_grad(const ConvGeom& g, const S* dy, T* dbias) {
  const conv_gemm::ConvDims d = conv_gemm::checked_dims(g);
  if (g.n == 0 || g.k == 0) return;
  KD_LAUNCH((bias_grad_kernel<T, S>), unsigned(g.k), conv_gemm::kBiasThreads, 0, d, dy, dbias);
}

// After the GEMM launch: the separate fold where the launch could not, then dbias.
template <class T, class S>
void finish_weight_pass(const ConvGeom& g, const WeightPass<T, S>& pass, const S* dy, S* dw,
                        T* dbias) {
  if (!pass.prm.fold_into) {
    const int64_t mn = int64_t(pass.prm.g.m) * pass.prm.g.n;
    KD_LAUNCH((splitk_accumulate_kernel<T, S>), grid_for(mn, 256), 256, 0, pass.prm.out,
              pass.grid.z, mn, dw);
  }
  if (dbias) bias_grad(g, dy, dbias);
}

// The implicit-GEMM forward (y = conv + bias, or + residual) over operands stored as S.
template <class T, class S>
void gemm_forward(const conv_gemm::ConvDims& d, const S* x, const S* w, const T* bias,
                  const S* residual, S* y) {
  const conv_gemm::GemmDims gemm = conv_gemm::forward_gemm(d);
  conv_gemm::GemmParams<T, Pass::Forward, S> prm{d, gemm, w, x, bias, y, gemm.k};
  prm.residual = residual;
  launch_gemm(prm, 1);
}

// The weight pass alone: its GEMM launch, then the separate fold if any, and dbias.
template <class T, class S>
void gemm_backward_weight(const ConvGeom& g, const conv_gemm::ConvDims& d, const S* x,
                          const S* dy, S* dw, T* dbias) {
  const WeightPass<T, S> weight = plan_weight_pass<T>(d, x, dy, dw);
  launch_gemm(weight.prm, weight.grid.z);
  finish_weight_pass(g, weight, dy, dw, dbias);
}

// Both passes in one launch (conv_backward_kernel). The weight pass's workspace, split-K plan
// and fold are gemm_backward_weight's, so every output has the separate passes' bits.
template <class T, class S>
void gemm_backward(const ConvGeom& g, const conv_gemm::ConvDims& d, const S* x, const S* w,
                   const S* dy, S* dx, bool accumulate, S* dw, T* dbias) {
  const conv_gemm::GemmParams<T, Pass::BackwardData, S> data =
      data_pass<T>(d, w, dy, dx, accumulate);
  const WeightPass<T, S> weight = plan_weight_pass<T>(d, x, dy, dw);
  launch_backward(data, weight);
  finish_weight_pass(g, weight, dy, dw, dbias);
}

}  // namespace

template <class T>
void conv2d_forward(const ConvGeom& g, const T* x, const T* w, const T* bias, T* y) {
  const conv_gemm::ConvDims d = conv_gemm::checked_dims(g);
  if (g.n == 0) return;
  if (pointwise_on_cublas(g)) return pointwise_forward(g, x, w, bias, nullptr, y);
  gemm_forward<T, T>(d, x, w, bias, nullptr, y);
}

// The residual in the GEMM's epilogue: one launch for the convolution and the shortcut add
// (on the cuBLAS route for 1x1 shapes, a second launch adds it).
template <class T>
void conv2d_forward_residual(const ConvGeom& g, const T* x, const T* w, const T* residual, T* y) {
  const conv_gemm::ConvDims d = conv_gemm::checked_dims(g);
  if (g.n == 0) return;
  if (pointwise_on_cublas(g)) return pointwise_forward(g, x, w, nullptr, residual, y);
  gemm_forward<T, T>(d, x, w, nullptr, residual, y);
}

template <class T>
void conv2d_backward_data(const ConvGeom& g, const T* dy, const T* w, T* dx, bool accumulate) {
  const conv_gemm::ConvDims d = conv_gemm::checked_dims(g);
  if (g.n == 0) return;
  if (pointwise_on_cublas(g)) return pointwise_backward_data(g, dy, w, dx, accumulate);
  launch_gemm(data_pass<T>(d, w, dy, dx, accumulate), 1);
}

template <class T>
void conv2d_backward_weight(const ConvGeom& g, const T* x, const T* dy, T* dw, T* dbias) {
  const conv_gemm::ConvDims d = conv_gemm::checked_dims(g);
  if (g.n == 0) return;  // empty batch: nothing to add
  gemm_backward_weight<T, T>(g, d, x, dy, dw, dbias);
}

// Both passes, one launch on the implicit GEMM; separate passes where the data pass is skipped
// or on cuBLAS.
template <class T>
void conv2d_backward(const ConvGeom& g, const T* x, const T* w, const T* dy, T* dx,
                     bool accumulate, T* dw, T* dbias) {
  const conv_gemm::ConvDims d = conv_gemm::checked_dims(g);
  if (g.n == 0) return;
  if (!dx || pointwise_on_cublas(g)) {
    if (dx) conv2d_backward_data(g, dy, w, dx, accumulate);
    return conv2d_backward_weight(g, x, dy, dw, dbias);
  }
  gemm_backward<T, T>(g, d, x, w, dy, dx, accumulate, dw, dbias);
}

// --precision bf16: the same kernels over bf16 operands, FMA, every shape on the implicit GEMM.
template <class T>
void conv2d_forward_bf16(const ConvGeom& g, const bf16* x, const bf16* w, const T* bias,
                         bf16* y) {
  const conv_gemm::ConvDims d = conv_gemm::checked_dims(g);
  if (g.n == 0) return;
  gemm_forward<T, bf16>(d, x, w, bias, nullptr, y);
}

template <class T>
void conv2d_forward_residual_bf16(const ConvGeom& g, const bf16* x, const bf16* w,
                                  const bf16* residual, bf16* y) {
  const conv_gemm::ConvDims d = conv_gemm::checked_dims(g);
  if (g.n == 0) return;
  gemm_forward<T, bf16>(d, x, w, static_cast<const T*>(nullptr), residual, y);
}

template <class T>
void conv2d_backward_bf16(const ConvGeom& g, const bf16* x, const bf16* w, const bf16* dy,
                          bf16* dx, bool accumulate, bf16* dw, T* dbias) {
  const conv_gemm::ConvDims d = conv_gemm::checked_dims(g);
  if (g.n == 0) return;
  if (dx) gemm_backward<T, bf16>(g, d, x, w, dy, dx, accumulate, dw, dbias);
  else gemm_backward_weight<T, bf16>(g, d, x, dy, dw, dbias);
}

template <class T>
void conv2d_bias_grad(const ConvGeom& g, const T* dy, T* dbias) {
  bias_grad<T, T>(g, dy, dbias);
}
template void conv2d_bias_grad<float>(const ConvGeom&, const float*, float*);
template void conv2d_bias_grad<double>(const ConvGeom&, const double*, double*);

KD_DEFINE_REGISTRAR(register_conv2d, KD_CONV2D_ALL_KERNELS)

}  // namespace cuda
}  // namespace kd
