// make_batch, augment_image, the augmentation plan, MixUp draws and normalization helpers.
// Normalization goes through a 256-entry table per channel filled with normalize_pixel, so the hot
// loop is a gather and the result equals the formula (and the GPU) bit for bit; crop padding and
// rotation fill are pixel 0 before jitter and normalization (torchvision pads the PIL image).
#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "data/device_batch.h"
#include "base/check.h"
#include "kernels/cpu/thread_scratch.h"

namespace kd {
namespace data {

Normalization Normalization::unitcube(int c) {
  return Normalization{std::vector<float>(c, 0.5f), std::vector<float>(c, 0.5f)};
}

Normalization Normalization::identity(int c) {
  return Normalization{std::vector<float>(c, 0.0f), std::vector<float>(c, 1.0f)};
}

Normalization channel_statistics(const Dataset& ds) {
  KD_CHECK(ds.n > 0, "channel_statistics: dataset '" << ds.name << "' is empty");
  const int64_t plane = static_cast<int64_t>(ds.h) * ds.w;
  Normalization out;
  for (int ch = 0; ch < ds.c; ++ch) {
    // Integer sums are exact, so the order question only arises in the final divisions.
    uint64_t sum = 0, sum_sq = 0;
    for (int64_t i = 0; i < ds.n; ++i) {
      const uint8_t* p = ds.image(i) + ch * plane;
      for (int64_t k = 0; k < plane; ++k) {
        sum += p[k];
        sum_sq += static_cast<uint64_t>(p[k]) * p[k];
      }
    }
    const double count = static_cast<double>(ds.n) * plane;
    const double mean = static_cast<double>(sum) / count / 255.0;
    const double mean_sq = static_cast<double>(sum_sq) / count / (255.0 * 255.0);
    out.mean.push_back(static_cast<float>(mean));
    out.std.push_back(static_cast<float>(std::sqrt(std::max(0.0, mean_sq - mean * mean))));
  }
  return out;
}

AugmentPlan make_augment_plan(const AugmentSpec& spec) {
  KD_INPUT_CHECK(spec.crop_pad >= 0, "--crop-pad (augment): expected >= 0, got " << spec.crop_pad);
  KD_INPUT_CHECK(spec.rotation_degrees >= 0 && spec.rotation_degrees <= 180,
                 "--rotation (augment): expected degrees in [0, 180], got " << spec.rotation_degrees);
  const double jitter[3] = {spec.brightness, spec.contrast, spec.saturation};
  const char* names[3] = {"brightness", "contrast", "saturation"};
  for (int i = 0; i < 3; ++i) {
    KD_INPUT_CHECK(jitter[i] >= 0 && jitter[i] <= 100,
                   "--" << names[i] << " (colour jitter): expected a value in [0, 100], got "
                                             << jitter[i]);
  }
  KD_INPUT_CHECK(spec.hue >= 0 && spec.hue <= 0.5,
                 "--hue (colour jitter): expected a value in [0, 0.5], got " << spec.hue);
  KD_INPUT_CHECK(spec.noise_p >= 0 && spec.noise_p <= 1,
                 "--noise (augment): expected a probability in [0, 1], got " << spec.noise_p);
  AugmentPlan plan;
  plan.crop_pad = spec.crop_pad;
  plan.hflip = spec.hflip;
  plan.vflip = spec.vflip;
  plan.rotation_max = static_cast<int32_t>(std::llround(spec.rotation_degrees * kDegreeQ16));
  int32_t* ranges[3][2] = {{&plan.brightness_lo, &plan.brightness_hi},
                           {&plan.contrast_lo, &plan.contrast_hi},
                           {&plan.saturation_lo, &plan.saturation_hi}};
  for (int i = 0; i < 3; ++i) {
    *ranges[i][0] = static_cast<int32_t>(std::llround(std::max(0.0, 1.0 - jitter[i]) * kQ16One));
    *ranges[i][1] = static_cast<int32_t>(std::llround((1.0 + jitter[i]) * kQ16One));
  }
  plan.hue_max = static_cast<int32_t>(std::llround(spec.hue * kHueTurn));
  plan.noise_threshold = static_cast<uint32_t>(std::llround(spec.noise_p * 16777216.0));
  return plan;
}

void augment_image(const uint8_t* image, int c, int h, int w, const SampleAugment& a,
                   uint64_t seed, uint64_t step, uint64_t position, uint8_t* out) {
  const int64_t plane = static_cast<int64_t>(h) * w;
  if (a.noise) {
    for (int64_t i = 0; i < c * plane; ++i)
      out[i] = static_cast<uint8_t>(noise_pixel(seed, step, position, i));
    return;
  }
  if (a.cos_q30 == kQ30One && a.sin_q30 == 0 && !has_color(a)) {
    // Crop and flips only (the common case): geometric_source per row, a copy per pixel. Same
    // values as the general loop below (tests compare the two).
    for (int ch = 0; ch < c; ++ch) {
      for (int y = 0; y < h; ++y) {
        uint8_t* row_out = out + (static_cast<int64_t>(ch) * h + y) * w;
        int sy = 0, sx = 0;
        geometric_source(a, h, w, y, 0, &sy, &sx);
        if (sy < 0 || sy >= h) {
          std::fill(row_out, row_out + w, uint8_t{0});
          continue;
        }
        const uint8_t* row_in = image + (static_cast<int64_t>(ch) * h + sy) * w;
        for (int x = 0; x < w; ++x) {
          const int from = (a.hflip ? w - 1 - x : x) + a.dx;
          row_out[x] = (from >= 0 && from < w) ? row_in[from] : uint8_t{0};
        }
      }
    }
    return;
  }
  int mean = 0;  // unused when the contrast factor is 1 (blend_q16 is then the identity)
  if (a.contrast != kQ16One) {
    int64_t sum = 0;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) sum += contrast_term(image, c, h, w, y, x, a);
    mean = contrast_mean(sum, contrast_count(c, h, w));
  }
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      augment_pixel(image, c, h, w, y, x, a, mean, out + static_cast<int64_t>(y) * w + x, plane);
}

void make_batch(const Dataset& ds, const int64_t* idx, int count, const Normalization& norm,
                const AugmentSpec& aug, uint64_t seed, uint64_t step, float* out_images,
                int32_t* out_labels) {
  make_batch_arrays(ds.images.data(), ds.labels.data(), ds.n, ds.c, ds.h, ds.w, idx, count, norm,
                    aug, seed, step, out_images, out_labels);
}

void make_batch_arrays(const uint8_t* images, const int32_t* labels, int64_t n, int c, int h,
                       int w, const int64_t* idx, int count, const Normalization& norm,
                       const AugmentSpec& aug, uint64_t seed, uint64_t step, float* out_images,
                       int32_t* out_labels, BadIndex bad_index) {
  const int C = c;
  KD_CHECK(count >= 0 && count < (1 << 28), "make_batch: count=" << count);
  KD_CHECK(static_cast<int>(norm.mean.size()) == C && static_cast<int>(norm.std.size()) == C,
           "make_batch: normalization has " << norm.mean.size() << " means and " << norm.std.size()
                                            << " stds for " << C << " channels");
  KD_CHECK(aug.crop_pad >= 0, "make_batch: crop_pad=" << aug.crop_pad);
  const AugmentPlan plan = make_augment_plan(aug);
  if (bad_index == BadIndex::kThrow) {
    for (int k = 0; k < count; ++k) {
      KD_CHECK(idx[k] >= 0 && idx[k] < n, "make_batch: index " << idx[k] << " at position " << k
                                                               << " out of range [0, " << n
                                                               << ")");
    }
  }
  std::vector<float> table(static_cast<size_t>(C) * 256);
  for (int ch = 0; ch < C; ++ch) {
    KD_CHECK(norm.std[ch] != 0.0f, "make_batch: std[" << ch << "] is 0");
    for (int p = 0; p < 256; ++p)
      table[ch * 256 + p] = normalize_pixel(p, norm.mean[ch], norm.std[ch]);
  }
  const int64_t image_size = static_cast<int64_t>(C) * h * w;
  const int64_t plane = static_cast<int64_t>(h) * w;
  const float* lut_all = table.data();

  ThreadScratch<uint8_t> scratch(static_cast<size_t>(image_size));
#pragma omp parallel
  {
    uint8_t* pixels = scratch.mine();
#pragma omp for schedule(static)
    for (int k = 0; k < count; ++k) {
      float* dst = out_images + k * image_size;
      if (idx[k] < 0 || idx[k] >= n) {  // only reached with BadIndex::kNanSample
        std::fill(dst, dst + image_size, std::numeric_limits<float>::quiet_NaN());
        if (out_labels != nullptr) out_labels[k] = -1;
        continue;
      }
      const SampleAugment a = draw_sample_augment(plan, seed, step, k);
      augment_image(images + idx[k] * image_size, C, h, w, a, seed, step, k, pixels);
      for (int ch = 0; ch < C; ++ch) {
        const float* lut = lut_all + ch * 256;
        const uint8_t* src = pixels + ch * plane;
        float* out = dst + ch * plane;
        for (int64_t i = 0; i < plane; ++i) out[i] = lut[src[i]];
      }
      if (out_labels != nullptr) out_labels[k] = labels[idx[k]];
    }
  }
}

// ---- MixUp ------------------------------------------------------------------------------------

namespace {

constexpr uint64_t kPermutationOffset = 1ull << 31;  // counters for the permutation

double open_unit(uint32_t word) { return (static_cast<double>(word) + 1.0) / 4294967296.0; }

// Gamma(alpha, 1), consuming Philox blocks from *counter onwards.
double draw_gamma(double alpha, uint64_t seed, uint64_t* counter) {
  if (alpha < 1.0) {
    const double g = draw_gamma(alpha + 1.0, seed, counter);
    const Philox4 r = philox4x32(seed, kStreamMixup, (*counter)++);
    return g * std::pow(open_unit(r.v[0]), 1.0 / alpha);
  }
  const double d = alpha - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (int attempt = 0; attempt < (1 << 20); ++attempt) {  // acceptance rate is above 0.95
    const Philox4 r = philox4x32(seed, kStreamMixup, (*counter)++);
    const double z = std::sqrt(-2.0 * std::log(open_unit(r.v[0]))) *
                     std::cos(6.283185307179586 * (r.v[1] / 4294967296.0));
    const double t = 1.0 + c * z;
    if (t <= 0.0) continue;
    const double v = t * t * t;
    if (std::log(open_unit(r.v[2])) < 0.5 * z * z + d - d * v + d * std::log(v)) return d * v;
  }
  KD_CHECK(false, "draw_gamma: no acceptance for alpha=" << alpha);
  return 0.0;
}

}  // namespace

double draw_beta(double alpha, uint64_t seed, uint64_t step) {
  KD_INPUT_CHECK(alpha > 0 && std::isfinite(alpha),
                 "--mixup: expected a positive Beta parameter, got " << alpha);
  uint64_t counter = step << 32;
  if (alpha == 1.0) return philox_uniform_double(seed, kStreamMixup, counter);
  const double x = draw_gamma(alpha, seed, &counter);
  const double y = draw_gamma(alpha, seed, &counter);
  if (x + y > 0.0) return x / (x + y);
  // Both underflowed (tiny alpha): Beta(alpha, alpha) is then a fair coin on {0, 1}.
  return (philox4x32(seed, kStreamMixup, counter).v[0] >> 31) ? 1.0 : 0.0;
}

MixupDraw draw_mixup(double alpha, int count, uint64_t seed, uint64_t step) {
  KD_CHECK(count >= 0, "draw_mixup: count=" << count);
  MixupDraw d;
  d.lambda = static_cast<float>(draw_beta(alpha, seed, step));
  d.perm.resize(count);
  std::iota(d.perm.begin(), d.perm.end(), int64_t{0});
  for (int i = count - 1; i > 0; --i) {
    const uint64_t counter = (step << 32) + kPermutationOffset + static_cast<uint64_t>(i);
    const uint64_t j = philox_below(seed, kStreamMixup, counter, static_cast<uint64_t>(i) + 1);
    std::swap(d.perm[i], d.perm[j]);
  }
  return d;
}

void check_mixup_draw(int count, int64_t sample_size, const MixupDraw& draw) {
  KD_CHECK(count >= 0 && sample_size >= 0, "mixup: count=" << count << " sample_size="
                                                           << sample_size);
  KD_CHECK(static_cast<int64_t>(draw.perm.size()) == count,
           "mixup: permutation of " << draw.perm.size() << " for a batch of " << count);
  std::vector<char> seen(static_cast<size_t>(count), 0);
  for (int64_t p : draw.perm) {
    KD_CHECK(p >= 0 && p < count && !seen[p], "mixup: not a permutation (entry " << p << ")");
    seen[p] = 1;
  }
}

void mixup_batch(float* images, int count, int64_t sample_size, const MixupDraw& draw) {
  check_mixup_draw(count, sample_size, draw);
  const std::vector<float> original(images, images + count * sample_size);
  const float lambda = draw.lambda, rest = 1.0f - draw.lambda;
#pragma omp parallel for schedule(static)
  for (int k = 0; k < count; ++k) {
    const float* mine = original.data() + k * sample_size;
    const float* other = original.data() + draw.perm[k] * sample_size;
    float* out = images + k * sample_size;
    for (int64_t i = 0; i < sample_size; ++i) out[i] = mixup_value(mine[i], other[i], lambda, rest);
  }
}


}  // namespace data
}  // namespace kd
