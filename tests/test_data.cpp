// Tests for sampling (shuffles, subsets, splits, the batch loader) and the Dataset helpers:
// determinism, permutation validity, exact per-class counts, split disjointness, and uniformity
// checks with stated tolerances.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <vector>

#include "data/fashion_mnist.h"
#include "data/idx.h"
#include "data/sampling.h"
#include "base/check.h"
#include "base/philox.h"
#include "tests/data_testing.h"

using kd::data::Dataset;

namespace {

bool is_permutation_of_range(const std::vector<int64_t>& v, int64_t n) {
  std::vector<int64_t> s = v;
  std::sort(s.begin(), s.end());
  for (int64_t i = 0; i < n; ++i)
    if (s.size() != static_cast<size_t>(n) || s[i] != i) return false;
  return s.size() == static_cast<size_t>(n);
}

bool strictly_increasing(const std::vector<int64_t>& v) {
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] <= v[i - 1]) return false;
  return true;
}

using kd::data_testing::random_dataset;

}  // namespace

// ---------------------------------------------------------------- sampling

TEST(Sampling, ShuffleIsADeterministicPermutation) {
  for (int64_t n : {0, 1, 2, 17, 1000}) {
    const auto a = kd::data::shuffled_indices(n, 42, 3);
    EXPECT_TRUE(is_permutation_of_range(a, n)) << n;
    EXPECT_EQ(a, kd::data::shuffled_indices(n, 42, 3)) << n;
  }
  const auto e0 = kd::data::shuffled_indices(1000, 42, 0);
  EXPECT_NE(e0, kd::data::shuffled_indices(1000, 42, 1));
  EXPECT_NE(e0, kd::data::shuffled_indices(1000, 43, 0));
}

// Where element 0 lands over many epochs of n = 5 must be uniform (catches Sattolo-style
// off-by-one draws, which never leave an element in place). Expected 4000 per slot, sd ~57.
TEST(Sampling, ShuffleIsUniform) {
  std::vector<int> where(5, 0);
  for (uint64_t epoch = 0; epoch < 20000; ++epoch) {
    const auto p = kd::data::shuffled_indices(5, 1, epoch);
    ++where[std::find(p.begin(), p.end(), 0) - p.begin()];
  }
  for (int k = 0; k < 5; ++k) EXPECT_NEAR(where[k], 4000, 300) << "slot " << k;
}

TEST(Sampling, RandomSubset) {
  const auto s = kd::data::random_subset_indices(101, 37, 5);
  ASSERT_EQ(s.size(), 37u);
  EXPECT_TRUE(strictly_increasing(s));
  EXPECT_GE(s.front(), 0);
  EXPECT_LT(s.back(), 101);
  EXPECT_EQ(s, kd::data::random_subset_indices(101, 37, 5));
  EXPECT_NE(s, kd::data::random_subset_indices(101, 37, 6));
  EXPECT_TRUE(kd::data::random_subset_indices(10, 0, 5).empty());
  EXPECT_TRUE(is_permutation_of_range(kd::data::random_subset_indices(10, 10, 5), 10));
  EXPECT_THROW(kd::data::random_subset_indices(10, 11, 5), kd::InputError);
}

// Each index is included with probability k/n = 0.5: 8000 trials, expected 4000, sd ~45.
TEST(Sampling, RandomSubsetIsUniform) {
  std::vector<int> hits(8, 0);
  for (uint64_t seed = 0; seed < 8000; ++seed)
    for (int64_t i : kd::data::random_subset_indices(8, 4, seed)) ++hits[i];
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(hits[i], 4000, 250) << "index " << i;
}

TEST(Sampling, RandomSplitSizesAndDisjointness) {
  const auto parts = kd::data::random_split(101, 0.3, 11);
  const auto& a = parts.first;
  const auto& b = parts.second;
  EXPECT_EQ(a.size(), 30u);
  EXPECT_EQ(b.size(), 71u);
  EXPECT_TRUE(strictly_increasing(a));
  EXPECT_TRUE(strictly_increasing(b));
  std::vector<int64_t> both = a;
  both.insert(both.end(), b.begin(), b.end());
  EXPECT_TRUE(is_permutation_of_range(both, 101));  // disjoint and covering
  EXPECT_EQ(a, kd::data::random_subset_indices(101, 30, 11));
  const auto half = kd::data::random_split(50000, 0.5, 0);
  EXPECT_EQ(half.first.size(), 25000u);
  EXPECT_EQ(half.second.size(), 25000u);
  EXPECT_THROW(kd::data::random_split(10, 1.5, 0), kd::InputError);
}

TEST(Sampling, NamedSplitHalvesAreDisjointCoverAllAndFollowTheSeed) {
  const std::vector<int64_t> d0 = kd::data::named_split_indices("D0", 101, 5);
  const std::vector<int64_t> d1 = kd::data::named_split_indices("D1", 101, 5);
  EXPECT_EQ(d0.size(), 51u);  // llround(50.5) = 51
  EXPECT_EQ(d1.size(), 50u);
  std::vector<int64_t> both = d0;
  both.insert(both.end(), d1.begin(), d1.end());
  std::sort(both.begin(), both.end());
  EXPECT_EQ(both, kd::data::named_split_indices("all", 101, 5));
  EXPECT_EQ(kd::data::named_split_indices("D0+D1", 101, 5),
            kd::data::named_split_indices("all", 101, 9));
  EXPECT_EQ(d0, kd::data::named_split_indices("D0", 101, 5)) << "same seed, same half";
  EXPECT_NE(d0, kd::data::named_split_indices("D0", 101, 6)) << "another seed, another half";
  EXPECT_THROW(kd::data::named_split_indices("D2", 101, 5), kd::InputError);
}

TEST(Sampling, StratifiedSubsetExactPerClass) {
  // Uneven classes: class c has 5 + 3c members, interleaved.
  std::vector<int32_t> labels;
  for (int round = 0; round < 20; ++round)
    for (int c = 0; c < 5; ++c)
      if (round < 5 + 3 * c) labels.push_back(c);
  const auto s = kd::data::stratified_subset_indices(labels, 4, 9);
  ASSERT_EQ(s.size(), 20u);
  EXPECT_TRUE(strictly_increasing(s));
  std::vector<int> per(5, 0);
  for (int64_t i : s) ++per[labels[i]];
  EXPECT_EQ(per, std::vector<int>(5, 4));
  EXPECT_EQ(s, kd::data::stratified_subset_indices(labels, 4, 9));
  EXPECT_NE(s, kd::data::stratified_subset_indices(labels, 4, 10));
  // All of class 0 (5 members) when per_class == 5.
  EXPECT_EQ(kd::data::stratified_subset_indices(labels, 5, 9).size(), 25u);
}

TEST(Sampling, StratifiedSubsetRefusesSmallClasses) {
  const std::vector<int32_t> labels = {0, 0, 0, 1, 1, 2, 2, 2};
  try {
    kd::data::stratified_subset_indices(labels, 3, 0);
    ADD_FAILURE() << "accepted a class with 2 members";
  } catch (const kd::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("class 1 has 2 examples, fewer than the 3 requested"),
              std::string::npos)
        << e.what();
  }
  // An explicitly declared class with no members at all.
  EXPECT_THROW(kd::data::stratified_subset_indices(labels, 1, 0, 4), kd::InputError);
}

TEST(Sampling, StratifiedFashionMnistTeacherSet) {
  const std::string dir = kd::data::default_fashion_mnist_dir();
  if (!std::filesystem::is_directory(dir)) GTEST_SKIP() << "no Fashion-MNIST at " << dir;
  const auto labels = kd::data::read_idx_labels(dir + "/train-labels-idx1-ubyte.gz", 10);
  const auto s = kd::data::stratified_subset_indices(labels, 20, 0);
  ASSERT_EQ(s.size(), 200u);
  std::vector<int> per(10, 0);
  for (int64_t i : s) ++per[labels[i]];
  EXPECT_EQ(per, std::vector<int>(10, 20));
}

TEST(Sampling, BatchLoaderCoversEachEpoch) {
  kd::data::BatchLoader loader(10, 3, /*shuffle=*/true, 4);
  EXPECT_EQ(loader.batches_per_epoch(), 4);
  std::vector<std::vector<int64_t>> epochs;
  for (uint64_t epoch = 0; epoch < 2; ++epoch) {
    loader.start_epoch(epoch);
    std::vector<int64_t> seen;
    std::vector<int> sizes;
    kd::data::Batch b;
    int64_t k = 0;
    while (loader.next(&b)) {
      EXPECT_EQ(b.index_in_epoch, k);
      EXPECT_EQ(b.step, epoch * 4 + k);
      ++k;
      sizes.push_back(b.count);
      seen.insert(seen.end(), b.indices, b.indices + b.count);
    }
    EXPECT_EQ(sizes, (std::vector<int>{3, 3, 3, 1}));
    EXPECT_TRUE(is_permutation_of_range(seen, 10));
    EXPECT_EQ(seen, kd::data::shuffled_indices(10, 4, epoch));
    epochs.push_back(seen);
  }
  EXPECT_NE(epochs[0], epochs[1]);
}

TEST(Sampling, BatchLoaderDropLastAndNoShuffle) {
  kd::data::BatchLoader loader(10, 3, /*shuffle=*/false, 4, /*drop_last=*/true);
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  loader.start_epoch(5);
  std::vector<int64_t> seen;
  kd::data::Batch b;
  while (loader.next(&b)) {
    EXPECT_EQ(b.count, 3);
    seen.insert(seen.end(), b.indices, b.indices + b.count);
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  kd::data::BatchLoader tiny(2, 3, true, 0, /*drop_last=*/true);
  tiny.start_epoch(0);
  EXPECT_FALSE(tiny.next(&b));
  EXPECT_THROW(kd::data::BatchLoader(5, 0, true, 0), kd::InputError);
}

TEST(Sampling, BatchLoaderOverIndexSubset) {
  const std::vector<int64_t> base = {3, 8, 20, 21, 40};
  kd::data::BatchLoader loader(base, 2, /*shuffle=*/true, 9);
  loader.start_epoch(1);
  const auto perm = kd::data::shuffled_indices(5, 9, 1);
  ASSERT_EQ(loader.epoch_order().size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(loader.epoch_order()[i], base[perm[i]]);
}

// ---------------------------------------------------------------- Dataset helpers

TEST(Dataset, SubsetTakeFirstAndCounts) {
  const Dataset ds = random_dataset(7, 3, 2, 5, 3);
  ds.validate();
  const Dataset sub = ds.subset({6, 0, 6});
  ASSERT_EQ(sub.n, 3);
  EXPECT_EQ(sub.labels, (std::vector<int32_t>{0, 0, 0}));
  EXPECT_EQ(0, std::memcmp(sub.image(0), ds.image(6), ds.image_size()));
  EXPECT_EQ(0, std::memcmp(sub.image(1), ds.image(0), ds.image_size()));
  EXPECT_EQ(0, std::memcmp(sub.image(2), ds.image(6), ds.image_size()));
  const Dataset first = ds.take_first(4);
  EXPECT_EQ(first.n, 4);
  EXPECT_EQ(first.images, std::vector<uint8_t>(ds.images.begin(), ds.images.begin() + 4 * 30));
  EXPECT_EQ(first.labels, (std::vector<int32_t>{0, 1, 2, 0}));
  EXPECT_EQ(ds.class_counts(), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_THROW(ds.subset({7}), kd::Error);
  EXPECT_THROW(ds.take_first(8), kd::Error);
  Dataset bad = ds;
  bad.labels[2] = 3;
  EXPECT_THROW(bad.validate(), kd::Error);
}
