// TF32 rounding as a GPU's cvt.rna.tf32.f32 does it: keep the float's sign, exponent and top 10
// mantissa bits, round to nearest with ties away from zero on the 13 bits dropped (which become
// zero); infinities and NaNs pass through, and a float that rounds past the largest finite TF32
// becomes infinity. Host code: the grid emulator's version of the instruction
// (kernels/cuda_grid/tensor_core.h) and the tests' oracle for the tensor-core kernels.
#pragma once
#include <cstdint>
#include <cstring>

namespace kd {

inline uint32_t tf32_round_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u) return bits;  // inf, NaN
  bits += 0x1000u;  // half of the dropped bits, added to the magnitude: ties go away from zero
  return bits & ~0x1fffu;
}
inline float tf32_round(float x) {
  const uint32_t bits = tf32_round_bits(x);
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

}  // namespace kd
