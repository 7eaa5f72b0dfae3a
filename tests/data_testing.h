// Helpers shared by the data-layer tests: a small seeded random dataset, and the check that a
// reader refuses a file in one line naming it.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>

#include "data/dataset.h"
#include "base/check.h"
#include "base/philox.h"

namespace kd {
namespace data_testing {

// n random images of shape (c, h, w), labels i % classes; pixels from philox on kStreamTest.
inline data::Dataset random_dataset(int n, int c, int h, int w, int classes, uint64_t seed = 7) {
  data::Dataset ds;
  ds.n = n;
  ds.c = c;
  ds.h = h;
  ds.w = w;
  ds.num_classes = classes;
  ds.name = "random";
  ds.images.resize(static_cast<size_t>(n) * c * h * w);
  for (size_t i = 0; i < ds.images.size(); ++i)
    ds.images[i] = static_cast<uint8_t>(256.0f * kd::philox_uniform(seed, kd::kStreamTest, i));
  for (int i = 0; i < n; ++i) ds.labels.push_back(i % classes);
  return ds;
}

// `load` must throw an InputError whose one-line message holds `file` and `words`.
inline void expect_refused(const std::function<void()>& load, const std::string& file,
                           const std::string& words) {
  try {
    load();
    ADD_FAILURE() << "accepted; expected a refusal naming " << file;
  } catch (const kd::InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(file), std::string::npos) << m;
    EXPECT_NE(m.find(words), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
  }
}

}  // namespace data_testing
}  // namespace kd
