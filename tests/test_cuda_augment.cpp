// make_batch_device and mixup_device against their CPU twins (data/device_batch.h). Both sides
// run the same integer pixel maths (data/augment_math.h) and the same float normalization and
// MixUp expressions (no contraction possible), so the comparisons are BITWISE: any difference is
// a bug, not rounding. Covers every augmentation alone and combined, 1/2/3/4 channels, odd and
// non-square sizes, planes larger than the block (strided loops), batch 1, repeated indices.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/device_batch.h"
#include "tests/cuda_testing.h"
#include "tests/data_testing.h"

using kd::cuda_testing::DeviceArray;
using kd::data::AugmentSpec;
using kd::data::Dataset;
using kd::data::Normalization;

namespace {

AugmentSpec spec_named(const std::string& name) {
  AugmentSpec s;
  if (name == "cropflip" || name == "all") {
    s.crop_pad = 2;
    s.hflip = s.vflip = true;
  }
  if (name == "rotation" || name == "all") s.rotation_degrees = 20;
  if (name == "rotation180") s.rotation_degrees = 180;
  if (name == "jitter" || name == "all") s.brightness = s.contrast = s.saturation = s.hue = 0.2;
  if (name == "jitter_strong") {
    s.brightness = s.contrast = s.saturation = 0.9;
    s.hue = 0.5;
  }
  if (name == "noise" || name == "all") s.noise_p = name == "all" ? 0.2 : 0.5;
  return s;
}

Normalization some_norm(int c) {
  Normalization n;
  for (int ch = 0; ch < c; ++ch) {
    n.mean.push_back(0.3f + 0.1f * ch);
    n.std.push_back(0.2f + 0.05f * ch);
  }
  return n;
}

void expect_device_matches_cpu(const Dataset& ds, const std::vector<int64_t>& idx,
                               const AugmentSpec& aug, const std::string& what) {
  const int count = static_cast<int>(idx.size());
  const size_t size = static_cast<size_t>(count) * ds.image_size();
  const Normalization norm = some_norm(ds.c);
  std::vector<float> want(size);
  std::vector<int32_t> want_labels(count);
  kd::data::make_batch(ds, idx.data(), count, norm, aug, 77, 5, want.data(), want_labels.data());

  DeviceArray<uint8_t> images(ds.images);
  DeviceArray<int32_t> labels(ds.labels);
  DeviceArray<int64_t> idx_device(idx);
  DeviceArray<float> out(size);
  DeviceArray<int32_t> out_labels(count);
  kd::data::DeviceDatasetView view{images.get(), labels.get(), ds.n, ds.c, ds.h, ds.w};
  kd::data::make_batch_device(view, idx_device.get(), count, norm, aug, 77, 5, out.get(),
                              out_labels.get());
  const std::vector<float> got = out.host();
  EXPECT_EQ(out_labels.host(), want_labels) << what;
  size_t mismatches = 0, first = size;
  for (size_t i = 0; i < size; ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      if (first == size) first = i;
      ++mismatches;
    }
  }
  EXPECT_EQ(mismatches, 0u) << what << ": first at " << first << " got "
                            << (first < size ? got[first] : 0) << " want "
                            << (first < size ? want[first] : 0);
}

}  // namespace

TEST(CudaAugment, MakeBatchMatchesCpuBitwise) {
  KD_REQUIRE_CUDA();
  struct Shape {
    int c, h, w;
  };
  // 3x7x9: odd and non-square; 1x28x28 and 3x32x32: planes above 256 threads; 2 and 4 channels
  // take the per-channel colour path.
  const Shape shapes[] = {{3, 7, 9}, {1, 28, 28}, {3, 32, 32}, {2, 5, 6}, {4, 3, 17}};
  const char* specs[] = {"none", "cropflip", "rotation", "rotation180", "jitter",
                         "jitter_strong", "noise", "all"};
  for (const Shape& s : shapes) {
    const Dataset ds = kd::data_testing::random_dataset(13, s.c, s.h, s.w, 5, 3 + s.c);
    std::vector<int64_t> idx(37);
    for (int k = 0; k < 37; ++k) idx[k] = (k * 5) % 13;  // repeats: positions must still differ
    for (const char* name : specs) {
      const std::string what = std::string(name) + " c" + std::to_string(s.c) + " " +
                               std::to_string(s.h) + "x" + std::to_string(s.w);
      expect_device_matches_cpu(ds, idx, spec_named(name), what);
      expect_device_matches_cpu(ds, {12}, spec_named(name), what + " batch 1");
    }
  }
}

TEST(CudaAugment, BadIndexGivesNaNAndMinusOne) {
  KD_REQUIRE_CUDA();
  const Dataset ds = kd::data_testing::random_dataset(3, 3, 4, 5, 2);
  DeviceArray<uint8_t> images(ds.images);
  DeviceArray<int32_t> labels(ds.labels);
  DeviceArray<int64_t> idx(std::vector<int64_t>{1, 3, -1});
  DeviceArray<float> out(3 * ds.image_size());
  DeviceArray<int32_t> out_labels(3);
  kd::data::DeviceDatasetView view{images.get(), labels.get(), ds.n, ds.c, ds.h, ds.w};
  kd::data::make_batch_device(view, idx.get(), 3, Normalization::unitcube(3), spec_named("all"),
                              1, 1, out.get(), out_labels.get());
  const auto got = out.host();
  const auto got_labels = out_labels.host();
  EXPECT_EQ(got_labels, (std::vector<int32_t>{ds.labels[1], -1, -1}));
  for (int64_t i = 0; i < ds.image_size(); ++i) {
    EXPECT_FALSE(std::isnan(got[i])) << i;
    EXPECT_TRUE(std::isnan(got[ds.image_size() + i])) << i;
    EXPECT_TRUE(std::isnan(got[2 * ds.image_size() + i])) << i;
  }
  EXPECT_THROW(kd::data::make_batch_device(view, idx.get(), 3, Normalization::unitcube(2),
                                           AugmentSpec{}, 1, 1, out.get(), nullptr),
               kd::Error);
}

TEST(CudaAugment, MixupMatchesCpuBitwise) {
  KD_REQUIRE_CUDA();
  for (int count : {1, 2, 37}) {
    for (double alpha : {1.0, 0.2}) {
      const int64_t sample = 3 * 7 * 9;
      std::vector<float> x(count * sample);
      for (size_t i = 0; i < x.size(); ++i)
        x[i] = 2.0f * kd::philox_uniform(count, kd::kStreamTest, i) - 1.0f;
      const auto draw = kd::data::draw_mixup(alpha, count, 8, 3);
      std::vector<float> want = x;
      kd::data::mixup_batch(want.data(), count, sample, draw);
      DeviceArray<float> device(x);
      kd::data::mixup_device(device.get(), count, sample, draw);
      const auto got = device.host();
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)))
          << "count " << count << " alpha " << alpha;
    }
  }
}

