// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011). A draw is a pure function of
// (seed, stream, counter), so weight init, shuffling and augmentation give the same numbers on any
// thread count and, later, on the GPU (hence KD_HOST_DEVICE). Streams separate independent uses.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define KD_HOST_DEVICE __host__ __device__
#else
#define KD_HOST_DEVICE
#endif

namespace kd {

struct Philox4 {
  uint32_t v[4];
};

KD_HOST_DEVICE inline Philox4 philox4x32(uint64_t seed, uint64_t stream, uint64_t counter) {
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 bits, from the first word of the block at `counter`.
KD_HOST_DEVICE inline float philox_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
  return static_cast<float>(philox4x32(seed, stream, counter).v[0] >> 8) * (1.0f / 16777216.0f);
}

// Uniform in [0, 1) with 53 bits.
KD_HOST_DEVICE inline double philox_uniform_double(uint64_t seed, uint64_t stream,
                                                   uint64_t counter) {
  Philox4 r = philox4x32(seed, stream, counter);
  uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 21) ^ (r.v[1] >> 11);
  return static_cast<double>(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Standard normal by Box-Muller on the block's words.
KD_HOST_DEVICE inline double philox_normal(uint64_t seed, uint64_t stream, uint64_t counter) {
  Philox4 r = philox4x32(seed, stream, counter);
  double u1 = (static_cast<double>(r.v[0]) + 1.0) * (1.0 / 4294967297.0);  // (0, 1]
  double u2 = static_cast<double>(r.v[1]) * (1.0 / 4294967296.0);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// Uniform integer in [0, n), n > 0 (bias below 2^-32 for the sizes used here).
KD_HOST_DEVICE inline uint64_t philox_below(uint64_t seed, uint64_t stream, uint64_t counter,
                                            uint64_t n) {
  Philox4 r = philox4x32(seed, stream, counter);
  uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
  return bits % n;
}

// Named streams, so two uses of one seed never draw the same numbers.
enum RngStream : uint64_t {
  kStreamInit = 1,
  kStreamShuffle = 2,
  kStreamAugment = 3,
  kStreamSubset = 4,
  kStreamMixup = 5,
  // Dropout masks: the stream is kStreamDropout | layer << 32 (see kernels/elementwise.h), so
  // every layer of a model has its own stream and none meets the streams above.
  kStreamDropout = 6,
  kStreamTest = 99,
};

}  // namespace kd
