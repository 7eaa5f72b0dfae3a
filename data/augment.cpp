// make_batch and normalization helpers. Normalization goes through a 256-entry table per channel
// computed with the exact formula, so the hot loop is a gather and the result equals the formula
// bit for bit; the padding value is the table's entry for pixel 0 (torchvision pads the PIL image).
#include "data/augment.h"

#include <algorithm>
#include <cmath>

#include "kernels/check.h"

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

void make_batch(const Dataset& ds, const int64_t* idx, int count, const Normalization& norm,
                const AugmentSpec& aug, uint64_t seed, uint64_t step, float* out_images,
                int32_t* out_labels) {
  const int C = ds.c, H = ds.h, W = ds.w;
  KD_CHECK(count >= 0 && count < (1 << 28), "make_batch: count=" << count);
  KD_CHECK(static_cast<int>(norm.mean.size()) == C && static_cast<int>(norm.std.size()) == C,
           "make_batch: normalization has " << norm.mean.size() << " means and " << norm.std.size()
                                            << " stds for " << C << " channels");
  KD_CHECK(aug.crop_pad >= 0, "make_batch: crop_pad=" << aug.crop_pad);
  for (int k = 0; k < count; ++k) {
    KD_CHECK(idx[k] >= 0 && idx[k] < ds.n, "make_batch: index " << idx[k] << " at position " << k
                                                                << " out of range [0, " << ds.n
                                                                << ")");
  }
  std::vector<float> table(static_cast<size_t>(C) * 256);
  for (int ch = 0; ch < C; ++ch) {
    KD_CHECK(norm.std[ch] != 0.0f, "make_batch: std[" << ch << "] is 0");
    for (int p = 0; p < 256; ++p) {
      table[ch * 256 + p] = (static_cast<float>(p) / 255.0f - norm.mean[ch]) / norm.std[ch];
    }
  }
  const int64_t image_size = ds.image_size();
  const float* lut_all = table.data();

#pragma omp parallel for schedule(static)
  for (int k = 0; k < count; ++k) {
    const SampleAugment a = draw_sample_augment(aug.crop_pad, aug.hflip, aug.vflip, seed, step, k);
    const uint8_t* src = ds.image(idx[k]);
    float* dst = out_images + k * image_size;
    for (int ch = 0; ch < C; ++ch) {
      const float* lut = lut_all + ch * 256;
      const uint8_t* plane = src + static_cast<int64_t>(ch) * H * W;
      for (int y = 0; y < H; ++y) {
        float* row_out = dst + (static_cast<int64_t>(ch) * H + y) * W;
        const int sy = (a.vflip ? H - 1 - y : y) + a.dy;
        if (sy < 0 || sy >= H) {
          for (int x = 0; x < W; ++x) row_out[x] = lut[0];
          continue;
        }
        const uint8_t* row_in = plane + static_cast<int64_t>(sy) * W;
        for (int x = 0; x < W; ++x) {
          const int sx = (a.hflip ? W - 1 - x : x) + a.dx;
          row_out[x] = (sx >= 0 && sx < W) ? lut[row_in[sx]] : lut[0];
        }
      }
    }
    if (out_labels != nullptr) out_labels[k] = ds.labels[idx[k]];
  }
}

}  // namespace data
}  // namespace kd
