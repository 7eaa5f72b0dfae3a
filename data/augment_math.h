// The per-sample draws and per-pixel maths of the augmentations, as KD_HOST_DEVICE inline
// functions shared by make_batch (CPU, data/augment.cpp) and make_batch_device
// (data/cuda/augment.cu), so both give the same pixels bit for bit. After the draw everything is
// integer or fixed-point maths on uint8-range values (torchvision's PIL path also works on uint8
// images): rotation uses Q30 sin/cos from an integer series, colour factors are Q16, hue is an
// exact integer HSV rotation. No libm call, float rounding or FMA contraction can tell the two
// sides apart; the only floats are the final normalization (IEEE division and subtraction, which
// host and device round the same way; no fast-math) and MixUp (explicit fma, see mixup_value).
#pragma once
#include <cmath>
#include <cstdint>

#include "base/philox.h"

namespace kd {
namespace data {

constexpr int32_t kQ16One = 65536;              // colour factor 1.0
constexpr int64_t kQ30One = int64_t{1} << 30;   // sin/cos 1.0
constexpr int32_t kHueTurn = 6 * 65536;         // hue units per full turn (65536 per sextant)
constexpr int32_t kDegreeQ16 = 65536;           // angle units per degree

// Integer form of AugmentSpec, built and validated by make_augment_plan (data/augment.h), so no
// float reaches the draws. Passed by value to the GPU kernel.
struct AugmentPlan {
  int crop_pad = 0;
  bool hflip = false, vflip = false;
  int32_t rotation_max = 0;  // largest |angle| in 2^-16 degrees; 0 = off
  int32_t brightness_lo = kQ16One, brightness_hi = kQ16One;  // factor range, Q16, inclusive
  int32_t contrast_lo = kQ16One, contrast_hi = kQ16One;
  int32_t saturation_lo = kQ16One, saturation_hi = kQ16One;
  int32_t hue_max = 0;           // largest |hue shift| in 1/kHueTurn turns
  uint32_t noise_threshold = 0;  // replaced when the 24-bit draw is below this (p * 2^24)
};

// The choices made for one sample. Output pixel (y, x) comes from source pixel
// (y' + dy, x' + dx) with y' = vflip ? h-1-y : y and x' = hflip ? w-1-x : x, or is the padding
// value when that lies outside the image: crop first, then flips, as torchvision composes them.
// The fields after vflip exist only in draws from an AugmentPlan; their defaults are identities.
struct SampleAugment {
  int dy = 0, dx = 0;  // in [-crop_pad, crop_pad]
  bool hflip = false, vflip = false;
  int32_t angle = 0;  // 2^-16 degrees, counter-clockwise; cos_q30/sin_q30 follow it (set_rotation)
  int32_t cos_q30 = static_cast<int32_t>(kQ30One), sin_q30 = 0;
  int32_t brightness = kQ16One, contrast = kQ16One, saturation = kQ16One;  // Q16 factors
  int32_t hue_shift = 0;  // 1/kHueTurn turns
  bool noise = false;     // the whole sample is replaced by uniform pixels
};

// Counter layout: step in the high 32 bits, position << 4 below (positions < 2^28), and the low 4
// bits number the Philox blocks one sample may use: block 0 crop/flips, 1 rotation/noise,
// 2 colour jitter.
KD_HOST_DEVICE inline uint64_t augment_counter(uint64_t step, uint64_t position, uint64_t block) {
  return (step << 32) + (position << 4) + block;
}

// Block 0 words: v[0] -> dy, v[1] -> dx, v[2] -> hflip, v[3] -> vflip (top bit: p = 0.5).
KD_HOST_DEVICE inline SampleAugment draw_sample_augment(int crop_pad, bool hflip, bool vflip,
                                                        uint64_t seed, uint64_t step,
                                                        uint64_t position) {
  const Philox4 r = philox4x32(seed, kStreamAugment, augment_counter(step, position, 0));
  SampleAugment a;
  if (crop_pad > 0) {
    const uint32_t span = 2u * static_cast<uint32_t>(crop_pad) + 1u;
    a.dy = static_cast<int>(r.v[0] % span) - crop_pad;
    a.dx = static_cast<int>(r.v[1] % span) - crop_pad;
  }
  a.hflip = hflip && (r.v[2] >> 31) != 0;
  a.vflip = vflip && (r.v[3] >> 31) != 0;
  return a;
}

// floor(v / 2^k) for either sign (>> on negative values is implementation-defined before C++20).
KD_HOST_DEVICE inline int64_t floor_shift(int64_t v, int k) {
  return v >= 0 ? (v >> k) : -((-v + (int64_t{1} << k) - 1) >> k);
}

// sin and cos of r in [0, 45] degrees (r in 2^-16 degrees), Q30, by Horner-form Taylor series
// in fixed point: terms to x^11 / x^12 leave a truncation error below 1e-11, the floors ~1e-8.
KD_HOST_DEVICE inline void sincos_q30_first_octant(int64_t r, int64_t* sin_out, int64_t* cos_out) {
  // x = r * pi / (180 * 2^16) in Q30; 1228166276394 = round(pi / 180 * 2^46).
  const int64_t x = (r * 1228166276394LL + (int64_t{1} << 31)) >> 32;
  const int64_t x2 = (x * x + (kQ30One >> 1)) >> 30;
  int64_t s = kQ30One;
  const int sin_div[5] = {110, 72, 42, 20, 6};  // (2k)(2k+1), innermost first
  for (int i = 0; i < 5; ++i) s = kQ30One - ((x2 * s) >> 30) / sin_div[i];
  int64_t c = kQ30One;
  const int cos_div[6] = {132, 90, 56, 30, 12, 2};  // (2k-1)(2k), innermost first
  for (int i = 0; i < 6; ++i) c = kQ30One - ((x2 * c) >> 30) / cos_div[i];
  *sin_out = (x * s) >> 30;
  *cos_out = c;
}

// Sets the angle (|angle| <= 180 degrees, in 2^-16 degrees) and its Q30 cos/sin: quarter turns
// are exact, the remainder (|r| <= 45 degrees) goes through the series. Also the test hook for a
// forced angle.
KD_HOST_DEVICE inline void set_rotation(SampleAugment* a, int32_t angle) {
  const int64_t quarter = 90LL * kDegreeQ16;
  const int64_t k = (angle + 4 * quarter + quarter / 2) / quarter - 4;  // nearest quarter turn
  const int64_t r = angle - k * quarter;                                // in [-45, 45) degrees
  int64_t s, c;
  sincos_q30_first_octant(r < 0 ? -r : r, &s, &c);
  if (r < 0) s = -s;
  const int quadrant = static_cast<int>((k + 4) & 3);
  const int64_t cos_table[4] = {c, -s, -c, s}, sin_table[4] = {s, c, -s, -c};
  a->angle = angle;
  a->cos_q30 = static_cast<int32_t>(cos_table[quadrant]);
  a->sin_q30 = static_cast<int32_t>(sin_table[quadrant]);
}

KD_HOST_DEVICE inline int32_t draw_in_range(uint32_t word, int32_t lo, int32_t hi) {
  return lo + static_cast<int32_t>(word % static_cast<uint32_t>(hi - lo + 1));
}

// All draws of one sample. Block 0 is the old draw above (old seeds reproduce crop and flips);
// block 1: v[0..1] -> angle (64 bits, uniform in [-max, max]), v[2] -> noise (top 24 bits);
// block 2: v[0] brightness, v[1] contrast, v[2] saturation, v[3] hue.
KD_HOST_DEVICE inline SampleAugment draw_sample_augment(const AugmentPlan& p, uint64_t seed,
                                                        uint64_t step, uint64_t position) {
  SampleAugment a = draw_sample_augment(p.crop_pad, p.hflip, p.vflip, seed, step, position);
  if (p.rotation_max > 0 || p.noise_threshold > 0) {
    const Philox4 r = philox4x32(seed, kStreamAugment, augment_counter(step, position, 1));
    if (p.rotation_max > 0) {
      const uint64_t span = 2ull * static_cast<uint64_t>(p.rotation_max) + 1ull;
      const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
      set_rotation(&a, static_cast<int32_t>(static_cast<int64_t>(bits % span) - p.rotation_max));
    }
    a.noise = (r.v[2] >> 8) < p.noise_threshold;
  }
  const bool color = p.brightness_lo != p.brightness_hi || p.contrast_lo != p.contrast_hi ||
                     p.saturation_lo != p.saturation_hi || p.hue_max > 0;
  if (color) {
    const Philox4 r = philox4x32(seed, kStreamAugment, augment_counter(step, position, 2));
    a.brightness = draw_in_range(r.v[0], p.brightness_lo, p.brightness_hi);
    a.contrast = draw_in_range(r.v[1], p.contrast_lo, p.contrast_hi);
    a.saturation = draw_in_range(r.v[2], p.saturation_lo, p.saturation_hi);
    a.hue_shift = draw_in_range(r.v[3], -p.hue_max, p.hue_max);
  }
  return a;
}

// ---- geometry -------------------------------------------------------------------------------

// Where output pixel (y, x) comes from in the source image: rotation (inverse map), then flips,
// then the crop shift. False when it lands outside at either stage: the pixel is the fill value
// 0, which RandomCrop's padding and RandomRotation's fill both are.
// Rotation follows PIL's rotate(expand=False, NEAREST): pixel centres, centre (w/2, h/2),
//   xin = cos (x + 1/2 - w/2) - sin (y + 1/2 - h/2) + w/2, yin = sin (..) + cos (..) + h/2,
// source = (floor(yin), floor(xin)); in doubled coordinates X2 = 2x + 1 - w this is integer
// maths on Q30 cos/sin (exact quarter turns; identity at angle 0).
KD_HOST_DEVICE inline bool geometric_source(const SampleAugment& a, int h, int w, int y, int x,
                                            int* sy, int* sx) {
  int ry = y, rx = x;
  if (a.sin_q30 != 0 || a.cos_q30 != kQ30One) {
    const int64_t x2 = 2LL * x + 1 - w, y2 = 2LL * y + 1 - h;
    const int64_t xin = a.cos_q30 * x2 - a.sin_q30 * y2 + (static_cast<int64_t>(w) << 30);
    const int64_t yin = a.sin_q30 * x2 + a.cos_q30 * y2 + (static_cast<int64_t>(h) << 30);
    const int64_t fx = floor_shift(xin, 31), fy = floor_shift(yin, 31);
    if (fx < 0 || fx >= w || fy < 0 || fy >= h) return false;
    rx = static_cast<int>(fx);
    ry = static_cast<int>(fy);
  }
  *sy = (a.vflip ? h - 1 - ry : ry) + a.dy;
  *sx = (a.hflip ? w - 1 - rx : rx) + a.dx;
  return *sy >= 0 && *sy < h && *sx >= 0 && *sx < w;
}

// ---- colour jitter --------------------------------------------------------------------------
// Fixed order brightness, contrast, saturation, hue (torchvision's ColorJitter shuffles the order
// per image; a fixed order keeps the draw count fixed and is documented in data/augment.h).
// Each op is PIL's blend out = base + factor (v - base), rounded half up and clamped to [0, 255]
// after every op, as PIL rounds its uint8 image after every enhancer.

KD_HOST_DEVICE inline int blend_q16(int v, int base, int32_t factor) {
  const int64_t num = static_cast<int64_t>(factor) * (v - base) +
                      (static_cast<int64_t>(base) << 16) + (kQ16One / 2);
  if (num <= 0) return 0;
  const int64_t out = num >> 16;
  return out > 255 ? 255 : static_cast<int>(out);
}

// PIL's convert("L"): ITU-R 601-2 luma in 16-bit fixed point (weights sum to 65536).
KD_HOST_DEVICE inline int gray_level(int r, int g, int b) {
  return (19595 * r + 38470 * g + 7471 * b + 32768) >> 16;
}

// round(num / den) for den > 0, either sign of num (half away from zero).
KD_HOST_DEVICE inline int64_t div_round(int64_t num, int64_t den) {
  return num >= 0 ? (num + den / 2) / den : -((-num + den / 2) / den);
}

// Rotates the hue by shift/kHueTurn of a turn keeping HSV saturation and value: integer HSV with
// hue in 65536ths of a sextant. Exact for whole sextants (a 120-degree shift permutes channels)
// and for shift 0; grey pixels are unchanged. (PIL quantizes H to 8 bits; this does not.)
KD_HOST_DEVICE inline void rotate_hue(int* r, int* g, int* b, int32_t shift) {
  const int mx = *r > *g ? (*r > *b ? *r : *b) : (*g > *b ? *g : *b);
  const int mn = *r < *g ? (*r < *b ? *r : *b) : (*g < *b ? *g : *b);
  const int chroma = mx - mn;
  if (chroma == 0 || shift == 0) return;
  // The channel differences are negative half the time: scaled by multiplying, since a left
  // shift of a negative value is undefined behaviour before C++20 (UBSan reports it).
  int64_t hue;
  if (mx == *r) hue = div_round(static_cast<int64_t>(*g - *b) * 65536, chroma);
  else if (mx == *g) hue = 2 * 65536 + div_round(static_cast<int64_t>(*b - *r) * 65536, chroma);
  else hue = 4 * 65536 + div_round(static_cast<int64_t>(*r - *g) * 65536, chroma);
  hue = ((hue + shift) % kHueTurn + kHueTurn) % kHueTurn;
  const int sextant = static_cast<int>(hue >> 16);
  const int rise = static_cast<int>((static_cast<int64_t>(chroma) * (hue & 0xFFFF) + 32768) >> 16);
  const int fall = chroma - rise;
  switch (sextant) {
    case 0: *r = mx; *g = mn + rise; *b = mn; break;
    case 1: *r = mn + fall; *g = mx; *b = mn; break;
    case 2: *r = mn; *g = mx; *b = mn + rise; break;
    case 3: *r = mn; *g = mn + fall; *b = mx; break;
    case 4: *r = mn + rise; *g = mn; *b = mx; break;
    default: *r = mx; *g = mn; *b = mn + fall; break;
  }
}

KD_HOST_DEVICE inline bool has_color(const SampleAugment& a) {
  return a.brightness != kQ16One || a.contrast != kQ16One || a.saturation != kQ16One ||
         a.hue_shift != 0;
}

// Contrast blends with the rounded mean grey level of the image as it is when contrast runs
// (after geometry and brightness): for c == 3 the mean of gray_level over h*w pixels, otherwise
// the mean of all c*h*w values (c == 1: PIL's mean). Integer sums, so any summation order is
// exact. contrast_term is what output pixel (y, x) adds to the sum.
KD_HOST_DEVICE inline int64_t contrast_count(int c, int h, int w) {
  return (c == 3 ? 1LL : static_cast<int64_t>(c)) * h * w;
}
KD_HOST_DEVICE inline int contrast_mean(int64_t sum, int64_t count) {
  return static_cast<int>((sum + count / 2) / count);
}
KD_HOST_DEVICE inline int64_t contrast_term(const uint8_t* image, int c, int h, int w, int y,
                                            int x, const SampleAugment& a) {
  int sy = 0, sx = 0;
  if (!geometric_source(a, h, w, y, x, &sy, &sx)) return 0;  // fill 0 stays 0 under brightness
  const int64_t plane = static_cast<int64_t>(h) * w, src = static_cast<int64_t>(sy) * w + sx;
  if (c == 3) {
    return gray_level(blend_q16(image[src], 0, a.brightness),
                      blend_q16(image[plane + src], 0, a.brightness),
                      blend_q16(image[2 * plane + src], 0, a.brightness));
  }
  int64_t sum = 0;
  for (int ch = 0; ch < c; ++ch) sum += blend_q16(image[ch * plane + src], 0, a.brightness);
  return sum;
}

// The augmented uint8 values of output pixel (y, x), channel ch written to out[ch * stride].
// Saturation and hue act only on 3-channel (RGB) images; other channel counts get brightness and
// contrast per value, as PIL does for "L" images.
KD_HOST_DEVICE inline void augment_pixel(const uint8_t* image, int c, int h, int w, int y, int x,
                                         const SampleAugment& a, int mean, uint8_t* out,
                                         int64_t stride) {
  int sy = 0, sx = 0;
  const bool inside = geometric_source(a, h, w, y, x, &sy, &sx);
  const int64_t plane = static_cast<int64_t>(h) * w, src = static_cast<int64_t>(sy) * w + sx;
  const bool color = has_color(a);
  if (c == 3 && color) {
    int r = inside ? image[src] : 0, g = inside ? image[plane + src] : 0;
    int b = inside ? image[2 * plane + src] : 0;
    r = blend_q16(blend_q16(r, 0, a.brightness), mean, a.contrast);
    g = blend_q16(blend_q16(g, 0, a.brightness), mean, a.contrast);
    b = blend_q16(blend_q16(b, 0, a.brightness), mean, a.contrast);
    const int grey = gray_level(r, g, b);
    r = blend_q16(r, grey, a.saturation);
    g = blend_q16(g, grey, a.saturation);
    b = blend_q16(b, grey, a.saturation);
    rotate_hue(&r, &g, &b, a.hue_shift);
    out[0] = static_cast<uint8_t>(r);
    out[stride] = static_cast<uint8_t>(g);
    out[2 * stride] = static_cast<uint8_t>(b);
    return;
  }
  for (int ch = 0; ch < c; ++ch) {
    int v = inside ? image[ch * plane + src] : 0;
    if (color) v = blend_q16(blend_q16(v, 0, a.brightness), mean, a.contrast);
    out[ch * stride] = static_cast<uint8_t>(v);
  }
}

// ---- noise, normalization, MixUp ------------------------------------------------------------

// Noise pixels need more words than the 16 blocks augment_counter leaves a sample, so they use
// their own stream: high word "Nois" (the named RngStreams all have a zero high word), low word
// the step; counter = position << 32 | pixel / 16, 16 pixels (bytes) per block. Uniform over the
// 256 pixel values (the paper's continuous U[0,1] pixels, quantized as every image here is).
KD_HOST_DEVICE inline int noise_pixel(uint64_t seed, uint64_t step, uint64_t position,
                                      int64_t i) {
  const uint64_t stream = (0x4E6F6973ull << 32) | (step & 0xFFFFFFFFull);
  const Philox4 r = philox4x32(seed, stream, (position << 32) | static_cast<uint64_t>(i >> 4));
  return static_cast<int>((r.v[(i >> 2) & 3] >> (8 * (i & 3))) & 0xFFu);
}

// (pixel / 255 - mean) / std: division and subtraction only, so nothing to contract.
KD_HOST_DEVICE inline float normalize_pixel(int pixel, float mean, float std) {
  return (static_cast<float>(pixel) / 255.0f - mean) / std;
}

// lambda * x + (1 - lambda) * x_other with one explicit rounding order (fma of lambda * x onto
// the rounded product), so host and device agree whatever the compilers' contraction settings.
KD_HOST_DEVICE inline float mixup_value(float x, float x_other, float lambda,
                                        float one_minus_lambda) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(lambda, x, __fmul_rn(one_minus_lambda, x_other));
#else
  const float other = one_minus_lambda * x_other;
  return std::fma(lambda, x, other);
#endif
}

}  // namespace data
}  // namespace kd
