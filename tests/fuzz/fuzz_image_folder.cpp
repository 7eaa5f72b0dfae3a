// Fuzz target: the image-folder reader (data/image_folder.h) on one image. The first byte picks the
// file's extension (png, jpg, bmp: the reader accepts by name, stb_image decodes by content) and
// --resize (0: none, else 8 or 32); the rest is the image, written as train/c/img.EXT.
#include <filesystem>

#include "data/image_folder.h"
#include "tests/fuzz/fuzz_target.h"

KD_FUZZ_TARGET(image_folder) {
  if (size < 1) return;
  static const char* const kExt[] = {"png", "jpg", "bmp", "jpeg"};
  static const int kResize[] = {0, 8, 32, 0};
  const std::string ext = kExt[data[0] & 3];
  const int resize = kResize[(data[0] >> 2) & 3];
  const std::string train = kd::fuzz::scratch_dir() + "/train";
  std::error_code ec;
  std::filesystem::remove_all(train, ec);  // the previous input's file, maybe of another extension
  kd::fuzz::write_scratch("train/c/img." + ext, data + 1, size - 1);
  const std::vector<std::string> classes = kd::data::image_folder_classes(train);
  kd::data::read_image_folder(train, classes, resize, "fuzz").validate();
}
