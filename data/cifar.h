// CIFAR-10 and CIFAR-100 in their official binary layout (Krizhevsky 2009), as unpacked from the
// "binary version" archives: 32x32 RGB images, each record one label byte (CIFAR-10) or a coarse
// and a fine label byte (CIFAR-100), then 3072 pixel bytes (the red plane, the green, the blue,
// each 32 rows of 32). CIFAR-10: data_batch_1.bin .. data_batch_5.bin and test_batch.bin;
// CIFAR-100: train.bin and test.bin, read with the 100 fine labels (the paper's).
// Validation is as strict as the IDX reader's: a file that is missing, empty, not a whole number
// of records (truncated or with trailing bytes) or holds a label out of range is refused with one
// line naming the file, and the byte offset where it matters.
#pragma once
#include <string>
#include <vector>

#include "data/dataset.h"

namespace kd {
namespace data {

struct CifarFormat {
  int label_bytes = 1;   // bytes before the pixels: 1 (CIFAR-10) or 2 (CIFAR-100)
  int label_index = 0;   // which of them is the label used: 0, or 1 for CIFAR-100's fine label
  int num_classes = 10;  // labels must be below this
  int coarse_classes = 0;  // CIFAR-100: its first label byte (the superclass) must be below this
};

constexpr int kCifarSide = 32;
constexpr int kCifarPixels = 3 * kCifarSide * kCifarSide;

// The records of every file, in file order, as one Dataset (n, 3, 32, 32).
Dataset read_cifar(const std::vector<std::string>& paths, const CifarFormat& format,
                   const std::string& name);

// The files of each split under `dir`.
std::vector<std::string> cifar10_files(const std::string& dir, bool train);
std::vector<std::string> cifar100_files(const std::string& dir, bool train);
constexpr CifarFormat kCifar10Format{1, 0, 10, 0};
constexpr CifarFormat kCifar100Format{2, 1, 100, 20};

}  // namespace data
}  // namespace kd
