// The image-folder reader and its registry entry (see image_folder.h, datasets.h). Each image is
// read whole into memory (its file's size) and its header checked before stb_image allocates.
#include "data/image_folder.h"

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <memory>

#include "base/check.h"
#include "base/input_file.h"
#include "data/datasets.h"

namespace kd {
namespace data {

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> sorted_entries(const fs::path& dir) {
  std::error_code ec;
  KD_INPUT_CHECK(fs::is_directory(dir, ec), dir.string() << ": not a folder (expected one "
                                                            "sub-folder per class)");
  std::vector<fs::path> out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string()[0] != '.') out.push_back(e.path());
  KD_INPUT_CHECK(!ec, dir.string() << ": cannot list: " << ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

// One decoded image as CHW bytes at its final size.
struct Decoded {
  int c = 0, h = 0, w = 0;
  std::vector<uint8_t> chw;
};

// The most pixels one image may have (8192 x 8192). stb_image sizes its output from the header
// alone, so without this a 100-byte PNG claiming 2^24 x 2^24 would ask for the memory up front.
constexpr int64_t kMaxImagePixels = int64_t(1) << 26;

Decoded decode(const fs::path& path, int resize) {
  // The whole file in memory (a regular file only: InputFile refuses a FIFO, which would block),
  // then decoded from there, after its header's size is checked.
  InputFile file(path.string());
  std::vector<uint8_t> bytes(static_cast<size_t>(file.size()));
  KD_INPUT_CHECK(file.read(bytes.data(), bytes.size()) == bytes.size(),
                 path.string() << ": the file shrank while it was read");
  KD_INPUT_CHECK(bytes.size() <= size_t(INT32_MAX), path.string() << ": " << bytes.size()
                                                                  << " bytes; an image file may "
                                                                     "have at most 2^31 - 1");
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, c = 0;
  KD_INPUT_CHECK(stbi_info_from_memory(bytes.data(), len, &w, &h, &c) == 1,
                 path.string() << ": cannot decode as PNG/JPEG/BMP: " << stbi_failure_reason());
  KD_INPUT_CHECK(int64_t(w) * h <= kMaxImagePixels,
                 path.string() << ": " << w << "x" << h << " pixels; an image may have at most "
                               << kMaxImagePixels << " (8192x8192)");
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load_from_memory(bytes.data(), len, &w, &h, &c, 0), stbi_image_free);
  KD_INPUT_CHECK(pixels, path.string() << ": cannot decode as PNG/JPEG/BMP: "
                                       << stbi_failure_reason());
  KD_INPUT_CHECK(c == 1 || c == 3, path.string() << ": " << c << " channels (grey with alpha or "
                                                    "RGBA); expected 1 (grey) or 3 (RGB)");
  std::vector<uint8_t> hwc(pixels.get(), pixels.get() + size_t(w) * h * c);
  pixels.reset();
  if (resize > 0 && (w != resize || h != resize)) {
    std::vector<uint8_t> out(size_t(resize) * resize * c);
    KD_INPUT_CHECK(stbir_resize_uint8(hwc.data(), w, h, 0, out.data(), resize, resize, 0, c) == 1,
                   path.string() << ": resizing to " << resize << "x" << resize << " failed");
    hwc.swap(out);
    w = h = resize;
  }
  Decoded d;
  d.c = c, d.h = h, d.w = w;
  d.chw.resize(hwc.size());
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int ch = 0; ch < c; ++ch)
        d.chw[(size_t(ch) * h + y) * w + x] = hwc[(size_t(y) * w + x) * c + ch];
  return d;
}

}  // namespace

std::vector<std::string> image_folder_classes(const std::string& train_dir) {
  std::vector<std::string> classes;
  for (const fs::path& p : sorted_entries(train_dir)) {
    KD_INPUT_CHECK(fs::is_directory(p), p.string() << ": a file where class sub-folders are "
                                                      "expected");
    classes.push_back(p.filename().string());
  }
  KD_INPUT_CHECK(classes.size() >= 2, train_dir << ": " << classes.size()
                                                << " class sub-folders; expected at least 2");
  return classes;
}

Dataset read_image_folder(const std::string& split_dir, const std::vector<std::string>& classes,
                          int resize, const std::string& name) {
  Dataset ds;
  ds.name = name;
  ds.num_classes = static_cast<int>(classes.size());
  std::string first;  // the image that fixed the size
  for (const fs::path& class_dir : sorted_entries(split_dir)) {
    const std::string cls = class_dir.filename().string();
    const auto it = std::find(classes.begin(), classes.end(), cls);
    KD_INPUT_CHECK(it != classes.end(), class_dir.string()
                                            << ": class '" << cls << "' is not a sub-folder of "
                                                                     "train/");
    const int label = static_cast<int>(it - classes.begin());
    for (const fs::path& file : sorted_entries(class_dir)) {
      KD_INPUT_CHECK(is_image_name(file), file.string() << ": not a .png, .jpg, .jpeg or .bmp file");
      Decoded d = decode(file, resize);
      if (first.empty()) {
        first = file.string();
        ds.c = d.c, ds.h = d.h, ds.w = d.w;
      }
      KD_INPUT_CHECK(d.c == ds.c && d.h == ds.h && d.w == ds.w,
                     file.string() << ": " << d.w << "x" << d.h << " with " << d.c
                                   << " channels, but " << first << " is " << ds.w << "x" << ds.h
                                   << " with " << ds.c << " (use --resize N for mixed sizes)");
      ds.images.insert(ds.images.end(), d.chw.begin(), d.chw.end());
      ds.labels.push_back(label);
      ++ds.n;
    }
  }
  KD_INPUT_CHECK(ds.n > 0, split_dir << ": no images");
  ds.validate();
  return ds;
}

DatasetEntry folder_dataset_entry() {
  DatasetEntry e;
  e.name = "folder";
  e.help = "an image-folder tree: DIR/{train,test}/<class>/*.{png,jpg,bmp}, one size and channel "
           "count (or --resize N)";
  e.dir_env = "KDLAB_FOLDER_DIR";
  e.default_dir = "";  // no default: --data-dir or $KDLAB_FOLDER_DIR must name the tree
  e.resizable = true;
  e.load = [](const std::string& dir, bool train, const LoadOptions& options) {
    const std::vector<std::string> classes = image_folder_classes(dir + "/train");
    return read_image_folder(dir + (train ? "/train" : "/test"), classes, options.resize,
                             train ? "folder-train" : "folder-test");
  };
  return e;
}

}  // namespace data
}  // namespace kd
