// Readers for IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or raw.
// Every refusal is a kd::InputError with one line naming the file and what was wrong, because a
// bad or half-downloaded dataset file is the most common way a run fails before it starts.
// Validation is strict: a regular file only, magic, dimension sizes (images at most 4096 on a
// side), the exact byte count (truncation and trailing garbage both refuse), the gzip stream's
// own integrity (several members are one stream; other bytes after the last are refused), and
// label ranges. Memory follows the bytes really read, not the header's claim.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace kd {
namespace data {

constexpr uint32_t kIdxMagicImagesU8 = 0x00000803;  // uint8, 3 dimensions (n, rows, cols)
constexpr uint32_t kIdxMagicLabelsU8 = 0x00000801;  // uint8, 1 dimension (n)

// One uint8 IDX array as stored: dims in file order, data row-major.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// Reads a whole IDX file whose magic must equal expected_magic (which fixes dtype and rank).
IdxArray read_idx_u8(const std::string& path, uint32_t expected_magic);

// Images as (n, 1, rows, cols) uint8 pixels; labels as n values in [0, num_classes).
struct IdxImages {
  int n = 0, h = 0, w = 0;
  std::vector<uint8_t> pixels;
};
IdxImages read_idx_images(const std::string& path);
std::vector<int32_t> read_idx_labels(const std::string& path, int num_classes);

// Images + labels, with the counts checked against each other. name defaults to the images path.
Dataset load_idx(const std::string& images_path, const std::string& labels_path, int num_classes,
                 const std::string& name = "");

// The four-file layout of MNIST and Fashion-MNIST: DIR/{train,t10k}-images-idx3-ubyte.gz and
// DIR/{train,t10k}-labels-idx1-ubyte.gz, 10 classes; the Dataset is named <name>-train|test.
Dataset load_idx_split(const std::string& dir, bool train, const std::string& name);

}  // namespace data
}  // namespace kd
