// The block program of the CUDA implicit-GEMM convolution (kernels/cuda/conv2d.cu), over the
// index maps of kernels/cuda/conv2d_gather.h: the kernels' parameters, which tile a pass takes
// (fma_tile), where each of a block's threads loads A and B (one by one, or A in 16-byte packs),
// the K-index tables, the FMA micro-tile multiply and the epilogues. Host-compilable on purpose:
// tests/test_conv_gather.cpp runs it on the CPU against ref::. The epilogues ASSIGN y and the
// split-K workspace and ACCUMULATE into dx unless told to assign (GemmParams::accumulate).
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/conv2d_gather.h"

namespace kd {
namespace conv_gemm {

// ---- the block program: what each of the kThreads threads of one block loads, multiplies and
// writes. The kernel adds only shared memory, double buffering and __syncthreads around these.
#if defined(__CUDA_ARCH__)
#define KD_UNROLL _Pragma("unroll")
#else
#define KD_UNROLL
#endif

enum class Pass { Forward, BackwardData, BackwardWeight };

template <class T, Pass P, class S = T>
struct GemmParams {
  // The output array: y or dx (S), or the weight pass's split-K workspace (T).
  using Out = typename std::conditional<P == Pass::BackwardWeight, T, S>::type;
  ConvDims d;
  GemmDims g;
  const S* a;     // forward, backward data: w; backward weight: dy
  const S* b;     // forward, backward weight: x; backward data: dy
  const T* bias;  // forward only; may be null
  Out* out;       // y, dx, or the split-K workspace [slices, M, N]
  int k_chunk;    // K per blockIdx.z slice (a multiple of kTileK when several)
  bool accumulate = true;  // backward data: dx += acc, or dx = acc (every element written once)
  // The FMA kernel loads A four consecutive K at a time (one 16-byte load of float, 8 of bf16;
  // a_pack_pos), where a_packs_allowed says the tile, the pass and the pointer permit it. Beside
  // `accumulate`, in its padding: a bool at the end grew the argument and ptxas then gave the
  // unchanged weight pass 80 registers instead of 64.
  bool a_packs = false;
  // Backward weight: when set, the block that finishes a tile's last slice adds the tile's slices,
  // in slice order (splitk_sum), into it (dw) in the same launch (conv2d.cu's fold_slices).
  S* fold_into = nullptr;
  // Forward: added to every output element after the bias (y = acc + bias + residual), as
  // conv2d_forward then add_forward would round it; may be null.
  const S* residual = nullptr;
};

// The folding launch keeps one ticket per output tile; more tiles (no layer of ours comes near:
// VGG's 512x512x3x3 weight gradient has 8 x 72) fall back to a separate summing launch.
constexpr int kMaxFoldTiles = 4096;

struct Grid3 {
  int x, y, z;  // x over N tiles (no 65535 limit), y over M tiles, z over K slices
};
template <class Shape = Tile64>
inline Grid3 gemm_grid(const GemmDims& g, int slices) {
  return {(g.n + Shape::kN - 1) / Shape::kN, (g.m + Shape::kM - 1) / Shape::kM, slices};
}

// The FMA kernel's tile for a float forward or data pass of GEMM g (with_fma_tile maps it to
// the TileShape): the narrow tiles up to 32 rows, then a Micro-8 tile (64x256 up to 64
// rows, 128x128 above) where `micro` allows it, else 64x64. Micro: KDLAB_CONV_MICRO's `auto`
// (a Micro-8 tile where its grid keeps kWideTileMinBlocks blocks), `8` (always) or `4` (never).
enum class MicroTiles { Auto, Always, Never };
enum class FmaTile { Rows16, Rows32, Wide64, Wide128, Square64 };
inline FmaTile fma_tile(const GemmDims& g, MicroTiles micro) {
  if (g.m <= 16) return FmaTile::Rows16;
  if (g.m <= 32) return FmaTile::Rows32;
  if (micro == MicroTiles::Never) return FmaTile::Square64;
  const bool rows64 = g.m <= 64;
  const Grid3 grid = rows64 ? gemm_grid<WideTile64>(g, 1) : gemm_grid<WideTile128>(g, 1);
  if (micro == MicroTiles::Auto && int64_t(grid.x) * grid.y < kWideTileMinBlocks)
    return FmaTile::Square64;
  return rows64 ? FmaTile::Wide64 : FmaTile::Wide128;
}
// f called with tile t's TileShape (a value of it): one mapping for the launches (conv2d.cu's
// with_tile_shape) and for the tests' grid sizes (fma_tile_grid).
template <class F>
decltype(auto) with_fma_tile(FmaTile t, F&& f) {
  switch (t) {
    case FmaTile::Rows16: return f(TileShape<16>{});
    case FmaTile::Rows32: return f(TileShape<32>{});
    case FmaTile::Wide64: return f(WideTile64{});
    case FmaTile::Wide128: return f(WideTile128{});
    case FmaTile::Square64: break;
  }
  return f(Tile64{});
}
// The one-slice grid of GEMM g on FMA tile t.
inline Grid3 fma_tile_grid(const GemmDims& g, FmaTile t) {
  return with_fma_tile(t, [&](auto shape) { return gemm_grid<decltype(shape)>(g, 1); });
}

struct KRange {
  int begin, end, tiles;
};
KD_HOST_DEVICE inline KRange k_range(const GemmDims& g, int k_chunk, int slice) {
  const int begin = slice * k_chunk;
  const int end = g.k - begin < k_chunk ? g.k : begin + k_chunk;
  return {begin, end, end > begin ? (end - begin + kTileK - 1) / kTileK : 0};
}

// Where load i of thread tid goes in the [kTileK][tile] shared arrays. A always runs along K
// (weights are contiguous in K; dy in the weight pass is contiguous in pq). B runs along N for
// forward and backward data (consecutive threads read consecutive pixels) and along K for the
// weight pass (K is the pixel dimension there). In both layouts a thread's kk does not depend
// on i when running along K, and its column does not when running along N.
struct TilePos {
  int kk, mn;
};
KD_HOST_DEVICE inline TilePos a_load_pos(int tid, int i) {
  return {tid % kTileK, tid / kTileK + (kThreads / kTileK) * i};
}
// A in packs (GemmParams::a_packs): load i of thread tid is element i % 4 of its pack i / 4,
// four consecutive K (kk) of one row (mn); the 4 threads of a row cover the K tile's 16.
constexpr int kPack = 4;
KD_HOST_DEVICE inline TilePos a_pack_pos(int tid, int i) {
  constexpr int kRowsPerRound = kThreads / (kTileK / kPack);
  return {kPack * (tid % (kTileK / kPack)) + i % kPack,
          tid / (kTileK / kPack) + kRowsPerRound * (i / kPack)};
}
template <class Shape = Tile64>
KD_HOST_DEVICE inline TilePos b_load_pos(bool along_k, int tid, int i) {
  return along_k ? TilePos{tid % kTileK, tid / kTileK + (kThreads / kTileK) * i}
                 : TilePos{tid / Shape::kN + (kThreads / Shape::kN) * i, tid % Shape::kN};
}
template <Pass P>
constexpr bool kBAlongK = P == Pass::BackwardWeight;
// Micro-tile element (i, j) of thread tid: rows strided by kM / Micro, columns by kN / Micro (16
// and 16 in the 64x64 tile), so a warp's shared reads are broadcasts (A) or consecutive (B).
template <class Shape = Tile64>
KD_HOST_DEVICE inline int micro_row(int tid, int i) {
  return tid / (Shape::kN / Shape::kMicro) + (Shape::kM / Shape::kMicro) * i;
}
template <class Shape = Tile64>
KD_HOST_DEVICE inline int micro_col(int tid, int j) {
  return tid % (Shape::kN / Shape::kMicro) + (Shape::kN / Shape::kMicro) * j;
}
// Which tile element a thread's accumulator acc[i][j] holds: the FMA kernel's micro-tile here;
// the tensor-core kernel's warp fragments in conv2d_mma.h. The epilogue and the weight pass's
// fold take it as a parameter.
template <class Shape>
struct FmaLayoutOf {
  static constexpr int kMicro = Shape::kMicro;
  KD_HOST_DEVICE static int row(int tid, int i) { return micro_row<Shape>(tid, i); }
  KD_HOST_DEVICE static int col(int tid, int j) { return micro_col<Shape>(tid, j); }
};
using FmaLayout = FmaLayoutOf<Tile64>;

// The B columns a thread loads, decomposed once per block: one column along N, kLoads along K.
template <Pass P>
struct BCols {
  using Col = typename std::conditional<
      P == Pass::Forward, FwdCol,
      typename std::conditional<P == Pass::BackwardData, DataCol, WgtCol>::type>::type;
  static constexpr int kCount = kBAlongK<P> ? kLoads : 1;
  Col col[kCount];
  bool ok[kCount];
};
template <class Shape = Tile64, class T, Pass P, class S>
KD_HOST_DEVICE inline BCols<P> make_b_cols(const GemmParams<T, P, S>& prm, int tid,
                                           int n0) {
  static_assert(!kBAlongK<P> || std::is_same<Shape, Tile64>::value, "the weight pass is 64x64");
  BCols<P> c;
  for (int i = 0; i < BCols<P>::kCount; ++i) {
    const int col = n0 + b_load_pos<Shape>(kBAlongK<P>, tid, i).mn;
    c.ok[i] = col < prm.g.n;
    c.col[i] = typename BCols<P>::Col{};
    if (!c.ok[i]) continue;
    if constexpr (P == Pass::Forward) c.col[i] = forward_col(prm.d, col);
    if constexpr (P == Pass::BackwardData) c.col[i] = data_col(prm.d, col);
    if constexpr (P == Pass::BackwardWeight) c.col[i] = weight_col(prm.d, col);
  }
  return c;
}

// Whether the FMA kernel of tile Shape may load GEMM prm's A in packs: a Micro-8 tile's forward
// pass (w's rows hold c*r*s consecutive K, so c*r*s % 4 == 0 keeps every pack inside a row; K
// tiles start at multiples of 16), float or bf16 storage, w aligned to a pack. Only there:
// packs raised the 64x64 forward kernel from 63 to 80 registers (4 to 3 blocks per SM) and gave
// the fused backward kernel, capped at 64, 52-128 bytes of spills (the weight pass's dy runs
// along K too), a trade only a GPU can weigh; the Micro-8 kernels stay at 125 of their 128. Not
// the data pass: w along (k, r, s) for a fixed c is not contiguous.
template <class Shape, Pass P, class S>
constexpr bool kAPacksCompiled = Shape::kMicro == 8 && P == Pass::Forward && sizeof(S) <= 4;
template <class Shape, class T, Pass P, class S>
inline bool a_packs_allowed(const GemmParams<T, P, S>& prm) {
  if constexpr (!kAPacksCompiled<Shape, P, S>) {
    return false;
  } else {
    return prm.d.crs % kPack == 0 &&
           reinterpret_cast<uintptr_t>(prm.a) % (kPack * sizeof(S)) == 0;
  }
}
// Whether this launch loads A in packs: a_packs_allowed's answer, set once per launch in
// GemmParams::a_packs, and false at compile time where no pack load is compiled.
template <class Shape, class T, Pass P, class S>
KD_HOST_DEVICE inline bool a_in_packs(const GemmParams<T, P, S>& prm) {
  return kAPacksCompiled<Shape, P, S> && prm.a_packs;
}

// A K index kk decomposed: its tap (forward, data: split_tap) or its output pixel (the weight
// pass: weight_row), two integer divisions either way, which a GPU spells in about twenty
// instructions. Every thread of a block loads at the same kTileK values of kk per K tile (B along
// N in the forward and data passes; A and B along K in the weight pass, tid % kTileK), so the
// kernels decompose each once per block into a shared table, table[j] = the entry of k0 + j
// (conv2d_tiles.cuh's KTables), and the loads read it.
template <Pass P>
using KEntry = typename std::conditional<P == Pass::BackwardWeight, WgtRow, Tap>::type;
template <Pass P>
KD_HOST_DEVICE inline KEntry<P> k_table_entry(const ConvDims& d, int k0, int j) {
  if constexpr (P == Pass::BackwardWeight) {
    return weight_row(d, k0 + j);
  } else {
    return split_tap(d, k0 + j);
  }
}
// Both kinds of table in one shared array of StageTiles.
union KTable {
  Tap tap[kTileK];
  WgtRow row[kTileK];
  template <Pass P>
  KD_HOST_DEVICE KEntry<P>* entries() {
    if constexpr (P == Pass::BackwardWeight) {
      return row;
    } else {
      return tap;
    }
  }
};

// Where the K tile starting at k0 comes from: the element offsets into prm.a and prm.b of each
// of this thread's kLoads A and B loads, -1 where the tile holds a zero (outside M, N,
// [.., k_end) and padding). The loads land at a_load_pos / b_load_pos. table: the K tile's
// decomposed K indices, table[kk - k0] (k_table_entry).
template <class Shape = Tile64, class T, Pass P, class S>
KD_HOST_DEVICE inline void stage_offsets(const GemmParams<T, P, S>& prm, const BCols<P>& cols,
                                         int tid, int m0, int k0, int k_end,
                                         int64_t (&a_off)[Shape::kLoadsA],
                                         int64_t (&b_off)[Shape::kLoadsB],
                                         const KEntry<P>* table) {
  const ConvDims& d = prm.d;
  const int kk_a = k0 + a_load_pos(tid, 0).kk;
  const bool ka_ok = kk_a < k_end;
  if constexpr (P == Pass::Forward) {
    if (a_in_packs<Shape>(prm)) {
      KD_UNROLL for (int i = 0; i < Shape::kLoadsA; ++i) {
        const TilePos pa = a_pack_pos(tid, i);
        const int m = m0 + pa.mn, kk = k0 + pa.kk;  // a whole pack is in K or out of it
        a_off[i] = kk < k_end && m < prm.g.m ? forward_w_offset(d, m, kk) : -1;
      }
    } else {
      KD_UNROLL for (int i = 0; i < Shape::kLoadsA; ++i) {
        const int m = m0 + a_load_pos(tid, i).mn;
        a_off[i] = ka_ok && m < prm.g.m ? forward_w_offset(d, m, kk_a) : -1;
      }
    }
    KD_UNROLL for (int i = 0; i < Shape::kLoadsB; ++i) {
      const int kk = k0 + b_load_pos<Shape>(false, tid, i).kk;
      b_off[i] = cols.ok[0] && kk < k_end
                     ? forward_x_offset(d, cols.col[0], table[kk - k0])
                     : -1;
    }
  }
  if constexpr (P == Pass::BackwardData) {
    const Tap ta = ka_ok ? table[kk_a - k0] : Tap{0, 0, 0};
    KD_UNROLL for (int i = 0; i < Shape::kLoadsA; ++i) {
      const int m = m0 + a_load_pos(tid, i).mn;
      a_off[i] = ka_ok && m < prm.g.m ? data_w_offset(d, m, ta) : -1;
    }
    KD_UNROLL for (int i = 0; i < Shape::kLoadsB; ++i) {
      const int kk = k0 + b_load_pos<Shape>(false, tid, i).kk;
      b_off[i] = cols.ok[0] && kk < k_end
                     ? data_dy_offset(d, cols.col[0], table[kk - k0])
                     : -1;
    }
  }
  if constexpr (P == Pass::BackwardWeight) {
    // A's kk is also B's kk here (both along K): one decomposition per thread per K tile.
    const WgtRow row = ka_ok ? table[kk_a - k0] : WgtRow{0, 0, 0, 0};
    KD_UNROLL for (int i = 0; i < kLoads; ++i) {
      const int m = m0 + a_load_pos(tid, i).mn;
      a_off[i] = ka_ok && m < prm.g.m ? weight_dy_offset(d, row, m) : -1;
    }
    KD_UNROLL for (int i = 0; i < kLoads; ++i)
      b_off[i] = ka_ok && cols.ok[i] ? weight_x_offset(d, row, cols.col[i]) : -1;
  }
}

// Global -> registers for the K tile starting at k0, widened to T (table: as stage_offsets).
template <class Shape = Tile64, class T, Pass P, class S>
KD_HOST_DEVICE inline void load_stage(const GemmParams<T, P, S>& prm, const BCols<P>& cols,
                                      int tid, int m0, int k0, int k_end,
                                      T (&a_reg)[Shape::kLoadsA], T (&b_reg)[Shape::kLoadsB],
                                      const KEntry<P>* table) {
  int64_t a_off[Shape::kLoadsA], b_off[Shape::kLoadsB];
  stage_offsets<Shape>(prm, cols, tid, m0, k0, k_end, a_off, b_off, table);
  if (a_in_packs<Shape>(prm)) {  // constant false where no pack load is compiled
    struct alignas(kPack * sizeof(S)) Pack {
      S v[kPack];
    };
    KD_UNROLL for (int p = 0; p < Shape::kLoadsA; p += kPack) {
      const Pack pack = a_off[p] >= 0 ? *reinterpret_cast<const Pack*>(prm.a + a_off[p]) : Pack{};
      KD_UNROLL for (int j = 0; j < kPack; ++j)
        a_reg[p + j] = a_off[p] >= 0 ? widen<T>(pack.v[j]) : T(0);
    }
  } else {
    KD_UNROLL for (int i = 0; i < Shape::kLoadsA; ++i)
      a_reg[i] = a_off[i] >= 0 ? widen<T>(prm.a[a_off[i]]) : T(0);
  }
  KD_UNROLL for (int i = 0; i < Shape::kLoadsB; ++i)
    b_reg[i] = b_off[i] >= 0 ? widen<T>(prm.b[b_off[i]]) : T(0);
}

// Registers -> shared tiles a_tile[kTileK][Shape::kStrideM], b_tile[kTileK][Shape::kStrideN].
template <class T, Pass P, class Shape = Tile64>
KD_HOST_DEVICE inline void store_stage(int tid, const T (&a_reg)[Shape::kLoadsA],
                                       const T (&b_reg)[Shape::kLoadsB], T* a_tile, T* b_tile,
                                       bool a_packs = false) {
  KD_UNROLL for (int i = 0; i < Shape::kLoadsA; ++i) {
    const TilePos pa = a_packs ? a_pack_pos(tid, i) : a_load_pos(tid, i);
    a_tile[pa.kk * Shape::kStrideM + pa.mn] = a_reg[i];
  }
  KD_UNROLL for (int i = 0; i < Shape::kLoadsB; ++i) {
    const TilePos pb = b_load_pos<Shape>(kBAlongK<P>, tid, i);
    b_tile[pb.kk * Shape::kStrideN + pb.mn] = b_reg[i];
  }
}

// acc += A_tile * B_tile for this thread's micro-tile.
template <class Shape = Tile64, class T>
KD_HOST_DEVICE inline void mma_tile(const T* a_tile, const T* b_tile, int tid,
                                    T (&acc)[Shape::kMicro][Shape::kMicro]) {
  constexpr int kMi = Shape::kMicro;
  KD_UNROLL for (int kk = 0; kk < kTileK; ++kk) {
    T a[kMi], b[kMi];
    KD_UNROLL for (int i = 0; i < kMi; ++i)
      a[i] = a_tile[kk * Shape::kStrideM + micro_row<Shape>(tid, i)];
    KD_UNROLL for (int j = 0; j < kMi; ++j)
      b[j] = b_tile[kk * Shape::kStrideN + micro_col<Shape>(tid, j)];
    KD_UNROLL for (int i = 0; i < kMi; ++i) {
      KD_UNROLL for (int j = 0; j < kMi; ++j) acc[i][j] += a[i] * b[j];
    }
  }
}

// Forward: y = acc + bias (+ residual) (assign). Backward data: dx += acc, or = acc when
// !prm.accumulate. Weight: workspace slice = acc.
template <class Layout, class T, Pass P, class S, int Mi>
KD_HOST_DEVICE inline void epilogue(const GemmParams<T, P, S>& prm, int tid, int m0, int n0,
                                    int slice, const T (&acc)[Mi][Mi]) {
  const ConvDims& d = prm.d;
  KD_UNROLL for (int j = 0; j < Mi; ++j) {
    const int col = n0 + Layout::col(tid, j);
    if (col >= prm.g.n) continue;
    if constexpr (P == Pass::Forward) {
      const FwdCol c = forward_col(d, col);
      KD_UNROLL for (int i = 0; i < Mi; ++i) {
        const int m = m0 + Layout::row(tid, i);
        if (m >= prm.g.m) continue;
        const int64_t e = forward_y_offset(d, c, m);
        T v = acc[i][j] + (prm.bias ? prm.bias[m] : T(0));
        if (prm.residual) v = v + widen<T>(prm.residual[e]);
        prm.out[e] = narrow<S>(v);
      }
    }
    if constexpr (P == Pass::BackwardData) {
      const DataCol c = data_col(d, col);
      KD_UNROLL for (int i = 0; i < Mi; ++i) {
        const int m = m0 + Layout::row(tid, i);
        if (m >= prm.g.m) continue;
        S& out = prm.out[data_dx_offset(d, c, m)];
        out = narrow<S>(prm.accumulate ? widen<T>(out) + acc[i][j] : acc[i][j]);
      }
    }
    if constexpr (P == Pass::BackwardWeight) {
      KD_UNROLL for (int i = 0; i < Mi; ++i) {
        const int m = m0 + Layout::row(tid, i);
        if (m < prm.g.m) prm.out[weight_out_offset(prm.g, slice, m, col)] = acc[i][j];
      }
    }
  }
}

}  // namespace conv_gemm
}  // namespace kd
