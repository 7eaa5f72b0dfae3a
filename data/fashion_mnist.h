// Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test images, 28x28 grey, 10
// classes, as the four gzip-compressed IDX files of the Debian package or the original site.
#pragma once
#include <string>

#include "data/dataset.h"

namespace kd {
namespace data {

// $KDLAB_FMNIST_DIR if set and non-empty, else /usr/share/datasets/fashion-mnist.
std::string default_fashion_mnist_dir();
// {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz from dir (empty dir -> the default dir).
Dataset load_fashion_mnist(const std::string& dir, bool train);
inline Dataset load_fashion_mnist(bool train) { return load_fashion_mnist("", train); }

}  // namespace data
}  // namespace kd
