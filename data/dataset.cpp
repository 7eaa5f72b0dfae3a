// Dataset helpers: consistency checks and copying subsets. Index errors here are programming
// errors (indices come from sampling code, not from users), hence KD_CHECK rather than input
// errors.
#include "data/dataset.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "base/check.h"

namespace kd {
namespace data {

void Dataset::validate() const {
  KD_CHECK(n >= 0 && c > 0 && h > 0 && w > 0,
           "dataset '" << name << "': bad shape n=" << n << " c=" << c << " h=" << h << " w=" << w);
  KD_CHECK(num_classes > 0, "dataset '" << name << "': num_classes=" << num_classes);
  KD_CHECK(images.size() == static_cast<size_t>(n) * image_size(),
           "dataset '" << name << "': " << images.size() << " pixel bytes for shape (" << n << ", "
                       << c << ", " << h << ", " << w << ")");
  KD_CHECK(labels.size() == static_cast<size_t>(n),
           "dataset '" << name << "': " << labels.size() << " labels for " << n << " images");
  for (int i = 0; i < n; ++i) {
    KD_CHECK(labels[i] >= 0 && labels[i] < num_classes,
             "dataset '" << name << "': label " << labels[i] << " at index " << i
                         << " is out of range [0, " << num_classes << ")");
  }
}

Dataset Dataset::subset(const std::vector<int64_t>& indices) const {
  Dataset out;
  out.n = static_cast<int>(indices.size());
  out.c = c;
  out.h = h;
  out.w = w;
  out.num_classes = num_classes;
  out.name = name;
  const int64_t size = image_size();
  out.images.resize(indices.size() * size);
  out.labels.resize(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    const int64_t i = indices[k];
    KD_CHECK(i >= 0 && i < n, "dataset '" << name << "': subset index " << i << " at position " << k
                                          << " is out of range [0, " << n << ")");
    std::memcpy(out.images.data() + k * size, image(i), size);
    out.labels[k] = labels[i];
  }
  return out;
}

Dataset Dataset::take_first(int64_t k) const {
  KD_CHECK(k >= 0 && k <= n, "dataset '" << name << "': take_first(" << k << ") of " << n);
  Dataset out;
  out.n = static_cast<int>(k);
  out.c = c;
  out.h = h;
  out.w = w;
  out.num_classes = num_classes;
  out.name = name;
  out.images.assign(images.begin(), images.begin() + k * image_size());
  out.labels.assign(labels.begin(), labels.begin() + k);
  return out;
}

std::vector<int64_t> Dataset::class_counts() const {
  std::vector<int64_t> counts(num_classes > 0 ? num_classes : 0, 0);
  for (int32_t y : labels) {
    KD_CHECK(y >= 0 && y < num_classes,
             "dataset '" << name << "': label " << y << " out of range [0, " << num_classes << ")");
    ++counts[y];
  }
  return counts;
}

Dataset Dataset::padded_to(int size) const {
  KD_INPUT_CHECK(size >= h && size >= w && size <= 4096,
                 "--pad-to " << size << ": dataset " << name << " has " << w << "x" << h
                             << " images; expected a size at least that and at most 4096");
  Dataset out;
  out.n = n, out.c = c, out.h = out.w = size;
  out.labels = labels;
  out.num_classes = num_classes;
  out.name = name;
  const size_t bytes = static_cast<size_t>(n) * c * size * size;
  try {  // a flag, not the file, sets this size: name both when it does not fit
    out.images.assign(bytes, 0);
  } catch (const std::bad_alloc&) {
    throw Error("--pad-to " + std::to_string(size) + ": out of memory allocating " +
                std::to_string(bytes) + " bytes for " + std::to_string(n) + " images of " + name);
  }
  const int top = (size - h) / 2, left = (size - w) / 2;
  for (int64_t i = 0; i < n; ++i)
    for (int ch = 0; ch < c; ++ch)
      for (int y = 0; y < h; ++y) {
        const uint8_t* src = image(i) + (static_cast<int64_t>(ch) * h + y) * w;
        uint8_t* dst = out.images.data() + ((i * c + ch) * size + top + y) * size + left;
        std::copy(src, src + w, dst);
      }
  return out;
}

}  // namespace data
}  // namespace kd
