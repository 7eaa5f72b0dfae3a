// Element updates and multi-tensor packing for the CUDA optimizers (kernels/cuda/optimizer.cu),
// plain C++ with KD_HOST_DEVICE so host tests run the same code. The updates are the formulas of
// kernels/cpu/optimizer.cpp in T, in the same operation order, with every operation rounded on its
// own (no fused multiply-add): on the GPU by the __f*_rn / __d*_rn intrinsics, which nvcc never
// contracts; on the host through a volatile store. The result is the literal formula, the same
// bits on both sides. (The CPU build may contract a*b+c into FMA, so cpu:: can differ by an ulp.)
#pragma once
#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "base/check.h"
#include "kernels/optimizer.h"
#include "base/philox.h"  // KD_HOST_DEVICE

namespace kd {
namespace optim_math {

#if !defined(__CUDA_ARCH__)
// Host: a volatile store forces the rounding, so the compiler cannot fuse it into an FMA.
template <class T>
inline T rounded(T x) {
  volatile T r = x;
  return r;
}
#endif

// One body per type and operation: the device pass takes the intrinsic, the host pass the
// rounded plain operation.
#if defined(__CUDA_ARCH__)
#define KD_RN_BODY(intrinsic, expr) return intrinsic
#else
#define KD_RN_BODY(intrinsic, expr) return rounded(expr)
#endif
KD_HOST_DEVICE inline float rn_add(float a, float b) { KD_RN_BODY(__fadd_rn(a, b), a + b); }
KD_HOST_DEVICE inline double rn_add(double a, double b) { KD_RN_BODY(__dadd_rn(a, b), a + b); }
KD_HOST_DEVICE inline float rn_sub(float a, float b) { KD_RN_BODY(__fsub_rn(a, b), a - b); }
KD_HOST_DEVICE inline double rn_sub(double a, double b) { KD_RN_BODY(__dsub_rn(a, b), a - b); }
KD_HOST_DEVICE inline float rn_mul(float a, float b) { KD_RN_BODY(__fmul_rn(a, b), a * b); }
KD_HOST_DEVICE inline double rn_mul(double a, double b) { KD_RN_BODY(__dmul_rn(a, b), a * b); }
KD_HOST_DEVICE inline float rn_div(float a, float b) { KD_RN_BODY(__fdiv_rn(a, b), a / b); }
KD_HOST_DEVICE inline double rn_div(double a, double b) { KD_RN_BODY(__ddiv_rn(a, b), a / b); }
KD_HOST_DEVICE inline float rn_sqrt(float a) { KD_RN_BODY(__fsqrt_rn(a), std::sqrt(a)); }
KD_HOST_DEVICE inline double rn_sqrt(double a) { KD_RN_BODY(__dsqrt_rn(a), std::sqrt(a)); }
#undef KD_RN_BODY

// Per-step scalars, converted to T on the host exactly as the CPU converts them.
// lr_device (SgdParams::lr_device): the kernel replaces lr by T(*lr_device), converted as here.
template <class T>
struct SgdCoefficients {
  T lr, momentum, weight_decay;
  bool use_momentum, nesterov, first_step;
  const double* lr_device;
};

template <class T>
SgdCoefficients<T> sgd_coefficients(const SgdParams& h, bool first_step) {
  return {T(h.lr),   T(h.momentum), T(h.weight_decay), h.momentum != 0,
          h.nesterov, first_step,   h.lr_device};
}

template <class T>
struct AdamCoefficients {
  T beta1, beta2, weight_decay, eps, one_minus_beta1, one_minus_beta2, step_size, bias2_sqrt;
};

// base^e for e >= 1 by repeated squaring, every product rounded on its own: the same bits on the
// host and the device. (std::pow, which the CPU kernels use as PyTorch does, is not available
// with those bits on the device; the two differ by a few ulps of a double at most.)
KD_HOST_DEVICE inline double power(double base, int64_t e) {
  double result = 1.0, square = base;
  for (; e > 0; e /= 2) {
    if (e % 2) result = rn_mul(result, square);
    square = rn_mul(square, square);
  }
  return result;
}

// The step-dependent pair, in double as PyTorch forms it: lr / (1 - beta1^step) and
// sqrt(1 - beta2^step), then converted to T.
template <class T>
KD_HOST_DEVICE inline void adam_step_terms(double lr, double beta1, double beta2, int64_t step,
                                           T* step_size, T* bias2_sqrt) {
  const double bias1 = rn_sub(1.0, power(beta1, step));
  const double bias2 = rn_sub(1.0, power(beta2, step));
  *step_size = T(rn_div(lr, bias1));
  *bias2_sqrt = T(rn_sqrt(bias2));
}

// AdamParams' device scalars as the CUDA kernel reads them; null ones take the host's value.
struct AdamDeviceScalars {
  const double* lr;
  const int64_t* step;
  double host_lr, beta1, beta2;
  int64_t host_step;
};

// Host side, for a step known on the host; with AdamParams' device scalars the kernel calls
// adam_step_terms itself on the values it reads.
template <class T>
AdamCoefficients<T> adam_coefficients(const AdamParams& h, int64_t step) {
  KD_CHECK(step >= 1, "adam_update: step counts from 1, got " << step);
  AdamCoefficients<T> c{T(h.beta1),       T(h.beta2),       T(h.weight_decay), T(h.eps),
                        T(1.0 - h.beta1), T(1.0 - h.beta2), T(0),              T(0)};
  adam_step_terms(h.lr, h.beta1, h.beta2, step, &c.step_size, &c.bias2_sqrt);
  return c;
}

// buf is read only when momentum is on and it is not the first step, written when momentum is on.
template <class T>
KD_HOST_DEVICE inline void sgd_element(const SgdCoefficients<T>& c, T& param, T grad, T& buf) {
  T g = rn_add(grad, rn_mul(c.weight_decay, param));
  if (c.use_momentum) {
    buf = c.first_step ? g : rn_add(rn_mul(c.momentum, buf), g);
    g = c.nesterov ? rn_add(g, rn_mul(c.momentum, buf)) : buf;
  }
  param = rn_sub(param, rn_mul(c.lr, g));
}

template <class T>
KD_HOST_DEVICE inline void adam_element(const AdamCoefficients<T>& c, T& param, T grad, T& m,
                                        T& v) {
  const T g = rn_add(grad, rn_mul(c.weight_decay, param));
  m = rn_add(rn_mul(c.beta1, m), rn_mul(c.one_minus_beta1, g));
  v = rn_add(rn_mul(c.beta2, v), rn_mul(c.one_minus_beta2, rn_mul(g, g)));
  const T denom = rn_add(rn_div(rn_sqrt(v), c.bias2_sqrt), c.eps);
  param = rn_sub(param, rn_mul(c.step_size, rn_div(m, denom)));
}

// --- multi-tensor packing --------------------------------------------------------------------
// A launch covers up to kMultiTensorChunk non-empty tensors; tensor t of a pack owns blocks
// [first_block[t], first_block[t + 1]), each block kBlockElems consecutive elements of it.
constexpr int kPackMax = cuda::kMultiTensorChunk;
constexpr int64_t kBlockElems = 2048;

struct PackPlan {
  int count = 0;              // tensors in this pack
  int tensor[kPackMax] = {};  // their indices in the caller's list
  int64_t size[kPackMax] = {};
  int64_t first_block[kPackMax + 1] = {};  // prefix offsets; first_block[count] = blocks
  int64_t blocks() const { return first_block[count]; }
};

// Empty tensors are skipped, so every packed tensor owns at least one block.
inline std::vector<PackPlan> plan_packs(int count, const int64_t* sizes) {
  std::vector<PackPlan> packs;
  PackPlan cur;
  for (int i = 0; i < count; ++i) {
    KD_CHECK(sizes[i] >= 0, "multi-tensor update: tensor " << i << " has size " << sizes[i]);
    if (sizes[i] == 0) continue;
    cur.tensor[cur.count] = i;
    cur.size[cur.count] = sizes[i];
    cur.first_block[cur.count + 1] =
        cur.first_block[cur.count] + (sizes[i] + kBlockElems - 1) / kBlockElems;
    KD_CHECK(cur.first_block[cur.count + 1] <= int64_t(INT_MAX), "multi-tensor update: too large");
    if (++cur.count == kPackMax) {
      packs.push_back(cur);
      cur = PackPlan();
    }
  }
  if (cur.count > 0) packs.push_back(cur);
  return packs;
}

// The pack slot owning `block`: the last t with first_block[t] <= block (binary search over a
// strictly increasing prefix).
KD_HOST_DEVICE inline int pack_slot_of_block(const int64_t* first_block, int count, int64_t block) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (first_block[mid] <= block)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// The one host driver of every multi-tensor launch (optimizer.cu's updates, cast.cu's casts):
// plans the packs of `count` tensors and calls launch(plan, std::integral_constant<int, Cap>{})
// once per pack, Cap being the slots of the by-value kernel argument to fill. A call of a few
// tensors (the per-tensor entries) takes kSmallPack slots, so its launch copies a small argument;
// more take kPackMax. `what` names the call in errors.
constexpr int kSmallPack = 4;
template <class LaunchPack>
void launch_in_packs(int count, const int64_t* sizes, const char* what, LaunchPack launch) {
  KD_CHECK(count >= 0, what << ": negative tensor count " << count);
  if (count == 0) return;
  KD_CHECK(sizes, what << ": null size list");
  for (const PackPlan& plan : plan_packs(count, sizes)) {
    if (count <= kSmallPack)
      launch(plan, std::integral_constant<int, kSmallPack>{});
    else
      launch(plan, std::integral_constant<int, kPackMax>{});
  }
}

}  // namespace optim_math
}  // namespace kd
