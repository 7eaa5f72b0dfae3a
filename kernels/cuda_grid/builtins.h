// The CUDA device language on the host, for kernels compiled by g++ on the grid emulator: the
// qualifiers, __shared__ memory, barriers, warp shuffles and votes, atomics, and the intrinsics
// our kernels use. Everything is in the global namespace, where CUDA puts it.
//  - __shared__ is `thread_local` (static at block scope): one copy per OS thread, and a block
//    never leaves its OS thread, so each running block has its own. Like a GPU's shared memory it
//    is not cleared between blocks. Dynamic shared memory: KD_DYNAMIC_SHARED(T, name) (both
//    builds), poisoned with 0xFF bytes (NaN, or -1) at every block start.
//  - Call sites (file:line) of barriers and warp operations come from __builtin_FILE/LINE, so
//    errors name the line in the kernel source.
//  - Atomics are GCC __atomic builtins (blocks of one launch run on several OS threads); float and
//    double atomicAdd are compare-and-swap loops.
//  - Arithmetic tolerance: the *_rn intrinsics are the correctly rounded IEEE operations, as on a
//    GPU, so they match bit for bit. The grid build never contracts a*b+c into an FMA, while nvcc
//    does by default, so plain float expressions may differ from a GPU's in the last bits. exp,
//    log, sqrt of double are glibc's (correctly rounded or within 1 ulp, as CUDA's double maths);
//    the fast float intrinsics (__expf, __logf, __fdividef, rsqrtf) are glibc's accurate versions,
//    within the GPU's documented 2 ulp + ... bounds of them, not bit-equal to them.
// Host-only header, part of kernels/cuda_grid/grid.h.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cuda_grid/block.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ thread_local
#define __constant__
#define __align__(n) __attribute__((aligned(n)))

#define KD_DYNAMIC_SHARED(T, name) \
  T* name = reinterpret_cast<T*>(::kd::grid::detail::runner().dynamic_shared())

// ---- barriers and warp collectives ----

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::kd::grid::detail::wait_barrier(file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  ::kd::grid::detail::warp_collective(::kd::grid::WarpOp::SyncWarp, mask, 0, 0, 32, file, line);
}
inline void __threadfence() {}
inline void __threadfence_block() {}

namespace kd {
namespace grid {
namespace detail {
template <class T>
uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of a wide type");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}
template <class T>
T shuffle(WarpOp op, unsigned mask, T var, int arg, int width, const char* file, int line) {
  return from_bits<T>(warp_collective(op, mask, to_bits(var), arg, width, file, line));
}
}  // namespace detail
}  // namespace grid
}  // namespace kd

template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32,
              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::kd::grid::detail::shuffle(::kd::grid::WarpOp::Shfl, mask, var, src_lane, width, file,
                                     line);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                 const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::kd::grid::detail::shuffle(::kd::grid::WarpOp::ShflUp, mask, var, int(delta), width,
                                     file, line);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                   const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::kd::grid::detail::shuffle(::kd::grid::WarpOp::ShflDown, mask, var, int(delta), width,
                                     file, line);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                  const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::kd::grid::detail::shuffle(::kd::grid::WarpOp::ShflXor, mask, var, lane_mask, width,
                                     file, line);
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return unsigned(::kd::grid::detail::warp_collective(::kd::grid::WarpOp::Ballot, mask,
                                                      predicate != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return int(::kd::grid::detail::warp_collective(::kd::grid::WarpOp::Any, mask, predicate != 0, 0,
                                                 32, file, line));
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return int(::kd::grid::detail::warp_collective(::kd::grid::WarpOp::All, mask, predicate != 0, 0,
                                                 32, file, line));
}
inline unsigned __activemask() { return ::kd::grid::detail::active_lanes(); }

// ---- atomics (relaxed, device scope) ----

#define KD_GRID_INTEGER_ATOMIC(name, builtin)                      \
  template <class T, class = std::enable_if_t<std::is_integral_v<T>>> \
  T name(T* address, T val) {                                        \
    return builtin(address, val, __ATOMIC_RELAXED);                  \
  }
KD_GRID_INTEGER_ATOMIC(atomicAdd, __atomic_fetch_add)
KD_GRID_INTEGER_ATOMIC(atomicSub, __atomic_fetch_sub)
KD_GRID_INTEGER_ATOMIC(atomicAnd, __atomic_fetch_and)
KD_GRID_INTEGER_ATOMIC(atomicOr, __atomic_fetch_or)
KD_GRID_INTEGER_ATOMIC(atomicXor, __atomic_fetch_xor)
#undef KD_GRID_INTEGER_ATOMIC
template <class T>
T atomicExch(T* address, T val) {
  T old;
  __atomic_exchange(address, &val, &old, __ATOMIC_RELAXED);
  return old;
}
template <class T>
T atomicCAS(T* address, T compare, T val) {
  __atomic_compare_exchange(address, &compare, &val, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;  // the old value either way
}
template <class T, class = std::enable_if_t<std::is_integral_v<T>>>
T atomicMax(T* address, T val) {
  T old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (old < val && !__atomic_compare_exchange_n(address, &old, val, true, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED)) {
  }
  return old;
}
template <class T, class = std::enable_if_t<std::is_integral_v<T>>>
T atomicMin(T* address, T val) {
  T old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (val < old && !__atomic_compare_exchange_n(address, &old, val, true, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED)) {
  }
  return old;
}
namespace kd {
namespace grid {
namespace detail {
template <class F, class Bits>
F float_atomic_add(F* address, F val) {
  Bits* word = reinterpret_cast<Bits*>(address);
  Bits old = __atomic_load_n(word, __ATOMIC_RELAXED);
  for (;;) {
    const F sum = from_bits<F>(old) + val;
    Bits desired;
    std::memcpy(&desired, &sum, sizeof(F));
    if (__atomic_compare_exchange_n(word, &old, desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return from_bits<F>(old);
  }
}
}  // namespace detail
}  // namespace grid
}  // namespace kd
inline float atomicAdd(float* address, float val) {
  return ::kd::grid::detail::float_atomic_add<float, uint32_t>(address, val);
}
inline double atomicAdd(double* address, double val) {
  return ::kd::grid::detail::float_atomic_add<double, uint64_t>(address, val);
}

// ---- loads, bit casts, rounding-explicit arithmetic, fast maths ----

template <class T>
T __ldg(const T* p) {
  return *p;
}
inline float __int_as_float(int v) { return ::kd::grid::detail::from_bits<float>(uint32_t(v)); }
inline int __float_as_int(float v) { return int(uint32_t(::kd::grid::detail::to_bits(v))); }
inline unsigned __float_as_uint(float v) { return uint32_t(::kd::grid::detail::to_bits(v)); }
inline float __uint_as_float(unsigned v) { return ::kd::grid::detail::from_bits<float>(v); }
inline double __longlong_as_double(long long v) {
  return ::kd::grid::detail::from_bits<double>(uint64_t(v));
}
inline long long __double_as_longlong(double v) {
  return (long long)::kd::grid::detail::to_bits(v);
}

namespace kd {
namespace grid {
namespace detail {
// A volatile round trip forces each operation to be rounded on its own (no contraction).
template <class T>
T rounded(T v) {
  volatile T r = v;
  return r;
}
}  // namespace detail
}  // namespace grid
}  // namespace kd
#define KD_GRID_RN(name, T, expr) \
  inline T name(T a, T b) { return ::kd::grid::detail::rounded<T>(expr); }
KD_GRID_RN(__fadd_rn, float, a + b)
KD_GRID_RN(__fsub_rn, float, a - b)
KD_GRID_RN(__fmul_rn, float, a * b)
KD_GRID_RN(__fdiv_rn, float, a / b)
KD_GRID_RN(__dadd_rn, double, a + b)
KD_GRID_RN(__dsub_rn, double, a - b)
KD_GRID_RN(__dmul_rn, double, a * b)
KD_GRID_RN(__ddiv_rn, double, a / b)
#undef KD_GRID_RN
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }

// CUDA's device min/max overloads for any arithmetic pair (usual conversions).
template <class A, class B,
          class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B,
          class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(a) < C(b) ? C(b) : C(a);
}
