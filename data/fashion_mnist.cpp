// Fashion-MNIST's files and its registry entry (see fashion_mnist.h, datasets.h).
#include "data/fashion_mnist.h"

#include "data/datasets.h"
#include "data/idx.h"

namespace kd {
namespace data {

DatasetEntry fmnist_dataset_entry() {
  DatasetEntry e;
  e.name = "fmnist";
  e.help = "Fashion-MNIST: 28x28 grey, 10 classes, 60k train / 10k test (IDX files)";
  e.dir_env = "KDLAB_FMNIST_DIR";
  e.default_dir = "/usr/share/datasets/fashion-mnist";
  e.load = [](const std::string& dir, bool train, const LoadOptions&) {
    return load_idx_split(dir, train, "fashion-mnist");
  };
  return e;
}

std::string default_fashion_mnist_dir() { return dataset_dir(fmnist_dataset_entry(), ""); }

Dataset load_fashion_mnist(const std::string& dir, bool train) {
  return load_dataset("fmnist", dir, train);
}

}  // namespace data
}  // namespace kd
