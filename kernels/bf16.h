// bfloat16: the top 16 bits of an IEEE float (sign, 8 exponent bits, 7 mantissa bits), the
// storage type of the opt-in bf16 precision (activations and weights in bf16, maths in fp32).
// One definition of the rounding for every device (KD_HOST_DEVICE): the CPU kernels, the CUDA
// kernels and the tests' expectations all call these, so a cast is bitwise the same everywhere.
//  - float -> bf16 rounds to nearest, ties to even (as PyTorch and CUDA's __float2bfloat16_rn do);
//    a float past the largest finite bf16 by half an ulp or more becomes infinity; NaN stays NaN
//    (sign kept, quiet bit set) so a NaN can never round to infinity.
//  - double -> bf16 is one correct rounding, not two: the double is first rounded to a float
//    with round-to-odd (exact, or the truncation with its last bit set), which keeps 16 more
//    bits than bf16 and records inexactness, so the float -> bf16 step above then rounds as the
//    exact double would (rounding through a nearest float would move some values onto a tie).
//  - bf16 -> float and -> double are exact.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "base/philox.h"  // KD_HOST_DEVICE

namespace kd {

struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2, "bf16 is two bytes");

KD_HOST_DEVICE inline uint32_t float_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
KD_HOST_DEVICE inline float float_from_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

KD_HOST_DEVICE inline bf16 bf16_from_float(float x) {
  const uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x0040u)};  // NaN
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);  // ties to the even upper half
  return bf16{uint16_t((u + rounding) >> 16)};
}

KD_HOST_DEVICE inline float bf16_to_float(bf16 h) {
  return float_from_bits(uint32_t(h.bits) << 16);
}

// The double rounded to a float toward zero, with the last mantissa bit set when that dropped
// anything (round-to-odd). Infinities and NaNs map to themselves; a finite double beyond the
// float range becomes the largest float (whose last bit is set), one below the smallest
// subnormal becomes the smallest subnormal, each with the double's sign.
KD_HOST_DEVICE inline float float_round_to_odd(double d) {
  const float f = static_cast<float>(d);      // nearest
  if (!(d == d) || double(f) == d) return f;  // NaN or exact
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) == 0x7f800000u) return float_from_bits((u & 0x80000000u) | 0x7f7fffffu);
  const double magnitude_f = f < 0 ? -double(f) : double(f);
  const double magnitude_d = d < 0 ? -d : d;
  if (magnitude_f > magnitude_d) u -= 1u;  // one ulp back toward zero (f is not zero here)
  return float_from_bits(u | 1u);
}

KD_HOST_DEVICE inline bf16 bf16_from_double(double d) {
  return bf16_from_float(float_round_to_odd(d));
}

KD_HOST_DEVICE inline double bf16_to_double(bf16 h) { return double(bf16_to_float(h)); }

// bf16 widened to T (float or double): exact.
template <class T>
KD_HOST_DEVICE inline T bf16_to(bf16 h) {
  return static_cast<T>(bf16_to_float(h));
}

// The element type T's rounding to bf16 (T = float or double).
KD_HOST_DEVICE inline bf16 to_bf16_rn(float x) { return bf16_from_float(x); }
KD_HOST_DEVICE inline bf16 to_bf16_rn(double x) { return bf16_from_double(x); }

// Kernels templated on a compute type T and an activation storage type S (T itself, or bf16):
// widen<T>(s) reads a stored value (exact), narrow<S>(t) stores one (rounded once to bf16).
template <class T>
KD_HOST_DEVICE inline T widen(T v) {
  return v;
}
template <class T>
KD_HOST_DEVICE inline T widen(bf16 v) {
  return bf16_to<T>(v);
}
template <class S, class T>
KD_HOST_DEVICE inline S narrow(T v) {
  if constexpr (std::is_same<S, bf16>::value) return to_bf16_rn(v);
  else return v;
}

}  // namespace kd
