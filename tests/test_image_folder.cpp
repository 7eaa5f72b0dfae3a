// The image-folder dataset (data/image_folder.h) on PNG and BMP files this test writes: class
// labels in folder-name order, pixels back in CHW order exactly (lossless formats), --resize,
// and each refusal naming the file: mixed sizes, a corrupt image, a stray file, an unknown test
// class, RGBA. Also Dataset::padded_to (--pad-to) and a PreResNet on padded Fashion-MNIST-shaped
// data through the binary.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <stb/stb_image_write.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "base/check.h"
#include "data/datasets.h"
#include "data/image_folder.h"
#include "tests/cli_testing.h"
#include "tests/data_testing.h"

namespace kd {
namespace {

namespace fs = std::filesystem;
using cli_testing::TempDir;

// Writes image i of `ds` (CHW) as an HWC PNG or BMP.
void write_image(const std::string& path, const data::Dataset& ds, int i) {
  std::vector<uint8_t> hwc(ds.image_size());
  for (int ch = 0; ch < ds.c; ++ch)
    for (int y = 0; y < ds.h; ++y)
      for (int x = 0; x < ds.w; ++x)
        hwc[(y * ds.w + x) * ds.c + ch] = ds.image(i)[(ch * ds.h + y) * ds.w + x];
  fs::create_directories(fs::path(path).parent_path());
  const bool bmp = path.size() > 4 && path.substr(path.size() - 4) == ".bmp";
  const int ok = bmp ? stbi_write_bmp(path.c_str(), ds.w, ds.h, ds.c, hwc.data())
                     : stbi_write_png(path.c_str(), ds.w, ds.h, ds.c, hwc.data(), ds.w * ds.c);
  ASSERT_NE(ok, 0) << path;
}

const char* kClasses[3] = {"cat", "dog", "emu"};

// ROOT/train: images 0..n-1 of `ds` with class kClasses[label]; ROOT/test: the first 3.
void write_folder(const std::string& root, const data::Dataset& ds, const char* ext = ".png") {
  for (int i = 0; i < ds.n; ++i)
    write_image(root + "/train/" + kClasses[ds.labels[i]] + "/img" + std::to_string(10 + i) + ext,
                ds, i);
  for (int i = 0; i < 3; ++i)
    write_image(root + "/test/" + kClasses[ds.labels[i]] + "/t" + std::to_string(i) + ext, ds, i);
}

using data_testing::expect_refused;

TEST(ImageFolder, PngAndBmpComeBackExactlyWithFolderOrderLabels) {
  for (const char* ext : {".png", ".bmp"}) {
    TempDir tmp;
    const data::Dataset want = data_testing::random_dataset(6, 3, 5, 7, 3, 31);
    write_folder(tmp.path, want, ext);
    const data::Dataset got = data::load_dataset("folder", tmp.path, true);
    ASSERT_EQ(got.n, 6) << ext;
    EXPECT_EQ(got.c, 3);
    EXPECT_EQ(got.h, 5);
    EXPECT_EQ(got.w, 7);
    EXPECT_EQ(got.num_classes, 3);
    // Read class by class (cat, dog, emu), files in name order within each.
    std::vector<int> order;
    for (int label = 0; label < 3; ++label)
      for (int i = 0; i < want.n; ++i)
        if (want.labels[i] == label) order.push_back(i);
    for (int k = 0; k < got.n; ++k) {
      EXPECT_EQ(got.labels[k], want.labels[order[k]]) << ext << " image " << k;
      EXPECT_TRUE(std::equal(got.image(k), got.image(k) + got.image_size(), want.image(order[k])))
          << ext << " pixels of image " << k;
    }
    EXPECT_EQ(data::load_dataset("folder", tmp.path, false).n, 3);
  }
}

TEST(ImageFolder, GreyImagesAndResize) {
  TempDir tmp;
  const data::Dataset grey = data_testing::random_dataset(4, 1, 6, 6, 3, 32);
  write_folder(tmp.path, grey);
  EXPECT_EQ(data::load_dataset("folder", tmp.path, true).c, 1);
  data::LoadOptions resize;
  resize.resize = 9;
  const data::Dataset big = data::load_dataset("folder", tmp.path, true, resize);
  EXPECT_EQ(big.h, 9);
  EXPECT_EQ(big.w, 9);
  EXPECT_EQ(big.images.size(), size_t(4 * 81));
  EXPECT_THROW(data::load_dataset("fmnist", tmp.path, true, resize), InputError)
      << "only the folder dataset is resized";
}

TEST(ImageFolder, BadTreesAreRefusedNamingTheFile) {
  TempDir tmp;
  const data::Dataset ds = data_testing::random_dataset(4, 3, 5, 5, 3, 33);
  write_folder(tmp.path, ds);
  auto load = [&] { data::load_dataset("folder", tmp.path, true); };
  // A different size.
  const data::Dataset other = data_testing::random_dataset(1, 3, 6, 5, 3, 34);
  write_image(tmp / "train/dog/zz.png", other, 0);
  expect_refused(load, "train/dog/zz.png", "5x6 with 3 channels");
  data::LoadOptions resize;
  resize.resize = 5;
  EXPECT_EQ(data::load_dataset("folder", tmp.path, true, resize).n, 5) << "--resize mends it";
  fs::remove(tmp / "train/dog/zz.png");
  // A corrupt image, a stray file.
  cli_testing::write_file(tmp / "train/cat/broken.png", "not a png at all");
  expect_refused(load, "train/cat/broken.png", "cannot decode");
  fs::remove(tmp / "train/cat/broken.png");
  cli_testing::write_file(tmp / "train/cat/notes.txt", "hello");
  expect_refused(load, "train/cat/notes.txt", "not a .png");
  fs::remove(tmp / "train/cat/notes.txt");
  cli_testing::write_file(tmp / "train/cat/.hidden", "skipped");
  EXPECT_EQ(data::load_dataset("folder", tmp.path, true).n, 4) << "hidden files are skipped";
  // RGBA.
  data::Dataset rgba = data_testing::random_dataset(1, 4, 5, 5, 3, 35);
  write_image(tmp / "train/emu/alpha.png", rgba, 0);
  expect_refused(load, "train/emu/alpha.png", "4 channels");
  fs::remove(tmp / "train/emu/alpha.png");
  // A test class train/ does not have.
  write_image(tmp / "test/yak/y.png", ds, 0);
  expect_refused([&] { data::load_dataset("folder", tmp.path, false); }, "test/yak",
                 "not a sub-folder of train/");
  // No folder given at all: no default to fall back on.
  const char* env = std::getenv("KDLAB_FOLDER_DIR");
  if (env == nullptr || env[0] == '\0')
    expect_refused([&] { data::load_dataset("folder", "", true); }, "--data-dir",
                   "KDLAB_FOLDER_DIR");
  // No train/ at all.
  expect_refused([&] { data::load_dataset("folder", tmp / "nowhere", true); }, "nowhere/train",
                 "not a folder");
}

// A PNG whose header says width x height grey pixels, with a tiny valid IDAT: stb_image sized
// its buffers from the header (hundreds of MB) before finding too few pixels.
std::string png_claiming(uint32_t width, uint32_t height) {
  auto be32 = [](uint32_t v) {
    std::string b;
    for (int s = 24; s >= 0; s -= 8) b.push_back(char((v >> s) & 0xFF));
    return b;
  };
  auto chunk = [&](const std::string& type, const std::string& data) {
    const std::string body = type + data;
    return be32(uint32_t(data.size())) + body +
           be32(uint32_t(crc32(0, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()))));
  };
  std::string idat(64, '\0');
  uLongf len = uLongf(idat.size());
  const std::string row(9, '\0');
  EXPECT_EQ(compress(reinterpret_cast<Bytef*>(idat.data()), &len,
                     reinterpret_cast<const Bytef*>(row.data()), uLong(row.size())),
            Z_OK);
  idat.resize(len);
  // IHDR: width, height, bit depth 8, colour type 0 (grey), compression, filter, no interlace.
  const std::string ihdr = be32(width) + be32(height) + std::string("\x08\x00\x00\x00\x00", 5);
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", idat) +
         chunk("IEND", "");
}

TEST(ImageFolder, HugeHeadersAndNonRegularFilesAreRefusedBeforeDecoding) {
  TempDir tmp;
  const data::Dataset ds = data_testing::random_dataset(4, 3, 5, 5, 3, 33);
  write_folder(tmp.path, ds);
  auto load = [&] { data::load_dataset("folder", tmp.path, true); };
  cli_testing::write_file(tmp / "train/cat/huge.png", png_claiming(20000, 20000));
  expect_refused(load, "train/cat/huge.png", "20000x20000 pixels; an image may have at most");
  fs::remove(tmp / "train/cat/huge.png");
  // 8192 x 8192 is allowed by the header check: stb_image then finds the pixels missing.
  cli_testing::write_file(tmp / "train/cat/big.png", png_claiming(8192, 8192));
  expect_refused(load, "train/cat/big.png", "cannot decode");
  fs::remove(tmp / "train/cat/big.png");
  ASSERT_EQ(mkfifo((tmp / "train/cat/fifo.png").c_str(), 0644), 0);
  expect_refused(load, "train/cat/fifo.png", "not a regular file (a FIFO)");
  fs::remove(tmp / "train/cat/fifo.png");
  fs::create_directory(tmp / "train/cat/dir.png");
  expect_refused(load, "train/cat/dir.png", "not a regular file (a directory)");
  fs::remove(tmp / "train/cat/dir.png");
  EXPECT_EQ(data::load_dataset("folder", tmp.path, true).n, 4) << "the intact tree loads";
}

TEST(PadTo, CentresTheImageInZeros) {
  data::Dataset ds = data_testing::random_dataset(2, 2, 3, 4, 2, 36);
  const data::Dataset p = ds.padded_to(7);
  ASSERT_EQ(p.h, 7);
  ASSERT_EQ(p.w, 7);
  EXPECT_EQ(p.labels, ds.labels);
  for (int i = 0; i < 2; ++i)
    for (int ch = 0; ch < 2; ++ch)
      for (int y = 0; y < 7; ++y)
        for (int x = 0; x < 7; ++x) {
          // top = (7-3)/2 = 2, left = (7-4)/2 = 1
          const bool inside = y >= 2 && y < 5 && x >= 1 && x < 5;
          const uint8_t want = inside ? ds.image(i)[(ch * 3 + y - 2) * 4 + x - 1] : 0;
          ASSERT_EQ(p.image(i)[(ch * 7 + y) * 7 + x], want) << i << " " << ch << " " << y << " " << x;
        }
  EXPECT_THROW(ds.padded_to(3), InputError) << "smaller than the image";
}

TEST(PadTo, PreResNetTrainsOnPaddedGreyImagesThroughTheBinary) {
  TempDir tmp;
  data::Dataset train = data_testing::random_dataset(40, 1, 28, 28, 10, 37);
  data::Dataset test = data_testing::random_dataset(20, 1, 28, 28, 10, 38);
  cli_testing::write_fashion_mnist_split(tmp.path, "train", train);
  cli_testing::write_fashion_mnist_split(tmp.path, "t10k", test);
  auto run = [&](std::vector<std::string> extra, const std::string& out) {
    std::vector<std::string> args = {"train", "--data-dir", tmp.path, "--model", "preresnet8",
                                     "--epochs", "1", "--batch", "20", "--device", "cpu",
                                     "--out", tmp / out};
    args.insert(args.end(), extra.begin(), extra.end());
    return cli_testing::run_kdlab(args, tmp.path);
  };
  cli_testing::RunResult refused = run({}, "run0");
  EXPECT_EQ(refused.code, 2);
  EXPECT_NE(refused.err.find("expects 32x32 images, the dataset has 28x28"), std::string::npos)
      << refused.err;
  cli_testing::RunResult ok = run({"--pad-to", "32"}, "run1");
  ASSERT_EQ(ok.code, 0) << ok.err;
  // eval reads the padding from the checkpoint.
  cli_testing::RunResult ev = cli_testing::run_kdlab(
      {"eval", "--model", tmp / "run1/model.safetensors", "--data-dir", tmp.path, "--device",
       "cpu"},
      tmp.path);
  EXPECT_EQ(ev.code, 0) << ev.err;
  EXPECT_NE(ev.out.find("\"count\": 20"), std::string::npos) << ev.out;
}

}  // namespace
}  // namespace kd
