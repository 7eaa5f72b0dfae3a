// Fuzz target: the IDX readers (data/idx.h), raw and gzip. The first byte picks the reader and the
// encoding; the rest is the file. Even: written as is (raw IDX, or a gzip stream the fuzzer
// damages: zlib reads both through one API); odd: the harness gzips it first, so the decompressed
// payload itself is fuzzed behind a valid stream (sizes, magic, trailing bytes, labels).
#include <zlib.h>

#include <cstdlib>

#include "data/idx.h"
#include "tests/fuzz/fuzz_target.h"

namespace {

std::string gzip_to(const std::string& path, const uint8_t* data, size_t size) {
  gzFile out = gzopen(path.c_str(), "wb1");
  if (out == nullptr || (size > 0 && gzwrite(out, data, unsigned(size)) != int(size)) ||
      gzclose(out) != Z_OK)
    std::abort();  // the harness's own failure
  return path;
}

}  // namespace

KD_FUZZ_TARGET(idx) {
  if (size < 1) return;
  const uint8_t mode = data[0];
  const bool labels = (mode & 2) != 0;
  const std::string name = labels ? "labels-idx1-ubyte.gz" : "images-idx3-ubyte.gz";
  const std::string path = (mode & 1) ? gzip_to(kd::fuzz::scratch_dir() + "/" + name, data + 1, size - 1)
                                      : kd::fuzz::write_scratch(name, data + 1, size - 1);
  if (labels) {
    for (int32_t label : kd::data::read_idx_labels(path, 10))
      if (label < 0 || label >= 10) std::abort();  // the range the reader promises
  } else {
    kd::data::IdxImages images = kd::data::read_idx_images(path);
    // What a loaded dataset promises its users: the pixel count matches the header.
    if (images.pixels.size() != size_t(images.n) * images.h * images.w) std::abort();
  }
}
