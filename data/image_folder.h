// An image-folder dataset: ROOT/train/<class>/<image> and ROOT/test/<class>/<image>, one
// sub-folder per class (classes are the train/ sub-folders in name order; test/ may lack some but
// may not add any). Images are PNG, JPEG or BMP, decoded by stb_image; every image of a dataset
// must have the size and channel count (1 grey or 3 RGB) of the first one read, unless --resize N
// brings each to N x N. Files are read in name order; hidden files (".*") are skipped and any
// other file is refused, so a stray file is noticed rather than silently dropped.
#pragma once
#include <string>
#include <vector>

#include "data/dataset.h"

namespace kd {
namespace data {

// The class names: the sub-folders of `train_dir`, sorted.
std::vector<std::string> image_folder_classes(const std::string& train_dir);
// Every image of `split_dir`, labelled by its sub-folder's index in `classes`.
Dataset read_image_folder(const std::string& split_dir, const std::vector<std::string>& classes,
                          int resize, const std::string& name);

}  // namespace data
}  // namespace kd
