// An in-memory image-classification dataset: uint8 pixels in NCHW order plus int32 labels.
// Pixels stay uint8 (4x smaller than float, and what the readers produce); conversion to float,
// normalization and augmentation happen per batch (data/augment.h), so subsets and splits are
// cheap copies of bytes and a whole dataset can later be uploaded to the GPU once.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kd {
namespace data {

struct Dataset {
  int n = 0, c = 0, h = 0, w = 0;
  std::vector<uint8_t> images;  // n*c*h*w, NCHW
  std::vector<int32_t> labels;  // n, each in [0, num_classes)
  int num_classes = 0;
  std::string name;

  int64_t image_size() const { return static_cast<int64_t>(c) * h * w; }
  const uint8_t* image(int64_t i) const { return images.data() + i * image_size(); }

  // Throws kd::Error when the vectors disagree with the shape or a label is out of range:
  // every Dataset handed between layers is supposed to satisfy this.
  void validate() const;

  // A new Dataset holding the given examples in the given order (duplicates allowed).
  Dataset subset(const std::vector<int64_t>& indices) const;
  // The first k examples (k <= n).
  Dataset take_first(int64_t k) const;
  // Every image zero-padded (pixel value 0) to size x size, centred (the extra row or column, if
  // the difference is odd, goes to the bottom and right). InputError if an image is larger.
  Dataset padded_to(int size) const;
  // Number of examples per class, size num_classes.
  std::vector<int64_t> class_counts() const;
};

}  // namespace data
}  // namespace kd
