// CIFAR-10/100 readers and their registry entries (see cifar.h, datasets.h). A CIFAR file is a
// run of fixed-size records, so the file's size says everything before a byte is read: the
// record count, and exactly how much memory the file needs.
#include "data/cifar.h"

#include <cstring>
#include <new>

#include "base/check.h"
#include "base/input_file.h"
#include "data/datasets.h"

namespace kd {
namespace data {

namespace {

// Appends the records of one file to `ds` (images and labels).
void append_cifar_file(const std::string& path, const CifarFormat& format, Dataset& ds) {
  // A regular file only (a FIFO would block forever); its size fixes every allocation below.
  InputFile in(path);
  const int64_t bytes = in.size();
  const int64_t record = format.label_bytes + kCifarPixels;
  KD_INPUT_CHECK(bytes > 0, path << ": empty file (expected records of " << record << " bytes)");
  KD_INPUT_CHECK(bytes % record == 0,
                 path << ": " << bytes << " bytes is not a whole number of " << record
                      << "-byte CIFAR records (" << bytes / record << " records and "
                      << bytes % record << " bytes: truncated, or not this CIFAR's layout)");
  const int64_t count = bytes / record;
  KD_INPUT_CHECK(ds.n + count <= int64_t(1) << 30, path << ": too many records");
  std::vector<uint8_t> raw;
  try {
    raw.resize(static_cast<size_t>(bytes));
    ds.images.reserve(ds.images.size() + static_cast<size_t>(count) * kCifarPixels);
    ds.labels.reserve(ds.labels.size() + static_cast<size_t>(count));
  } catch (const std::bad_alloc&) {
    throw Error(path + ": out of memory reading " + std::to_string(bytes) + " bytes");
  }
  const size_t got = in.read(raw.data(), raw.size());
  KD_INPUT_CHECK(static_cast<int64_t>(got) == bytes,
                 path << ": read " << got << " of " << bytes << " bytes (the file shrank)");
  const size_t first_image = ds.images.size();
  ds.images.resize(first_image + static_cast<size_t>(count) * kCifarPixels);
  for (int64_t r = 0; r < count; ++r) {
    const uint8_t* rec = raw.data() + r * record;
    const int label = rec[format.label_index];
    KD_INPUT_CHECK(label < format.num_classes,
                   path << ": record " << r << " (byte " << r * record + format.label_index
                        << ") has label " << label << ", expected 0.." << format.num_classes - 1);
    KD_INPUT_CHECK(format.coarse_classes == 0 || rec[0] < format.coarse_classes,
                   path << ": record " << r << " (byte " << r * record << ") has coarse label "
                        << int(rec[0]) << ", expected 0.." << format.coarse_classes - 1);
    ds.labels.push_back(label);
    std::memcpy(ds.images.data() + first_image + r * kCifarPixels, rec + format.label_bytes,
                kCifarPixels);
  }
  ds.n += static_cast<int>(count);
}

}  // namespace

Dataset read_cifar(const std::vector<std::string>& paths, const CifarFormat& format,
                   const std::string& name) {
  Dataset ds;
  ds.c = 3, ds.h = kCifarSide, ds.w = kCifarSide;
  ds.num_classes = format.num_classes;
  ds.name = name;
  for (const std::string& path : paths) append_cifar_file(path, format, ds);
  ds.validate();
  return ds;
}

std::vector<std::string> cifar10_files(const std::string& dir, bool train) {
  if (!train) return {dir + "/test_batch.bin"};
  std::vector<std::string> files;
  for (int i = 1; i <= 5; ++i) files.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");
  return files;
}

std::vector<std::string> cifar100_files(const std::string& dir, bool train) {
  return {dir + (train ? "/train.bin" : "/test.bin")};
}

DatasetEntry cifar10_dataset_entry() {
  DatasetEntry e;
  e.name = "cifar10";
  e.help = "CIFAR-10: 32x32 RGB, 10 classes, 50k train / 10k test (binary version: "
           "data_batch_1..5.bin, test_batch.bin)";
  e.dir_env = "KDLAB_CIFAR10_DIR";
  e.default_dir = "/usr/share/datasets/cifar-10-batches-bin";
  e.load = [](const std::string& dir, bool train, const LoadOptions&) {
    return read_cifar(cifar10_files(dir, train), kCifar10Format,
                      train ? "cifar10-train" : "cifar10-test");
  };
  return e;
}

DatasetEntry cifar100_dataset_entry() {
  DatasetEntry e;
  e.name = "cifar100";
  e.help = "CIFAR-100: 32x32 RGB, 100 fine classes, 50k train / 10k test (binary version: "
           "train.bin, test.bin)";
  e.dir_env = "KDLAB_CIFAR100_DIR";
  e.default_dir = "/usr/share/datasets/cifar-100-binary";
  e.load = [](const std::string& dir, bool train, const LoadOptions&) {
    return read_cifar(cifar100_files(dir, train), kCifar100Format,
                      train ? "cifar100-train" : "cifar100-test");
  };
  return e;
}

}  // namespace data
}  // namespace kd
