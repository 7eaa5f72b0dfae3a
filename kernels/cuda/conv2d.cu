// kd::cuda:: 2-D convolution as our own implicit GEMM: no im2col buffer, the tile loads gather
// straight from the NCHW/OIHW tensors through the index maps of kernels/cuda/conv2d_gather.h
// (the per-thread block program is kernels/cuda/conv2d_block.h, tested on the host) and the
// block-level tile programs of kernels/cuda/conv2d_tiles.cuh (FMA and TF32). Forward ASSIGNS y
// (+bias); backward data ACCUMULATES into dx (or assigns it, when told); backward weight
// ACCUMULATES into dw and dbias.
// Tiles: 64x64, or for float forward and data passes of 16 or 32 rows (channels) 16x256 and 32x128,
// and of wider layers with enough blocks 64x256 and 128x128 with 8x8 micro-tiles
// (conv_gemm::TileShape: the same threads and per-output sum order, hence the same bits, without
// computing three quarters or half of a 64-row tile for nothing, or without the 4x4 micro-tile's
// cap at half the FMA rate; with_tile_shape picks).
// 1x1 stride-1 unpadded convolutions run on the implicit GEMM too (its residual epilogue makes a
// bottleneck's last convolution and shortcut add one launch), unless KDLAB_CONV_1X1=cublas: then
// forward and backward data take the cuBLAS route of kernels/cuda/conv2d_pointwise.cu.
// The _bf16 entries (--precision bf16) are the same implicit GEMM over bf16 operands (template
// parameter S; conv2d_block.h widens loads and rounds stores), by FMA, or under --tf32 on tensor
// cores (conv2d_tiles.cuh's staged_tf32_gemm_tile: the float TF32 kernel's bits on the widened
// operands); no cuBLAS route.
// Determinism: no float atomics. The weight pass splits K into a number of slices fixed by the
// shape and writes each slice's partial product to the workspace; the block that finishes a
// tile's last slice (an integer ticket per tile) sums the tile's slices in slice order into dw,
// in the same launch; dbias is one block per channel with a fixed-order tree.
#include <cstdint>
#include <type_traits>

#include "kernels/backend.h"
#include "kernels/conv2d.h"
#include "kernels/cuda/conv2d_block.h"
#include "kernels/cuda/conv2d_pointwise.h"
#include "kernels/cuda/conv2d_tiles.cuh"
#include "kernels/cuda/env_switch.h"
#include "kernels/cuda/launch.cuh"

namespace kd {
namespace cuda {
namespace {

using conv_gemm::Pass;

using conv_tiles::block_tile;
using conv_tiles::gemm_tile;
using conv_tiles::nth_tile;
using conv_tiles::StageTiles;

// One GEMM pass, a block per Shape tile (FMA, or TF32 tensor cores for float). A Micro-8 tile
// asks for 2 blocks per SM (at most 128 registers): left alone, ptxas gave the 64x256 data pass
// 141, one block per SM. The others ask for none (0): asking for 1 let ptxas raise the 4x4
// kernels from 58-80 registers to 96.
template <class T, Pass P, bool TensorCores, class S = T, class Shape = conv_gemm::Tile64>
__global__ void __launch_bounds__(conv_gemm::kThreads, Shape::kMicro == 8 ? 2 : 0)
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
// A Micro-8 data tile holds 64 accumulators a thread, so its form asks for 2 blocks (128
// registers) instead.
// The data pass's tiles may be a narrow or wide layer's (DataShape); one shared buffer serves
// either.
template <class T, bool TensorCores, class S = T, class DataShape = conv_gemm::Tile64>
__global__ void __launch_bounds__(conv_gemm::kThreads,
                                  DataShape::kMicro == 8 ? 2 : sizeof(T) == sizeof(float) ? 4 : 2)
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
// math mode (TF32 tensor cores for float, stored as float or bf16, see use_tensor_cores; bf16
// values are exact in TF32, so their products are exact there).
template <class T, class S, class Launch>
void with_multiply(Launch launch) {
  if constexpr (std::is_same_v<T, float>) {
    if (use_tensor_cores()) return launch(std::true_type{});
  }
  launch(std::false_type{});
}

// KDLAB_CONV_MICRO (kernels/cuda/env_switch.h): `auto` (the default), `8` (wherever a Micro-8
// tile applies: how the tests run it on small shapes) or `4` (never); conv_gemm::fma_tile. The
// bits are the same whichever runs; the A/B is for tools/gpu-check.sh's timings.
conv_gemm::MicroTiles micro_tiles() {
  using conv_gemm::MicroTiles;
  const int choice = env_choice("KDLAB_CONV_MICRO", {"auto", "8", "4"}, 0);
  return choice == 0 ? MicroTiles::Auto : choice == 1 ? MicroTiles::Always : MicroTiles::Never;
}

// Calls launch(Shape{}): the tile of a forward or data pass of GEMM g. The FMA kernel's float
// passes take conv_gemm::fma_tile's; double (whose narrow and Micro-8 tiles would pass the 48 KiB
// of static shared memory), the weight pass and the tensor-core kernel are always 64x64.
template <class T, Pass P, bool TensorCores, class Launch>
void with_tile_shape(const conv_gemm::GemmDims& g, Launch launch) {
  if constexpr (!TensorCores && std::is_same_v<T, float> && P != Pass::BackwardWeight) {
    conv_gemm::with_fma_tile(conv_gemm::fma_tile(g, micro_tiles()), launch);
  } else {
    launch(conv_gemm::Tile64{});
  }
}

template <class T, Pass P, class S>
void launch_gemm(const conv_gemm::GemmParams<T, P, S>& prm, int slices) {
  with_multiply<T, S>([&](auto tc) {
    constexpr bool kTensorCores = decltype(tc)::value;
    with_tile_shape<T, P, kTensorCores>(prm.g, [&](auto shape) {
      using Shape = decltype(shape);
      const conv_gemm::Grid3 grid = conv_gemm::gemm_grid<Shape>(prm.g, slices);
      if (grid.x == 0 || grid.y == 0) return;
      const dim3 blocks(unsigned(grid.x), unsigned(grid.y), unsigned(grid.z));
      conv_gemm::GemmParams<T, P, S> p = prm;
      p.a_packs = !kTensorCores && conv_gemm::a_packs_allowed<Shape>(p);
      KD_LAUNCH((conv_gemm_kernel<T, P, kTensorCores, S, Shape>), blocks, conv_gemm::kThreads, 0,
                p);
    });
  });
}

// Both passes in one launch, the data pass on its layer's tile (with_tile_shape).
template <class T, class S>
void launch_backward(const conv_gemm::GemmParams<T, Pass::BackwardData, S>& data,
                     const WeightPass<T, S>& weight) {
  with_multiply<T, S>([&](auto tc) {
    constexpr bool kTensorCores = decltype(tc)::value;
    with_tile_shape<T, Pass::BackwardData, kTensorCores>(data.g, [&](auto shape) {
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
