// The datasets kdlab can read, by name (--dataset). Each entry says where its files live by
// default and how to load its training or test split; the CLI's --dataset help and the "unknown
// dataset" error are generated from this list.
//
// To add a dataset: a file data/<name>.cpp that defines `DatasetEntry <name>_dataset_entry()`,
// and its name in KD_DATASETS below.
#pragma once
#include <functional>
#include <string>

#include "base/registry.h"
#include "data/augment.h"
#include "data/dataset.h"

namespace kd {
namespace data {

// Options a dataset may honour when it is read.
struct LoadOptions {
  int resize = 0;  // --resize N: image-folder images become N x N (0: keep their size)
};

struct DatasetEntry : RegistryEntry {
  std::string dir_env;      // environment variable naming the folder, e.g. KDLAB_FMNIST_DIR
  std::string default_dir;  // where the Debian package puts it
  bool resizable = false;   // honours LoadOptions::resize
  // How its pixels are normalized for a model, per channel count (recorded in checkpoints). The
  // paper normalizes every dataset to the unit cube, (x - 0.5) / 0.5 per channel
  // (paper-notes §3: for the GAN samples' sake), so that is every entry's default.
  std::function<Normalization(int channels)> normalization = Normalization::unitcube;
  // Loads the split from `dir` (already resolved); InputError naming the file on bad data.
  std::function<Dataset(const std::string& dir, bool train, const LoadOptions& options)> load;
};

#define KD_DATASETS(X) \
  X(fmnist)          \
  X(mnist)           \
  X(cifar10)         \
  X(cifar100)        \
  X(folder)

#define KD_DECLARE_DATASET_ENTRY(name) DatasetEntry name##_dataset_entry();
KD_DATASETS(KD_DECLARE_DATASET_ENTRY)
#undef KD_DECLARE_DATASET_ENTRY

const Registry<DatasetEntry>& dataset_registry();

// `dir` when given, else $<dir_env> when set and non-empty, else the entry's default_dir.
std::string dataset_dir(const DatasetEntry& entry, const std::string& dir);
// The normalization dataset `name` gives its `channels`-channel images.
Normalization dataset_normalization(const std::string& name, int channels);
// The split of dataset `name` (an InputError naming --dataset when unknown, or --resize for a
// dataset whose images have one fixed size).
Dataset load_dataset(const std::string& name, const std::string& dir, bool train,
                     const LoadOptions& options = {});

}  // namespace data
}  // namespace kd
