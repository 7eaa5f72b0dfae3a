// Sampling implementations. Counters: shuffles use epoch * 2^32 + i on kStreamShuffle; subsets
// use kStreamSubset with the high 32 bits of the counter naming the purpose (0: random subset,
// 1 + c: class c of a stratified subset), so no two draws of one seed share a counter.
#include "data/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "base/check.h"
#include "base/philox.h"

namespace kd {
namespace data {
namespace {

constexpr int64_t kMaxCounterIndex = int64_t(1) << 32;

// Partial Fisher-Yates from the front: after the call, v[0..k) is a uniform k-subset of v in a
// uniform order. Position i draws its swap partner with counter (tag << 32) + i.
void partial_shuffle_front(std::vector<int64_t>* v, int64_t k, uint64_t seed, uint64_t stream,
                           uint64_t tag) {
  const int64_t n = static_cast<int64_t>(v->size());
  for (int64_t i = 0; i < k && i < n - 1; ++i) {
    const uint64_t counter = (tag << 32) + static_cast<uint64_t>(i);
    const int64_t j =
        i + static_cast<int64_t>(philox_below(seed, stream, counter, static_cast<uint64_t>(n - i)));
    std::swap((*v)[i], (*v)[j]);
  }
}

}  // namespace

std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed, uint64_t epoch) {
  KD_CHECK(n >= 0 && n < kMaxCounterIndex, "shuffled_indices: n=" << n << " out of range");
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t(0));
  for (int64_t i = n - 1; i > 0; --i) {
    const uint64_t counter = (epoch << 32) + static_cast<uint64_t>(i);
    const int64_t j = static_cast<int64_t>(
        philox_below(seed, kStreamShuffle, counter, static_cast<uint64_t>(i + 1)));
    std::swap(v[i], v[j]);
  }
  return v;
}

std::vector<int64_t> random_subset_indices(int64_t n, int64_t k, uint64_t seed) {
  KD_CHECK(n >= 0 && n < kMaxCounterIndex, "random_subset_indices: n=" << n << " out of range");
  KD_INPUT_CHECK(k >= 0 && k <= n,
                 "random subset: cannot choose " << k << " of " << n << " examples");
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t(0));
  partial_shuffle_front(&v, k, seed, kStreamSubset, 0);
  v.resize(static_cast<size_t>(k));
  std::sort(v.begin(), v.end());
  return v;
}

std::pair<std::vector<int64_t>, std::vector<int64_t>> random_split(int64_t n, double fraction,
                                                                   uint64_t seed) {
  KD_INPUT_CHECK(fraction >= 0.0 && fraction <= 1.0,
                 "random split: fraction " << fraction << " is outside [0, 1]");
  const int64_t k = std::llround(fraction * static_cast<double>(n));
  std::vector<int64_t> first = random_subset_indices(n, k, seed);
  std::vector<int64_t> second;
  second.reserve(static_cast<size_t>(n - k));
  size_t f = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (f < first.size() && first[f] == i) {
      ++f;
    } else {
      second.push_back(i);
    }
  }
  return {std::move(first), std::move(second)};
}

std::vector<int64_t> named_split_indices(const std::string& name, int64_t n,
                                         uint64_t split_seed) {
  if (name == "all" || name == "D0+D1") {
    std::vector<int64_t> all(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
    return all;
  }
  KD_INPUT_CHECK(name == "D0" || name == "D1",
                 "--split: expected all, D0, D1 or D0+D1, got '" << name << "'");
  auto halves = random_split(n, 0.5, split_seed);
  return name == "D0" ? halves.first : halves.second;
}

std::vector<int64_t> stratified_subset_indices(const std::vector<int32_t>& labels, int per_class,
                                               uint64_t seed, int num_classes) {
  KD_INPUT_CHECK(per_class >= 0, "stratified subset: per_class must be >= 0, got " << per_class);
  if (num_classes < 0) {
    int32_t max_label = -1;
    for (int32_t y : labels) max_label = std::max(max_label, y);
    num_classes = max_label + 1;
  }
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(num_classes));
  for (size_t i = 0; i < labels.size(); ++i) {
    const int32_t y = labels[i];
    KD_CHECK(y >= 0 && y < num_classes, "stratified subset: label " << y << " at index " << i
                                                                    << " out of range [0, "
                                                                    << num_classes << ")");
    members[y].push_back(static_cast<int64_t>(i));
  }
  std::vector<int64_t> out;
  // per_class comes from a flag (--subset-per-class) and is checked against each class below;
  // the result can never hold more than every example, so that bounds the reservation.
  out.reserve(std::min(labels.size(), static_cast<size_t>(per_class) * num_classes));
  for (int c = 0; c < num_classes; ++c) {
    std::vector<int64_t>& m = members[c];
    KD_INPUT_CHECK(static_cast<int64_t>(m.size()) >= per_class,
                   "stratified subset: class " << c << " has " << m.size()
                                               << " examples, fewer than the " << per_class
                                               << " requested per class");
    partial_shuffle_front(&m, per_class, seed, kStreamSubset, 1 + static_cast<uint64_t>(c));
    out.insert(out.end(), m.begin(), m.begin() + per_class);
  }
  std::sort(out.begin(), out.end());
  return out;
}

BatchLoader::BatchLoader(int64_t n, int batch_size, bool shuffle, uint64_t seed, bool drop_last)
    : BatchLoader(std::vector<int64_t>(), batch_size, shuffle, seed, drop_last) {
  KD_CHECK(n >= 0, "BatchLoader: n=" << n);
  base_.resize(static_cast<size_t>(n));
  std::iota(base_.begin(), base_.end(), int64_t(0));
}

BatchLoader::BatchLoader(std::vector<int64_t> indices, int batch_size, bool shuffle, uint64_t seed,
                         bool drop_last)
    : base_(std::move(indices)),
      batch_size_(batch_size),
      shuffle_(shuffle),
      seed_(seed),
      drop_last_(drop_last) {
  KD_INPUT_CHECK(batch_size >= 1, "batch size must be >= 1, got " << batch_size);
}

int64_t BatchLoader::batches_per_epoch() const {
  const int64_t n = size();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

void BatchLoader::start_epoch(uint64_t epoch) {
  epoch_ = epoch;
  next_batch_ = 0;
  started_ = true;
  if (!shuffle_) {
    order_ = base_;
    return;
  }
  const std::vector<int64_t> perm = shuffled_indices(size(), seed_, epoch);
  order_.resize(base_.size());
  for (size_t i = 0; i < perm.size(); ++i) order_[i] = base_[static_cast<size_t>(perm[i])];
}

bool BatchLoader::next(Batch* out) {
  KD_CHECK(started_, "BatchLoader::next called before start_epoch");
  if (next_batch_ >= batches_per_epoch()) return false;
  const int64_t begin = next_batch_ * batch_size_;
  out->indices = order_.data() + begin;
  out->count = static_cast<int>(std::min<int64_t>(batch_size_, size() - begin));
  out->index_in_epoch = next_batch_;
  out->step =
      epoch_ * static_cast<uint64_t>(batches_per_epoch()) + static_cast<uint64_t>(next_batch_);
  ++next_batch_;
  return true;
}

}  // namespace data
}  // namespace kd
