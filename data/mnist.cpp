// MNIST (LeCun et al. 1998): the same four gzip-compressed IDX files as Fashion-MNIST, and its
// registry entry (datasets.h). The paper's out-of-distribution arm distils a Fashion-MNIST
// teacher on these images.
#include "data/datasets.h"
#include "data/idx.h"

namespace kd {
namespace data {

DatasetEntry mnist_dataset_entry() {
  DatasetEntry e;
  e.name = "mnist";
  e.help = "MNIST digits: 28x28 grey, 10 classes, 60k train / 10k test (IDX files)";
  e.dir_env = "KDLAB_MNIST_DIR";
  e.default_dir = "/usr/share/datasets/mnist";
  e.load = [](const std::string& dir, bool train, const LoadOptions&) {
    return load_idx_split(dir, train, "mnist");
  };
  return e;
}

}  // namespace data
}  // namespace kd
