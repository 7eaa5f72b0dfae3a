// Turning dataset examples into a float training batch: per-sample augmentation (random crop with
// zero padding, horizontal / vertical flips) then per-channel normalization, NCHW float output.
// A sample's randomness is a pure function of (seed, kStreamAugment, step, position in batch), so
// a batch is bitwise identical for any thread count, and a CUDA kernel can later redraw the same
// choices with draw_sample_augment (host/device inline below).
#pragma once
#include <cstdint>
#include <vector>

#include "data/dataset.h"
#include "kernels/philox.h"

namespace kd {
namespace data {

// Paper augmentations not yet here (rotation, colour jitter, MixUp) get their own fields and
// draw words later; existing fields keep their draws so old seeds reproduce.
struct AugmentSpec {
  int crop_pad = 0;    // RandomCrop(size=(h, w), padding=crop_pad), pad pixel value 0
  bool hflip = false;  // p = 0.5
  bool vflip = false;  // p = 0.5
};

// The choices made for one sample. Output pixel (y, x) comes from source pixel
// (y' + dy, x' + dx) with y' = vflip ? h-1-y : y and x' = hflip ? w-1-x : x, or is the padding
// value when that lies outside the image: crop first, then flips, as torchvision composes them.
struct SampleAugment {
  int dy = 0, dx = 0;  // in [-crop_pad, crop_pad]
  bool hflip = false, vflip = false;
};

// Counter layout: step in the high 32 bits, position << 4 below (positions < 2^28), and the low 4
// bits number the Philox blocks one sample may use (block 0 today).
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

// normalized = (pixel / 255 - mean[c]) / std[c].
struct Normalization {
  std::vector<float> mean, std;
  static Normalization unitcube(int c);  // mean 0.5, std 0.5 -> [-1, 1]: the paper's setting
  static Normalization identity(int c);  // mean 0, std 1 -> [0, 1]
};

// Per-channel mean and (population) standard deviation of pixel / 255 over the whole dataset,
// accumulated in double in a fixed order.
Normalization channel_statistics(const Dataset& ds);

// Writes count augmented, normalized images (count * c * h * w floats, NCHW) for examples
// idx[0..count) and their labels (out_labels may be null). Sample k uses
// draw_sample_augment(..., seed, step, k). Parallel over samples (OpenMP); assigns the outputs.
void make_batch(const Dataset& ds, const int64_t* idx, int count, const Normalization& norm,
                const AugmentSpec& aug, uint64_t seed, uint64_t step, float* out_images,
                int32_t* out_labels);

}  // namespace data
}  // namespace kd
