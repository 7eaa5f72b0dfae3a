// The dataset registry (see datasets.h).
#include "data/datasets.h"

#include <cstdlib>

namespace kd {
namespace data {

const Registry<DatasetEntry>& dataset_registry() {
#define KD_DATASET_ENTRY(name) name##_dataset_entry(),
  static const Registry<DatasetEntry> registry("dataset", {KD_DATASETS(KD_DATASET_ENTRY)});
#undef KD_DATASET_ENTRY
  return registry;
}

std::string dataset_dir(const DatasetEntry& entry, const std::string& dir) {
  if (!dir.empty()) return dir;
  const char* env = entry.dir_env.empty() ? nullptr : std::getenv(entry.dir_env.c_str());
  if (env != nullptr && env[0] != '\0') return env;
  KD_INPUT_CHECK(!entry.default_dir.empty(), "--data-dir: dataset " << entry.name
                                                 << " has no default folder; give --data-dir or $"
                                                 << entry.dir_env);
  return entry.default_dir;
}

Normalization dataset_normalization(const std::string& name, int channels) {
  return dataset_registry().find(name, "--dataset").normalization(channels);
}

Dataset load_dataset(const std::string& name, const std::string& dir, bool train,
                     const LoadOptions& options) {
  const DatasetEntry& entry = dataset_registry().find(name, "--dataset");
  KD_INPUT_CHECK(options.resize >= 0 && options.resize <= 4096,
                 "--resize: expected a size in 1..4096 (0 = off), got " << options.resize);
  KD_INPUT_CHECK(options.resize == 0 || entry.resizable,
                 "--resize: dataset " << name << " has images of one fixed size; only --dataset "
                                              "folder is resized");
  return entry.load(dataset_dir(entry, dir), train, options);
}

}  // namespace data
}  // namespace kd
