// Which examples go where: shuffles, random subsets, stratified subsets, splits, and the epoch
// batch loader. Every draw comes from the counter-based Philox RNG (base/philox.h) keyed by
// (seed, stream, counter), so a given seed gives the same indices on every platform, thread count
// and backend. Subsets and splits are returned sorted: a canonical form, order is the loader's job.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kd {
namespace data {

// A permutation of 0..n-1: Fisher-Yates where step i draws philox_below keyed by
// (seed, kStreamShuffle, epoch * 2^32 + i). Needs n < 2^32.
std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed, uint64_t epoch);

// k distinct indices of 0..n-1, uniformly chosen, sorted ascending (stream kStreamSubset).
std::vector<int64_t> random_subset_indices(int64_t n, int64_t k, uint64_t seed);

// Partitions 0..n-1 into (first, second) with |first| = round(fraction * n), both sorted.
// first equals random_subset_indices(n, |first|, seed): a split is a subset plus its complement.
std::pair<std::vector<int64_t>, std::vector<int64_t>> random_split(int64_t n, double fraction,
                                                                   uint64_t seed);

// The paper's named halves of a training set of n examples (Fig. 4: teachers and students on
// disjoint or shared data): "D0" = random_split(n, 0.5, split_seed).first, "D1" = its complement,
// "all" (also "D0+D1") = 0..n-1. An InputError naming --split for any other name.
std::vector<int64_t> named_split_indices(const std::string& name, int64_t n, uint64_t split_seed);

// Exactly per_class indices from each class 0..num_classes-1 (num_classes < 0: max label + 1),
// uniformly chosen within the class, sorted ascending. Throws kd::InputError if a class has fewer
// than per_class examples. E.g. 20 per class of Fashion-MNIST -> the paper's 200-image teacher set.
std::vector<int64_t> stratified_subset_indices(const std::vector<int32_t>& labels, int per_class,
                                               uint64_t seed, int num_classes = -1);

// One batch of an epoch: indices into the dataset, valid until the next start_epoch.
struct Batch {
  const int64_t* indices = nullptr;
  int count = 0;
  int64_t index_in_epoch = 0;
  // epoch * batches_per_epoch + index_in_epoch: unique per batch of a run; a natural key for the
  // per-batch augmentation randomness (make_batch's step).
  uint64_t step = 0;
};

// Walks a set of example indices in batches, reshuffled every epoch when shuffle is set.
//   BatchLoader loader(ds.n, 128, /*shuffle=*/true, seed);
//   for (epoch...) { loader.start_epoch(epoch); Batch b; while (loader.next(&b)) {...} }
class BatchLoader {
 public:
  // Over examples 0..n-1.
  BatchLoader(int64_t n, int batch_size, bool shuffle, uint64_t seed, bool drop_last = false);
  // Over the given examples (e.g. one part of a random_split), without copying the dataset.
  BatchLoader(std::vector<int64_t> indices, int batch_size, bool shuffle, uint64_t seed,
              bool drop_last = false);

  int64_t size() const { return static_cast<int64_t>(base_.size()); }
  int batch_size() const { return batch_size_; }
  int64_t batches_per_epoch() const;

  // Fixes this epoch's order: base order if !shuffle, else base permuted by
  // shuffled_indices(size, seed, epoch). Must be called before next().
  void start_epoch(uint64_t epoch);
  // Fills *out with the next batch; false when the epoch is done.
  bool next(Batch* out);
  const std::vector<int64_t>& epoch_order() const { return order_; }

 private:
  std::vector<int64_t> base_;
  std::vector<int64_t> order_;
  int batch_size_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  uint64_t epoch_ = 0;
  int64_t next_batch_ = 0;
  bool started_ = false;
};

}  // namespace data
}  // namespace kd
