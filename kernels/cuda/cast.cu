// CUDA casts between T and bf16 (contract: kernels/cast.h), device pointers, on the compute
// stream. to_bf16 and from_bf16 ASSIGN, or ACCUMULATE when told to. One grid-stride loop per
// cast with int64 indices; elements are independent, so results never depend on the launch
// shape, and the rounding is kernels/bf16.h's: bitwise the CPU's (no FMA can form in a sum
// followed by a rounding).
// The multi-tensor casts pack up to kMultiTensorChunk tensors into one launch the way the
// multi-tensor optimizer does (optim_math::plan_packs: each block casts kBlockElems consecutive
// elements of one tensor), with the pointers and sizes in a by-value kernel argument.
#include <type_traits>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cast.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/optimizer_math.h"

namespace kd {
namespace cuda {

namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void to_bf16_kernel(int64_t n, const T* x, bf16* y, bool accumulate) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = to_bf16_rn(accumulate ? bf16_to<T>(y[i]) + x[i] : x[i]);
}

template <class T>
__global__ void from_bf16_kernel(int64_t n, const bf16* x, T* y, bool accumulate) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = accumulate ? y[i] + bf16_to<T>(x[i]) : bf16_to<T>(x[i]);
}

// Up to Cap tensors of one multi-tensor cast: From to To, tensor t owning blocks
// [first_block[t], first_block[t + 1]).
template <class From, class To, int Cap>
struct CastPack {
  int count;
  int64_t size[Cap];
  int64_t first_block[Cap + 1];
  const From* x[Cap];
  To* y[Cap];
};
static_assert(sizeof(CastPack<double, bf16, optim_math::kPackMax>) <= 32764,
              "kernel argument too large");

template <class From, class To, int Cap>
__global__ void cast_multi_kernel(const CastPack<From, To, Cap> a, bool accumulate) {
  const int64_t block = blockIdx.x;
  const int t = optim_math::pack_slot_of_block(a.first_block, a.count, block);
  const int64_t begin = (block - a.first_block[t]) * optim_math::kBlockElems;
  const int64_t end = min(a.size[t], begin + optim_math::kBlockElems);
  const From* x = a.x[t];
  To* y = a.y[t];
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    if constexpr (std::is_same<To, bf16>::value)
      y[i] = to_bf16_rn(accumulate ? bf16_to<From>(y[i]) + x[i] : x[i]);
    else
      y[i] = accumulate ? y[i] + bf16_to<To>(x[i]) : bf16_to<To>(x[i]);
  }
}

template <class From, class To>
void cast_multi(int count, const int64_t* sizes, const From* const* xs, To* const* ys,
                bool accumulate) {
  KD_CHECK(count <= 0 || (xs && ys), "multi-tensor cast: null pointer list");
  optim_math::launch_in_packs(count, sizes, "multi-tensor cast", [&](const auto& plan, auto cap) {
    constexpr int kCap = decltype(cap)::value;
    CastPack<From, To, kCap> a{};
    a.count = plan.count;
    for (int s = 0; s < plan.count; ++s) {
      const int i = plan.tensor[s];
      KD_CHECK(xs[i] && ys[i], "multi-tensor cast: tensor " << i << " has a null pointer");
      a.size[s] = plan.size[s], a.x[s] = xs[i], a.y[s] = ys[i];
    }
    for (int s = 0; s <= plan.count; ++s) a.first_block[s] = plan.first_block[s];
    KD_LAUNCH((cast_multi_kernel<From, To, kCap>), static_cast<unsigned>(plan.blocks()), kThreads,
              0, a, accumulate);
  });
}

}  // namespace

template <class T>
void to_bf16_multi(int count, const int64_t* sizes, const T* const* xs, bf16* const* ys) {
  cast_multi<T, bf16>(count, sizes, xs, ys, false);
}

template <class T>
void from_bf16_multi(int count, const int64_t* sizes, const bf16* const* xs, T* const* ys,
                     bool accumulate) {
  cast_multi<bf16, T>(count, sizes, xs, ys, accumulate);
}

template <class T>
void to_bf16(int64_t n, const T* x, bf16* y, bool accumulate) {
  if (n <= 0) return;
  KD_LAUNCH(to_bf16_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, x, y, accumulate);
}

template <class T>
void from_bf16(int64_t n, const bf16* x, T* y, bool accumulate) {
  if (n <= 0) return;
  KD_LAUNCH(from_bf16_kernel<T>, grid_for(n, kThreads), kThreads, 0, n, x, y, accumulate);
}

KD_DEFINE_REGISTRAR(register_cast, KD_CAST_KERNELS)

}  // namespace cuda
}  // namespace kd
