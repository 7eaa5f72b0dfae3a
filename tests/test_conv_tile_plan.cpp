// Host checks of the CUDA implicit-GEMM convolution's launch plan (kernels/cuda/conv2d_block.h,
// kernels/cuda/conv2d_mma.h), the arithmetic the kernels' correctness and speed lean on: every
// tile placement (loads, A packs, micro-tiles, the tensor-core tiles) is a bijection onto its
// tile; a warp's shared reads need one wavefront and the tensor-core fragment reads are bank-
// conflict free; the split-K plan partitions K; PreResNet's batch-128 grids fill a GPU and the
// FMA tile rule picks the intended tiles there; checked_dims refuses what ref:: refuses.
// test_conv_gather.cpp runs the block programs themselves. Not named *Cuda*: runs everywhere.
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "base/check.h"
#include "kernels/conv2d.h"
#include "kernels/cuda/conv2d_block.h"
#include "kernels/cuda/conv2d_mma.h"
#include "tests/kernel_testing.h"

namespace {

using kd::ConvGeom;
using kd::kernel_testing::describe;
using kd::kernel_testing::geom;
using namespace kd::conv_gemm;

// Each thread's loads and micro-tile cover the tiles exactly once, and the properties the
// block program leans on hold: along K a thread's kk is the same for all its loads (one tap or
// row decomposition per K tile); along N its column is (one column decomposition per block).
TEST(ConvGather, TilePlacementsAreBijections) {
  for (int mode = 0; mode < 3; ++mode) {
    std::vector<int> hits(kTileK * 64, 0);
    for (int t = 0; t < kThreads; ++t)
      for (int i = 0; i < kLoads; ++i) {
        const TilePos p = mode == 0 ? a_load_pos(t, i) : b_load_pos(mode == 2, t, i);
        ASSERT_TRUE(p.kk >= 0 && p.kk < kTileK && p.mn >= 0 && p.mn < 64) << mode;
        ++hits[p.kk * 64 + p.mn];
        const TilePos first = mode == 0 ? a_load_pos(t, 0) : b_load_pos(mode == 2, t, 0);
        if (mode != 1) {
          EXPECT_EQ(p.kk, first.kk) << "kk varies with i, mode " << mode;
        } else {
          EXPECT_EQ(p.mn, first.mn) << "column varies with i";
        }
        if (mode == 2) {
          EXPECT_EQ(p.kk, a_load_pos(t, i).kk) << "A and B kk differ";
        }
      }
    EXPECT_EQ(std::set<int>(hits.begin(), hits.end()), std::set<int>{1}) << "mode " << mode;
  }
  for (bool tensor_cores : {false, true}) {
    std::vector<int> hits(kTileM * kTileN, 0);
    for (int t = 0; t < kThreads; ++t)
      for (int i = 0; i < kMicro; ++i)
        for (int j = 0; j < kMicro; ++j)
          ++hits[tensor_cores ? MmaLayout::row(t, i) * kTileN + MmaLayout::col(t, j)
                              : FmaLayout::row(t, i) * kTileN + FmaLayout::col(t, j)];
    EXPECT_EQ(std::set<int>(hits.begin(), hits.end()), std::set<int>{1}) << tensor_cores;
  }
  // The tensor-core tiles: every load lands once inside [kTileK][kTileM] of the padded rows.
  for (int mode = 0; mode < 3; ++mode) {
    std::set<int> seen;
    for (int t = 0; t < kThreads; ++t)
      for (int i = 0; i < kLoads; ++i) {
        const int e = mode == 0   ? a_store_index(t, i)
                      : mode == 1 ? b_store_index<Pass::Forward>(t, i)
                                  : b_store_index<Pass::BackwardWeight>(t, i);
        EXPECT_LT(e % kMmaStride, kTileM) << mode;
        EXPECT_TRUE(seen.insert(e).second) << "mode " << mode << " element " << e << " twice";
      }
    EXPECT_EQ(seen.size(), size_t(kTileK * kTileM)) << mode;
  }
}

// The same for the narrow and Micro-8 tiles: A's kLoadsA and B's kLoadsB loads (along N: one
// column per thread) and the micro-tiles each cover their tile once.
template <class Shape>
void check_tile_placements() {
  std::vector<int> a_hits(kTileK * Shape::kM, 0), b_hits(kTileK * Shape::kN, 0);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < Shape::kLoadsA; ++i) {
      const TilePos p = a_load_pos(t, i);
      ASSERT_TRUE(p.kk >= 0 && p.kk < kTileK && p.mn >= 0 && p.mn < Shape::kM);
      EXPECT_EQ(p.kk, a_load_pos(t, 0).kk);
      ++a_hits[p.kk * Shape::kM + p.mn];
    }
    for (int i = 0; i < Shape::kLoadsB; ++i) {
      const TilePos p = b_load_pos<Shape>(false, t, i);
      ASSERT_TRUE(p.kk >= 0 && p.kk < kTileK && p.mn >= 0 && p.mn < Shape::kN);
      EXPECT_EQ(p.mn, b_load_pos<Shape>(false, t, 0).mn) << "column varies with i";
      ++b_hits[p.kk * Shape::kN + p.mn];
    }
  }
  EXPECT_EQ(std::set<int>(a_hits.begin(), a_hits.end()), std::set<int>{1}) << Shape::kM;
  EXPECT_EQ(std::set<int>(b_hits.begin(), b_hits.end()), std::set<int>{1}) << Shape::kM;
  std::vector<int> hits(Shape::kM * Shape::kN, 0);
  for (int t = 0; t < kThreads; ++t)
    for (int i = 0; i < Shape::kMicro; ++i)
      for (int j = 0; j < Shape::kMicro; ++j)
        ++hits[FmaLayoutOf<Shape>::row(t, i) * Shape::kN + FmaLayoutOf<Shape>::col(t, j)];
  EXPECT_EQ(std::set<int>(hits.begin(), hits.end()), std::set<int>{1}) << Shape::kM;
}

// A's packs cover every element of the A tile once, four consecutive K of one row each.
TEST(ConvGather, APackPlacementsAreBijectionsOfConsecutiveK) {
  for (int loads : {4, 8}) {  // 64 rows (64x64, 64x256) and 128 (128x128)
    const int rows = loads * kThreads / kTileK;
    std::vector<int> hits(kTileK * rows, 0);
    for (int t = 0; t < kThreads; ++t)
      for (int i = 0; i < loads; ++i) {
        const TilePos p = a_pack_pos(t, i), first = a_pack_pos(t, i - i % kPack);
        ASSERT_TRUE(p.kk >= 0 && p.kk < kTileK && p.mn >= 0 && p.mn < rows);
        EXPECT_EQ(p.mn, first.mn);
        EXPECT_EQ(p.kk, first.kk + i % kPack);
        EXPECT_EQ(first.kk % kPack, 0);
        ++hits[p.kk * rows + p.mn];
      }
    EXPECT_EQ(std::set<int>(hits.begin(), hits.end()), std::set<int>{1}) << rows;
  }
}

TEST(ConvGather, NarrowAndWideTilePlacementsAreBijections) {
  check_tile_placements<TileShape<16>>();
  check_tile_placements<TileShape<32>>();
  check_tile_placements<WideTile64>();
  check_tile_placements<WideTile128>();
}

// A warp's micro-tile reads in a Micro-8 tile: A is one or two rows (broadcasts), B 32
// consecutive columns or 16 read twice, so neither needs more than one shared-memory wavefront.
template <class Shape>
void check_micro_reads_are_broadcast_or_consecutive() {
  for (int warp = 0; warp < kThreads / 32; ++warp)
    for (int i = 0; i < Shape::kMicro; ++i) {
      std::set<int> rows, cols;
      for (int lane = 0; lane < 32; ++lane) {
        rows.insert(micro_row<Shape>(warp * 32 + lane, i));
        cols.insert(micro_col<Shape>(warp * 32 + lane, i));
      }
      EXPECT_LE(rows.size(), 2u) << Shape::kM << " warp " << warp;
      EXPECT_EQ(*cols.rbegin() - *cols.begin() + 1, int(cols.size())) << Shape::kM;
      EXPECT_GE(cols.size(), 16u) << Shape::kM;
    }
}
TEST(ConvGather, WideTileWarpReadsNeedOneWavefront) {
  check_micro_reads_are_broadcast_or_consecutive<WideTile64>();
  check_micro_reads_are_broadcast_or_consecutive<WideTile128>();
}

// A warp's fragment reads from the [kTileK][kMmaStride] tiles touch 32 different banks.
TEST(ConvGather, TensorCoreFragmentReadsAreBankConflictFree) {
  for (int warp = 0; warp < kThreads / 32; ++warp)
    for (int ks : {0, 8})
      for (int f = 0; f < 2; ++f)
        for (int r = 0; r < 4; ++r) {
          std::set<int> a_banks, b_banks;
          for (int lane = 0; lane < 32; ++lane) {
            a_banks.insert(a_frag_index(warp * 32 + lane, f, ks, r) % 32);
            if (r < 2) b_banks.insert(b_frag_index(warp * 32 + lane, f, ks, r) % 32);
          }
          EXPECT_EQ(a_banks.size(), 32u) << "A warp " << warp << " register " << r;
          if (r < 2) {
            EXPECT_EQ(b_banks.size(), 32u) << "B warp " << warp << " register " << r;
          }
        }
}

// The split-K plan depends on the shape only, partitions [0, K) into non-empty slices of whole
// K tiles, and stays within gridDim.z; checked on the PreResNet/CIFAR shapes and odd ones.
TEST(ConvGather, SplitKPlanPartitionsK) {
  std::vector<GemmDims> shapes;
  for (int batch : {1, 2, 128})
    for (int ch : {3, 16, 32, 64, 128, 256})
      for (int hw : {32, 16, 8, 1})
        for (int rs : {1, 9}) shapes.push_back({ch, ch * rs, batch * hw * hw});
  for (GemmDims g : {GemmDims{1, 1, 1}, GemmDims{70, 603, 429}, GemmDims{5, 7, 255},
                     GemmDims{5, 7, 257}, GemmDims{300, 2304, 1 << 20}})
    shapes.push_back(g);
  for (const GemmDims& g : shapes) {
    const SplitK p = split_k_plan(g);
    const std::string what =
        std::to_string(g.m) + "x" + std::to_string(g.n) + " K " + std::to_string(g.k);
    ASSERT_GE(p.slices, 1) << what;
    EXPECT_LE(p.slices, 65535) << what;
    EXPECT_EQ(p.chunk % kTileK, 0) << what;
    int covered = 0;
    for (int z = 0; z < p.slices; ++z) {
      const KRange kr = k_range(g, p.chunk, z);
      EXPECT_EQ(kr.begin, covered) << what;
      EXPECT_GT(kr.end, kr.begin) << what << " empty slice " << z;
      EXPECT_EQ(kr.tiles, (kr.end - kr.begin + kTileK - 1) / kTileK) << what;
      covered = kr.end;
    }
    EXPECT_EQ(covered, g.k) << what;
    const SplitK again = split_k_plan(g);
    EXPECT_TRUE(again.slices == p.slices && again.chunk == p.chunk) << what;
  }
}

// Performance guard: at batch 128 every pass of every PreResNet/CIFAR layer (c, h=w, k, filter,
// stride, pad) launches >= 100 blocks, or a 132-SM GPU idles (a weight pass once ran 32).
TEST(ConvGather, PreResNetBatch128GridsFillTheGpu) {
  const int layers[][6] = {{3, 32, 16, 3, 1, 1},  {16, 32, 16, 3, 1, 1}, {16, 32, 32, 3, 2, 1},
                           {32, 16, 32, 3, 1, 1}, {16, 32, 32, 1, 2, 0}, {32, 16, 64, 3, 2, 1},
                           {64, 8, 64, 3, 1, 1},  {32, 16, 64, 1, 2, 0}, {64, 32, 16, 1, 1, 0},
                           {16, 32, 64, 1, 1, 0}, {256, 8, 64, 1, 1, 0}, {64, 8, 256, 1, 1, 0},
                           {128, 16, 256, 1, 2, 0}};
  const auto blocks = [](const Grid3& g) { return int64_t(g.x) * g.y * g.z; };
  for (const auto& l : layers) {
    const ConvGeom g = geom(128, l[0], l[1], l[1], l[2], l[3], l[3], l[4], l[5]);
    const ConvDims d = checked_dims(g);
    const GemmDims wg = backward_weight_gemm(d);
    EXPECT_GE(blocks(gemm_grid(forward_gemm(d), 1)), 100) << "forward " << describe(g);
    EXPECT_GE(blocks(gemm_grid(backward_data_gemm(d), 1)), 100) << "data " << describe(g);
    EXPECT_GE(blocks(gemm_grid(wg, split_k_plan(wg).slices)), 100) << "weight " << describe(g);
  }
}

// Which FMA tile PreResNet-56's batch-128 passes take: Micro-8 exactly where its grid keeps
// kWideTileMinBlocks blocks, and every choice's grid then has at least 128 blocks.
TEST(ConvGather, FmaTileRuleAtPreResNet56Batch128) {
  struct Pass2 {
    int m, n;
    FmaTile want;
  };
  const int b = 128;
  const Pass2 passes[] = {
      {16, b * 1024, FmaTile::Rows16},   {32, b * 256, FmaTile::Rows32},
      {64, b * 1024, FmaTile::Wide64},   {64, b * 256, FmaTile::Square64},
      {64, b * 64, FmaTile::Square64},   {128, b * 256, FmaTile::Wide128},
      {128, b * 64, FmaTile::Square64},  {256, b * 64, FmaTile::Square64}};
  for (const Pass2& p : passes) {
    const GemmDims g{p.m, p.n, 576};
    EXPECT_EQ(int(fma_tile(g, MicroTiles::Auto)), int(p.want)) << p.m << " x " << p.n;
    EXPECT_EQ(int(fma_tile(g, MicroTiles::Never)),
              int(p.m <= 16 ? FmaTile::Rows16 : p.m <= 32 ? FmaTile::Rows32 : FmaTile::Square64));
    EXPECT_EQ(int(fma_tile(g, MicroTiles::Always)),
              int(p.m <= 16   ? FmaTile::Rows16
                  : p.m <= 32 ? FmaTile::Rows32
                  : p.m <= 64 ? FmaTile::Wide64
                              : FmaTile::Wide128));
    const Grid3 grid = fma_tile_grid(g, fma_tile(g, MicroTiles::Auto));
    EXPECT_GE(int64_t(grid.x) * grid.y, 128) << p.m << " x " << p.n;
  }
}

TEST(ConvGather, CheckedDimsRefusesWhatRefRefuses) {
  EXPECT_THROW(checked_dims(geom(1, 3, 4, 4, 2, 7, 3, 1, 1)), kd::Error);  // filter > padded
  EXPECT_THROW(checked_dims(geom(1, 3, 4, 4, 2, 3, 3, 0, 1)), kd::Error);  // stride 0
  EXPECT_THROW(checked_dims(geom(1, 0, 4, 4, 2, 3, 3, 1, 1)), kd::Error);  // no channels
  EXPECT_THROW(checked_dims(geom(1 << 20, 3, 64, 64, 2, 3, 3, 1, 1)), kd::Error);  // > int GEMM
  const ConvDims d = checked_dims(geom(2, 3, 7, 5, 4, 3, 2, 2, 1));
  EXPECT_EQ(d.p, 4);
  EXPECT_EQ(d.q, 3);
  EXPECT_EQ(d.crs, 18);
}

}  // namespace
