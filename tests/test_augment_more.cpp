// Tests for the augmentations beyond crop and flips (data/augment_math.h, data/augment.h):
// rotation (forced angles against hand-computed and double-precision references, the fixed-point
// sin/cos), colour jitter (identities, hand-computed brightness/contrast/saturation, exact hue
// rotations), noise replacement, the draws' ranges and rates, thread-count independence, the
// compatibility of the old draws, and MixUp (Beta moments, permutations, the mixing formula).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "data/augment.h"
#include "base/check.h"
#include "base/philox.h"
#include "tests/data_testing.h"

using kd::data::AugmentSpec;
using kd::data::Dataset;
using kd::data::Normalization;
using kd::data::SampleAugment;

namespace {

using kd::data_testing::random_dataset;

std::vector<uint8_t> run_image(const std::vector<uint8_t>& image, int c, int h, int w,
                               const SampleAugment& a) {
  std::vector<uint8_t> out(image.size());
  kd::data::augment_image(image.data(), c, h, w, a, 1, 2, 3, out.data());
  return out;
}

SampleAugment rotated(double degrees) {
  SampleAugment a;
  kd::data::set_rotation(&a, static_cast<int32_t>(std::llround(degrees * 65536)));
  return a;
}

int32_t q16(double factor) { return static_cast<int32_t>(std::llround(factor * 65536)); }

}  // namespace

TEST(AugmentRotation, FixedPointSinCosAccuracy) {
  for (int i = -3600; i <= 3600; i += 7) {  // every 0.7 degrees over [-360, 360]/2
    const double deg = i / 20.0;
    const SampleAugment a = rotated(deg);
    const double rad = a.angle / 65536.0 * M_PI / 180.0;
    EXPECT_NEAR(a.cos_q30 / 1073741824.0, std::cos(rad), 2e-8) << deg;
    EXPECT_NEAR(a.sin_q30 / 1073741824.0, std::sin(rad), 2e-8) << deg;
  }
  const SampleAugment zero = rotated(0), quarter = rotated(90), half = rotated(-180);
  EXPECT_EQ(zero.cos_q30, 1 << 30);
  EXPECT_EQ(zero.sin_q30, 0);
  EXPECT_EQ(quarter.cos_q30, 0);
  EXPECT_EQ(quarter.sin_q30, 1 << 30);
  EXPECT_EQ(half.cos_q30, -(1 << 30));
  EXPECT_EQ(half.sin_q30, 0);
}

TEST(AugmentRotation, IdentityAtZeroAndQuarterTurnsByHand) {
  // 3x3 (odd) and 4x4 (even): counter-clockwise quarter turn out(y, x) = in(x, n-1-y).
  for (int n : {3, 4}) {
    const Dataset ds = random_dataset(1, 2, n, n, 1, 11 + n);
    const int plane = n * n;
    EXPECT_EQ(run_image(ds.images, 2, n, n, rotated(0)), ds.images);
    const auto ccw = run_image(ds.images, 2, n, n, rotated(90));
    const auto cw = run_image(ds.images, 2, n, n, rotated(-90));
    const auto flip = run_image(ds.images, 2, n, n, rotated(180));
    for (int ch = 0; ch < 2; ++ch)
      for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) {
          const uint8_t* in = ds.images.data() + ch * plane;
          EXPECT_EQ(ccw[ch * plane + y * n + x], in[x * n + (n - 1 - y)]) << n << " " << y << x;
          EXPECT_EQ(cw[ch * plane + y * n + x], in[(n - 1 - x) * n + y]) << n << " " << y << x;
          EXPECT_EQ(flip[ch * plane + y * n + x], in[(n - 1 - y) * n + (n - 1 - x)]);
        }
  }
  // Non-square 2x4, 90 degrees about the centre (2, 1), expand=False: corners fall outside.
  const std::vector<uint8_t> img = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(run_image(img, 1, 2, 4, rotated(90)), (std::vector<uint8_t>{0, 3, 7, 0, 0, 2, 6, 0}));
  EXPECT_EQ(run_image(img, 1, 2, 4, rotated(180)), (std::vector<uint8_t>{8, 7, 6, 5, 4, 3, 2, 1}));
}

// A small forced angle against PIL's formula in double precision with libm cos/sin. Pixels whose
// double coordinate lies within 1e-6 of a pixel edge may round either way and are skipped.
TEST(AugmentRotation, SmallAnglesMatchDoubleReference) {
  const int h = 9, w = 12;
  const Dataset ds = random_dataset(1, 1, h, w, 1, 5);
  int compared = 0;
  for (double deg : {7.0, -13.5, 20.0, 3.25}) {
    const auto got = run_image(ds.images, 1, h, w, rotated(deg));
    const double rad = deg * M_PI / 180.0, c = std::cos(rad), s = std::sin(rad);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const double xc = x + 0.5 - w / 2.0, yc = y + 0.5 - h / 2.0;
        const double xin = c * xc - s * yc + w / 2.0, yin = s * xc + c * yc + h / 2.0;
        if (std::fabs(xin - std::round(xin)) < 1e-6 || std::fabs(yin - std::round(yin)) < 1e-6)
          continue;
        const int sx = static_cast<int>(std::floor(xin)), sy = static_cast<int>(std::floor(yin));
        const int want = (sx >= 0 && sx < w && sy >= 0 && sy < h) ? ds.images[sy * w + sx] : 0;
        EXPECT_EQ(got[y * w + x], want) << deg << " " << y << " " << x;
        ++compared;
      }
  }
  EXPECT_GT(compared, 4 * h * w - 10);
}

// Rotation runs after crop and flips: a crop shift of the rotated image is a shift along the
// rotated axes. With a 180-degree turn, out(y, x) = cropflip(h-1-y, w-1-x).
TEST(AugmentRotation, ComposesAfterCropAndFlip) {
  const int h = 3, w = 4;
  const std::vector<uint8_t> img = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  SampleAugment a = rotated(180);
  a.dy = 1;
  a.dx = -1;
  a.hflip = true;
  // Crop (dy=1, dx=-1) gives rows [0 5 6 7] [0 9 10 11] [0 0 0 0]; hflip -> [7 6 5 0] ...;
  // a half turn reverses the whole image.
  EXPECT_EQ(run_image(img, 1, h, w, a),
            (std::vector<uint8_t>{0, 0, 0, 0, 0, 9, 10, 11, 0, 5, 6, 7}));
}

TEST(AugmentRotation, DrawRangeAndOldDrawsUnchanged) {
  AugmentSpec spec;
  spec.crop_pad = 4;
  spec.hflip = spec.vflip = true;
  spec.rotation_degrees = 20;
  spec.brightness = spec.contrast = spec.saturation = spec.hue = 0.2;
  spec.noise_p = 0.2;
  const auto plan = kd::data::make_augment_plan(spec);
  double sum = 0, lo = 1e9, hi = -1e9;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    const auto a = kd::data::draw_sample_augment(plan, 9, i / 100, i % 100);
    const auto old = kd::data::draw_sample_augment(4, true, true, 9, i / 100, i % 100);
    ASSERT_EQ(a.dy, old.dy);
    ASSERT_EQ(a.dx, old.dx);
    ASSERT_EQ(a.hflip, old.hflip);
    ASSERT_EQ(a.vflip, old.vflip);
    const double deg = a.angle / 65536.0;
    ASSERT_LE(std::fabs(deg), 20.0);
    sum += deg;
    lo = std::min(lo, deg);
    hi = std::max(hi, deg);
  }
  EXPECT_NEAR(sum / draws, 0.0, 0.35);  // sd of the mean: 20/sqrt(3 * 20000) = 0.08
  EXPECT_LT(lo, -19.9);
  EXPECT_GT(hi, 19.9);
}

TEST(AugmentJitter, FactorOneIsIdentityAndSpecZeroChangesNothing) {
  const Dataset ds = random_dataset(1, 3, 5, 6, 1, 3);
  EXPECT_EQ(run_image(ds.images, 3, 5, 6, SampleAugment{}), ds.images);
  SampleAugment a;
  a.hue_shift = kd::data::kHueTurn;  // a full turn is an identity too
  EXPECT_EQ(run_image(ds.images, 3, 5, 6, a), ds.images);
}

TEST(AugmentJitter, BrightnessScalesAndClamps) {
  SampleAugment a;
  a.brightness = q16(1.5);
  // round half up: 3 * 1.5 = 4.5 -> 5; 200 * 1.5 = 300 -> 255.
  EXPECT_EQ(run_image({0, 3, 100, 200}, 1, 2, 2, a), (std::vector<uint8_t>{0, 5, 150, 255}));
  a.brightness = q16(0.5);
  EXPECT_EQ(run_image({0, 3, 100, 255}, 1, 1, 4, a), (std::vector<uint8_t>{0, 2, 50, 128}));
  // RGB: brightness is per channel, before saturation/hue (both identities here).
  a.brightness = q16(2.0);
  EXPECT_EQ(run_image({10, 200, 30, 40, 50, 60}, 3, 1, 2, a),
            (std::vector<uint8_t>{20, 255, 60, 80, 100, 120}));
}

TEST(AugmentJitter, ContrastBlendsWithRoundedMeanGrey) {
  SampleAugment a;
  a.contrast = 0;  // everything becomes the mean: (0 + 10 + 20 + 31) / 4 = 15.25 -> 15
  EXPECT_EQ(run_image({0, 10, 20, 31}, 1, 2, 2, a), (std::vector<uint8_t>(4, 15)));
  a.contrast = q16(2.0);  // 15 + 2 (v - 15), clamped
  EXPECT_EQ(run_image({0, 10, 20, 31}, 1, 2, 2, a), (std::vector<uint8_t>{0, 5, 25, 47}));
  // RGB mean of luma: red -> (19595 * 255 + 32768) >> 16 = 76, blue -> 29; (76 + 29) / 2 -> 53.
  a.contrast = 0;
  EXPECT_EQ(run_image({255, 0, 0, 0, 0, 255}, 3, 1, 2, a), (std::vector<uint8_t>(6, 53)));
  // Brightness runs first: halving gives {0, 5, 10, 16} with mean 7.75 -> 8.
  a.brightness = q16(0.5);
  EXPECT_EQ(run_image({0, 10, 20, 31}, 1, 2, 2, a), (std::vector<uint8_t>(4, 8)));
}

TEST(AugmentJitter, SaturationZeroGivesLuma) {
  SampleAugment a;
  a.saturation = 0;
  const std::vector<uint8_t> img = {255, 10, 0, 90, 0, 255, 0, 200};  // two RGB pixels
  const auto got = run_image(img, 3, 1, 2, a);
  for (int p = 0; p < 2; ++p) {
    const int luma = kd::data::gray_level(img[p], img[2 + p], img[4 + p]);
    for (int ch = 0; ch < 3; ++ch) EXPECT_EQ(got[ch * 2 + p], luma) << p;
  }
  // One-channel images ignore saturation and hue.
  a.hue_shift = 1000;
  EXPECT_EQ(run_image({7, 8, 9}, 1, 1, 3, a), (std::vector<uint8_t>{7, 8, 9}));
}

TEST(AugmentJitter, HueRotationExactCases) {
  int r = 255, g = 0, b = 0;
  kd::data::rotate_hue(&r, &g, &b, 65536);  // +60 degrees: red -> yellow
  EXPECT_EQ(std::vector<int>({r, g, b}), std::vector<int>({255, 255, 0}));
  const Dataset ds = random_dataset(40, 3, 1, 1, 1, 21);
  for (int i = 0; i < 40; ++i) {
    const uint8_t* p = ds.image(i);
    int r1 = p[0], g1 = p[1], b1 = p[2];
    kd::data::rotate_hue(&r1, &g1, &b1, kd::data::kHueTurn / 3);  // +120: (r,g,b) -> (b,r,g)
    EXPECT_EQ(std::vector<int>({r1, g1, b1}), std::vector<int>({p[2], p[0], p[1]})) << i;
    int r2 = p[0], g2 = p[1], b2 = p[2];
    kd::data::rotate_hue(&r2, &g2, &b2, 12345);
    kd::data::rotate_hue(&r2, &g2, &b2, -12345);  // there and back: within rounding
    EXPECT_NEAR(r2, p[0], 1) << i;
    EXPECT_NEAR(g2, p[1], 1) << i;
    EXPECT_NEAR(b2, p[2], 1) << i;
  }
  int gr = 77, gg = 77, gb = 77;
  kd::data::rotate_hue(&gr, &gg, &gb, 54321);  // grey has no hue
  EXPECT_EQ(std::vector<int>({gr, gg, gb}), std::vector<int>({77, 77, 77}));
}

TEST(AugmentJitter, FactorDrawsCoverTheRange) {
  AugmentSpec spec;
  spec.brightness = 0.2;
  spec.contrast = 1.5;  // lower end clipped at 0
  spec.hue = 0.1;
  const auto plan = kd::data::make_augment_plan(spec);
  double bsum = 0;
  int32_t cmin = 1 << 30, hmin = 1 << 30, hmax = -(1 << 30);
  for (int i = 0; i < 10000; ++i) {
    const auto a = kd::data::draw_sample_augment(plan, 4, i, 0);
    ASSERT_GE(a.brightness, q16(0.8));
    ASSERT_LE(a.brightness, q16(1.2));
    ASSERT_GE(a.contrast, 0);
    ASSERT_LE(a.contrast, q16(2.5));
    ASSERT_EQ(a.saturation, 65536);
    ASSERT_LE(std::abs(a.hue_shift), q16(0.1 * 6));
    bsum += a.brightness / 65536.0;
    cmin = std::min(cmin, a.contrast);
    hmin = std::min(hmin, a.hue_shift);
    hmax = std::max(hmax, a.hue_shift);
  }
  EXPECT_NEAR(bsum / 10000, 1.0, 0.005);  // sd of the mean 0.4 / sqrt(12e4) = 0.0012
  EXPECT_LT(cmin, q16(0.01));
  EXPECT_LT(hmin, -q16(0.59));
  EXPECT_GT(hmax, q16(0.59));
}

TEST(AugmentNoise, RateAndPixels) {
  AugmentSpec spec;
  spec.noise_p = 0.2;
  const auto plan = kd::data::make_augment_plan(spec);
  int replaced = 0;
  for (int i = 0; i < 20000; ++i)
    replaced += kd::data::draw_sample_augment(plan, 6, i / 50, i % 50).noise;
  EXPECT_NEAR(replaced, 4000, 300);  // sd 57
  // A batch: identity normalization, so pixels are v / 255; replaced samples differ from the
  // source and have pixel mean ~127.5 (sd over 3*8*9 values ~ 4.3).
  const Dataset ds = random_dataset(3, 3, 8, 9, 2, 8);
  const int count = 400;
  std::vector<int64_t> idx(count);
  for (int k = 0; k < count; ++k) idx[k] = k % 3;
  std::vector<float> out(count * ds.image_size());
  std::vector<int32_t> labels(count);
  kd::data::make_batch(ds, idx.data(), count, Normalization::identity(3), spec, 6, 17, out.data(),
                       labels.data());
  int noisy = 0;
  for (int k = 0; k < count; ++k) {
    ASSERT_EQ(labels[k], ds.labels[idx[k]]);
    const bool noise = kd::data::draw_sample_augment(plan, 6, 17, k).noise;
    double sum = 0;
    bool same = true;
    for (int64_t i = 0; i < ds.image_size(); ++i) {
      const float v = out[k * ds.image_size() + i] * 255.0f;
      ASSERT_NEAR(v, std::round(v), 1e-3);
      ASSERT_TRUE(v >= 0 && v <= 255);
      sum += v;
      same = same && std::lround(v) == ds.image(idx[k])[i];
    }
    EXPECT_EQ(same, !noise) << k;
    if (noise) {
      EXPECT_NEAR(sum / ds.image_size(), 127.5, 25) << k;
    }
    noisy += noise;
  }
  EXPECT_GT(noisy, 50);
  EXPECT_LT(noisy, 110);
}

TEST(AugmentAll, ThreadCountIndependenceAndRejects) {
  const Dataset ds = random_dataset(20, 3, 11, 13, 5);
  std::vector<int64_t> idx(29);
  for (int k = 0; k < 29; ++k) idx[k] = (k * 7) % 20;
  AugmentSpec aug;
  aug.crop_pad = 3;
  aug.hflip = aug.vflip = true;
  aug.rotation_degrees = 20;
  aug.brightness = aug.contrast = aug.saturation = aug.hue = 0.2;
  aug.noise_p = 0.2;
  const Normalization norm{{0.3f, 0.4f, 0.5f}, {0.2f, 0.25f, 0.3f}};
  const size_t size = idx.size() * ds.image_size();
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> outs;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    outs.emplace_back(size);
    kd::data::make_batch(ds, idx.data(), 29, norm, aug, 123, 456, outs.back().data(), nullptr);
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[1].data(), size * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[2].data(), size * sizeof(float)));
  for (auto bad : {&AugmentSpec::rotation_degrees, &AugmentSpec::brightness, &AugmentSpec::hue,
                   &AugmentSpec::noise_p}) {
    AugmentSpec s;
    s.*bad = -0.1;
    EXPECT_THROW(kd::data::make_augment_plan(s), kd::InputError);
    s.*bad = 200;
    EXPECT_THROW(kd::data::make_augment_plan(s), kd::InputError);
  }
}

// augment_image's crop-and-flip fast path against augment_pixel, the shared per-pixel definition.
TEST(AugmentAll, CropFlipFastPathMatchesPixelPath) {
  const int c = 2, h = 5, w = 7;
  const Dataset ds = random_dataset(1, c, h, w, 1, 19);
  for (uint64_t step = 0; step < 200; ++step) {
    const auto a = kd::data::draw_sample_augment(3, true, true, 4, step, 0);
    const auto fast = run_image(ds.images, c, h, w, a);
    std::vector<uint8_t> slow(fast.size());
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        kd::data::augment_pixel(ds.images.data(), c, h, w, y, x, a, 0, &slow[y * w + x], h * w);
    ASSERT_EQ(fast, slow) << step;
  }
}

TEST(Mixup, BetaMomentsAndRange) {
  // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)).
  for (double alpha : {0.2, 1.0, 2.0}) {
    const int draws = 4000;
    double sum = 0, sum_sq = 0;
    for (int i = 0; i < draws; ++i) {
      const double l = kd::data::draw_beta(alpha, 31, i);
      ASSERT_TRUE(l >= 0.0 && l <= 1.0) << alpha;
      sum += l;
      sum_sq += l * l;
    }
    const double mean = sum / draws, var = sum_sq / draws - mean * mean;
    EXPECT_NEAR(mean, 0.5, 0.03) << alpha;
    EXPECT_NEAR(var, 1.0 / (4 * (2 * alpha + 1)), 0.02) << alpha;
  }
  EXPECT_THROW(kd::data::draw_mixup(0.0, 4, 1, 1), kd::InputError);
}

TEST(Mixup, PermutationAndFormula) {
  for (int count : {1, 2, 37}) {
    const auto d = kd::data::draw_mixup(1.0, count, 5, 9);
    std::vector<int> seen(count, 0);
    for (int64_t p : d.perm) {
      ASSERT_TRUE(p >= 0 && p < count);
      ++seen[p];
    }
    for (int s : seen) EXPECT_EQ(s, 1);
  }
  EXPECT_NE(kd::data::draw_mixup(1.0, 37, 5, 9).perm, kd::data::draw_mixup(1.0, 37, 5, 10).perm);
  EXPECT_EQ(kd::data::draw_mixup(1.0, 37, 5, 9).perm, kd::data::draw_mixup(0.3, 37, 5, 9).perm);
  const int count = 5;
  const int64_t sample = 7;
  std::vector<float> x(count * sample);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 2.0f * kd::philox_uniform(3, kd::kStreamTest, i) - 1;
  const auto d = kd::data::draw_mixup(0.4, count, 5, 2);
  std::vector<float> mixed = x;
  kd::data::mixup_batch(mixed.data(), count, sample, d);
  for (int k = 0; k < count; ++k)
    for (int64_t i = 0; i < sample; ++i) {
      const double want = d.lambda * double(x[k * sample + i]) +
                          (1.0 - d.lambda) * double(x[d.perm[k] * sample + i]);
      EXPECT_NEAR(mixed[k * sample + i], want, 1e-6) << k << " " << i;
    }
  kd::data::MixupDraw bad = d;
  bad.perm[0] = bad.perm[1];
  EXPECT_THROW(kd::data::mixup_batch(mixed.data(), count, sample, bad), kd::Error);
}
