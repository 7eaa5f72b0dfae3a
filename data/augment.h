// Turning dataset examples into a float training batch: per-sample augmentation (random crop with
// zero padding, flips, rotation, colour jitter, noise replacement) then per-channel
// normalization, NCHW float output; and MixUp on a finished batch. A sample's randomness is a pure
// function of (seed, step, position in batch), so a batch is bitwise identical for any thread
// count and on the GPU (data/device_batch.h), which redraws the same choices with the
// KD_HOST_DEVICE functions of data/augment_math.h.
#pragma once
#include <cstdint>
#include <vector>

#include "data/augment_math.h"
#include "data/dataset.h"
#include "base/philox.h"

namespace kd {
namespace data {

// Which augmentations make_batch applies, in this order per sample: RandomCrop (zero padding),
// horizontal and vertical flips, RandomRotation, ColorJitter, then the Noise replacement, then
// normalization. The defaults apply nothing (0 = off). The old fields keep their draws (Philox
// block 0), so old seeds reproduce; the new ones draw from blocks 1 and 2 and the noise stream
// (data/augment_math.h). make_augment_plan validates the values (InputError).
struct AugmentSpec {
  int crop_pad = 0;    // RandomCrop(size=(h, w), padding=crop_pad), pad pixel value 0
  bool hflip = false;  // p = 0.5
  bool vflip = false;  // p = 0.5
  // RandomRotation(rotation_degrees): angle uniform in [-deg, deg] (on a 2^-16 degree grid),
  // about the image centre, nearest neighbour, fill 0 (PIL's rotate, expand=False). In [0, 180].
  double rotation_degrees = 0;
  // ColorJitter(brightness, contrast, saturation, hue): factors uniform in [max(0, 1-b), 1+b]
  // (on a 2^-16 grid), hue shift uniform in [-hue, hue] turns; b, c, s in [0, 100], hue in
  // [0, 0.5]. Unlike torchvision, which shuffles the order per image, the order is FIXED:
  // brightness, contrast, saturation, hue. PIL semantics on uint8 (rounded after each op;
  // contrast blends with the rounded mean grey level of the image as it is at that point).
  // Images without 3 channels get brightness and contrast only.
  double brightness = 0, contrast = 0, saturation = 0, hue = 0;
  // Noise: each sample is replaced, with probability noise_p, by uniform pixels in {0..255}
  // (the paper's U[-1, 1] in unit-cube space, quantized). Its label is kept. In [0, 1].
  double noise_p = 0;
};

// True when the spec draws anything, so a batch's images depend on the step and not only on its
// examples (a teacher's logits on them can then not be computed once for the whole run).
inline bool is_random(const AugmentSpec& s) {
  return s.crop_pad > 0 || s.hflip || s.vflip || s.rotation_degrees > 0 || s.brightness > 0 ||
         s.contrast > 0 || s.saturation > 0 || s.hue > 0 || s.noise_p > 0;
}

// The integer form the draws use; throws InputError for out-of-range fields.
AugmentPlan make_augment_plan(const AugmentSpec& spec);

// normalized = (pixel / 255 - mean[c]) / std[c] (normalize_pixel).
struct Normalization {
  std::vector<float> mean, std;
  static Normalization unitcube(int c);  // mean 0.5, std 0.5 -> [-1, 1]: the paper's setting
  static Normalization identity(int c);  // mean 0, std 1 -> [0, 1]
};

// Per-channel mean and (population) standard deviation of pixel / 255 over the whole dataset,
// accumulated in double in a fixed order.
Normalization channel_statistics(const Dataset& ds);

// The uint8 image (c*h*w, NCHW) that batch position `position` becomes before normalization,
// for a given draw (tests can force one): the noise image when a.noise, else geometry and colour
// per pixel (augment_pixel). make_batch is this followed by normalize_pixel.
void augment_image(const uint8_t* image, int c, int h, int w, const SampleAugment& a,
                   uint64_t seed, uint64_t step, uint64_t position, uint8_t* out);

// Writes count augmented, normalized images (count * c * h * w floats, NCHW) for examples
// idx[0..count) and their labels (out_labels may be null). Sample k uses
// draw_sample_augment(make_augment_plan(aug), seed, step, k). Parallel over samples (OpenMP);
// assigns the outputs.
void make_batch(const Dataset& ds, const int64_t* idx, int count, const Normalization& norm,
                const AugmentSpec& aug, uint64_t seed, uint64_t step, float* out_images,
                int32_t* out_labels);

// make_batch on bare arrays: images n*c*h*w uint8 (NCHW) and labels n (may be null when
// out_labels is). make_batch is this on a Dataset; the emulated make_batch_device
// (data/cuda_emu/), whose device arrays are host memory, is this with kNanSample, the device
// contract for an index outside [0, n): NaN pixels and label -1 instead of an error.
enum class BadIndex { kThrow, kNanSample };
void make_batch_arrays(const uint8_t* images, const int32_t* labels, int64_t n, int c, int h,
                       int w, const int64_t* idx, int count, const Normalization& norm,
                       const AugmentSpec& aug, uint64_t seed, uint64_t step, float* out_images,
                       int32_t* out_labels, BadIndex bad_index = BadIndex::kThrow);

// MixUp (Zhang et al.): one lambda ~ Beta(alpha, alpha) per batch and a permutation of the batch,
// then x[k] <- lambda x[k] + (1 - lambda) x[perm[k]] on the normalized images (labels untouched:
// the teacher labels the mixed images).
struct MixupDraw {
  float lambda = 1.0f;
  std::vector<int64_t> perm;  // a permutation of [0, count)
};

// Beta(alpha, alpha) for alpha > 0 from stream kStreamMixup, counters (step << 32) + [0, 2^31):
// uniform for alpha == 1, else X / (X + Y) with X, Y ~ Gamma(alpha) by Marsaglia-Tsang (alpha < 1
// via Gamma(alpha + 1) U^(1/alpha)). Host-only double maths.
double draw_beta(double alpha, uint64_t seed, uint64_t step);
// lambda = draw_beta and a Fisher-Yates permutation from counters (step << 32) + 2^31 + i, so the
// permutation does not depend on alpha. InputError unless alpha > 0.
MixupDraw draw_mixup(double alpha, int count, uint64_t seed, uint64_t step);
// Mixes count images of sample_size floats in place with mixup_value (CPU; OpenMP).
void mixup_batch(float* images, int count, int64_t sample_size, const MixupDraw& draw);
// The checks mixup_batch and mixup_device share: sizes, and perm is a permutation of [0, count).
void check_mixup_draw(int count, int64_t sample_size, const MixupDraw& draw);

}  // namespace data
}  // namespace kd
