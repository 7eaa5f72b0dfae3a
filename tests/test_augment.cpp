// Tests for make_batch: augmentation (crop with zero padding, flips) on hand-made images with
// hand-computed answers, normalization values, the draw distribution, thread-count independence
// (bitwise) and the cost of one batch.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "data/augment.h"
#include "base/check.h"
#include "base/philox.h"
#include "tests/data_testing.h"

using kd::data::AugmentSpec;
using kd::data::Dataset;
using kd::data::Normalization;

namespace {

using kd::data_testing::random_dataset;

// One image of shape (1, h, w) with the given pixels.
Dataset hand_dataset(int h, int w, std::vector<uint8_t> pixels) {
  Dataset ds;
  ds.n = 1;
  ds.c = 1;
  ds.h = h;
  ds.w = w;
  ds.num_classes = 4;
  ds.images = std::move(pixels);
  ds.labels = {3};
  return ds;
}

// Finds (step, position 0) whose draw matches want; fails the test if none in the first 10^5.
uint64_t find_step(const AugmentSpec& aug, uint64_t seed, int dy, int dx, bool hflip, bool vflip) {
  for (uint64_t step = 0; step < 100000; ++step) {
    const auto a = kd::data::draw_sample_augment(aug.crop_pad, aug.hflip, aug.vflip, seed, step, 0);
    if (a.dy == dy && a.dx == dx && a.hflip == hflip && a.vflip == vflip) return step;
  }
  ADD_FAILURE() << "no step draws dy=" << dy << " dx=" << dx;
  return 0;
}

// Runs make_batch on the single hand image and returns pixel values * 255 (identity norm).
std::vector<float> augment_one(const Dataset& ds, const AugmentSpec& aug, uint64_t seed,
                               uint64_t step) {
  std::vector<float> out(ds.image_size());
  const int64_t idx = 0;
  int32_t label = -1;
  kd::data::make_batch(ds, &idx, 1, Normalization::identity(1), aug, seed, step, out.data(),
                       &label);
  EXPECT_EQ(label, 3);
  for (float& v : out) v *= 255.0f;
  return out;
}

void expect_pixels(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4) << "pixel " << i;
}

}  // namespace

TEST(Augment, NoAugmentationIsIdentity) {
  const Dataset ds = random_dataset(5, 3, 5, 7, 4);
  const std::vector<int64_t> idx = {4, 0, 4, 2};
  const int64_t size = ds.image_size();
  std::vector<float> out(idx.size() * size);
  std::vector<int32_t> labels(idx.size());
  for (uint64_t step : {0, 1, 99}) {
    kd::data::make_batch(ds, idx.data(), 4, Normalization::identity(3), AugmentSpec{}, 5, step,
                         out.data(), labels.data());
    for (size_t k = 0; k < idx.size(); ++k) {
      EXPECT_EQ(labels[k], ds.labels[idx[k]]);
      for (int64_t i = 0; i < size; ++i)
        ASSERT_EQ(out[k * size + i], ds.image(idx[k])[i] / 255.0f) << k << " " << i;
    }
  }
}

TEST(Augment, NormalizationValues) {
  // Two channels of a 2x2 image, per-channel mean/std; reference in double, tolerance 1e-5.
  Dataset ds;
  ds.n = 1, ds.c = 2, ds.h = 2, ds.w = 2, ds.num_classes = 1;
  ds.images = {0, 51, 128, 255, 255, 0, 10, 200};
  ds.labels = {0};
  const Normalization norm{{0.1f, 0.7f}, {0.2f, 0.3f}};
  std::vector<float> out(8);
  const int64_t idx = 0;
  kd::data::make_batch(ds, &idx, 1, norm, AugmentSpec{}, 0, 0, out.data(), nullptr);
  for (int i = 0; i < 8; ++i) {
    const int ch = i / 4;
    const double want = (ds.images[i] / 255.0 - norm.mean[ch]) / norm.std[ch];
    EXPECT_NEAR(out[i], want, 1e-5) << i;
  }
  EXPECT_NEAR(out[0], -0.5, 1e-6);  // pixel 0 in channel 0
  EXPECT_NEAR(out[3], 4.5, 1e-5);   // pixel 255 in channel 0
  // Unit cube maps 0 -> -1 and 255 -> +1 exactly.
  kd::data::make_batch(ds, &idx, 1, Normalization::unitcube(2), AugmentSpec{}, 0, 0, out.data(),
                       nullptr);
  EXPECT_EQ(out[0], -1.0f);
  EXPECT_EQ(out[3], 1.0f);
  // The crop padding is pixel 0 of each channel after normalization: shift down by one row.
  AugmentSpec crop;
  crop.crop_pad = 1;
  const uint64_t step = find_step(crop, 3, 1, 0, false, false);
  kd::data::make_batch(ds, &idx, 1, norm, crop, 3, step, out.data(), nullptr);
  EXPECT_NEAR(out[0], (128 / 255.0 - 0.1) / 0.2, 1e-5);  // row 0 <- row 1
  EXPECT_NEAR(out[2], -0.5, 1e-6);                       // row 1 is padding in channel 0
  EXPECT_NEAR(out[6], -0.7 / 0.3, 1e-5);                 // ... and in channel 1
}

TEST(Augment, HorizontalFlipHandImage) {
  const Dataset ds = hand_dataset(2, 3, {1, 2, 3, 4, 5, 6});
  AugmentSpec aug;
  aug.hflip = true;
  expect_pixels(augment_one(ds, aug, 1, find_step(aug, 1, 0, 0, true, false)), {3, 2, 1, 6, 5, 4});
  expect_pixels(augment_one(ds, aug, 1, find_step(aug, 1, 0, 0, false, false)), {1, 2, 3, 4, 5, 6});
}

TEST(Augment, VerticalFlipHandImage) {
  const Dataset ds = hand_dataset(2, 3, {1, 2, 3, 4, 5, 6});
  AugmentSpec aug;
  aug.vflip = true;
  expect_pixels(augment_one(ds, aug, 2, find_step(aug, 2, 0, 0, false, true)), {4, 5, 6, 1, 2, 3});
}

// out(y, x) = in(y + dy, x + dx), zero outside: torchvision RandomCrop(padding=1) with crop
// corner (1 + dy, 1 + dx) in the padded image.
TEST(Augment, CropShiftHandCase) {
  const Dataset ds = hand_dataset(3, 4, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  AugmentSpec aug;
  aug.crop_pad = 1;
  expect_pixels(augment_one(ds, aug, 8, find_step(aug, 8, 1, -1, false, false)),
                {0, 5, 6, 7, 0, 9, 10, 11, 0, 0, 0, 0});
  expect_pixels(augment_one(ds, aug, 8, find_step(aug, 8, -1, 1, false, false)),
                {0, 0, 0, 0, 2, 3, 4, 0, 6, 7, 8, 0});
  expect_pixels(augment_one(ds, aug, 8, find_step(aug, 8, 0, 0, false, false)),
                {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
}

// Crop first, then flip: the cropped [0 5 6 7] row becomes [7 6 5 0].
TEST(Augment, CropThenFlip) {
  const Dataset ds = hand_dataset(3, 4, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  AugmentSpec aug;
  aug.crop_pad = 1;
  aug.hflip = true;
  aug.vflip = true;
  expect_pixels(augment_one(ds, aug, 8, find_step(aug, 8, 1, -1, true, false)),
                {7, 6, 5, 0, 11, 10, 9, 0, 0, 0, 0, 0});
  expect_pixels(augment_one(ds, aug, 8, find_step(aug, 8, 1, -1, true, true)),
                {0, 0, 0, 0, 11, 10, 9, 0, 7, 6, 5, 0});
}

// 18000 draws: each shift in [-4, 4] expected 2000 (sd ~42), each flip p = 0.5 (sd ~67 on 9000).
TEST(Augment, DrawDistribution) {
  std::vector<int> dy(9, 0), dx(9, 0);
  int hflips = 0, vflips = 0, both = 0;
  const int draws = 18000;
  for (int i = 0; i < draws; ++i) {
    const auto a = kd::data::draw_sample_augment(4, true, true, 77, i / 128, i % 128);
    ASSERT_TRUE(a.dy >= -4 && a.dy <= 4 && a.dx >= -4 && a.dx <= 4);
    ++dy[a.dy + 4];
    ++dx[a.dx + 4];
    hflips += a.hflip;
    vflips += a.vflip;
    both += a.hflip && a.vflip;
  }
  for (int k = 0; k < 9; ++k) {
    EXPECT_NEAR(dy[k], 2000, 250) << k;
    EXPECT_NEAR(dx[k], 2000, 250) << k;
  }
  EXPECT_NEAR(hflips, 9000, 400);
  EXPECT_NEAR(vflips, 9000, 400);
  EXPECT_NEAR(both, 4500, 350);
  const auto off = kd::data::draw_sample_augment(0, false, false, 77, 3, 5);
  EXPECT_EQ(off.dy, 0);
  EXPECT_EQ(off.dx, 0);
  EXPECT_FALSE(off.hflip || off.vflip);
}

TEST(Augment, ThreadCountIndependence) {
  const Dataset ds = random_dataset(50, 3, 9, 7, 5);
  std::vector<int64_t> idx(37);
  for (int k = 0; k < 37; ++k) idx[k] = (k * 13) % 50;
  AugmentSpec aug;
  aug.crop_pad = 2;
  aug.hflip = true;
  aug.vflip = true;
  const Normalization norm{{0.3f, 0.4f, 0.5f}, {0.2f, 0.25f, 0.3f}};
  const size_t size = idx.size() * ds.image_size();
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> outs;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    outs.emplace_back(size);
    std::vector<int32_t> labels(idx.size());
    kd::data::make_batch(ds, idx.data(), 37, norm, aug, 123, 456, outs.back().data(),
                         labels.data());
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[1].data(), size * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[2].data(), size * sizeof(float)));
}

TEST(Augment, StepSeedAndPositionChangeTheDraws) {
  const Dataset ds = random_dataset(4, 1, 6, 6, 2);
  const std::vector<int64_t> idx(32, 1);  // one image 32 times: positions must differ
  AugmentSpec aug;
  aug.crop_pad = 2;
  aug.hflip = true;
  const int64_t size = ds.image_size();
  std::vector<float> a(32 * size), b(32 * size), c(32 * size);
  kd::data::make_batch(ds, idx.data(), 32, Normalization::unitcube(1), aug, 1, 0, a.data(),
                       nullptr);
  kd::data::make_batch(ds, idx.data(), 32, Normalization::unitcube(1), aug, 1, 1, b.data(),
                       nullptr);
  kd::data::make_batch(ds, idx.data(), 32, Normalization::unitcube(1), aug, 2, 0, c.data(),
                       nullptr);
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
  int distinct_from_first = 0;
  for (int k = 1; k < 32; ++k)
    distinct_from_first += std::memcmp(&a[0], &a[k * size], size * sizeof(float)) != 0;
  EXPECT_GT(distinct_from_first, 20);  // 50 equally likely draws: repeats of sample 0 are rare
}

TEST(Augment, ChannelStatistics) {
  Dataset ds;
  ds.n = 2, ds.c = 2, ds.h = 1, ds.w = 2, ds.num_classes = 1;
  ds.images = {0, 255, 51, 51, /* image 1 */ 255, 255, 51, 51};
  ds.labels = {0, 0};
  const Normalization st = kd::data::channel_statistics(ds);
  EXPECT_NEAR(st.mean[0], 0.75, 1e-6);
  EXPECT_NEAR(st.std[0], std::sqrt(0.75 - 0.5625), 1e-6);
  EXPECT_NEAR(st.mean[1], 0.2, 1e-6);
  EXPECT_NEAR(st.std[1], 0.0, 1e-6);
}

TEST(Augment, RejectsBadArguments) {
  const Dataset ds = random_dataset(3, 2, 4, 4, 2);
  std::vector<float> out(2 * ds.image_size());
  const std::vector<int64_t> bad = {0, 3};
  EXPECT_THROW(kd::data::make_batch(ds, bad.data(), 2, Normalization::unitcube(2), AugmentSpec{}, 0,
                                    0, out.data(), nullptr),
               kd::Error);
  const std::vector<int64_t> ok = {0, 2};
  EXPECT_THROW(kd::data::make_batch(ds, ok.data(), 2, Normalization::unitcube(3), AugmentSpec{}, 0,
                                    0, out.data(), nullptr),
               kd::Error);
}

