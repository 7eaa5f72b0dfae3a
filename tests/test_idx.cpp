// IDX reader tests: the real Fashion-MNIST files (skipped only when the dataset directory is
// absent), and hand-made bad files written into a fresh temp dir, each of which must be refused
// with a kd::InputError naming the file and the problem.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/fashion_mnist.h"
#include "data/idx.h"
#include "base/check.h"

namespace fs = std::filesystem;
using kd::data::Dataset;

namespace {

using Bytes = std::vector<uint8_t>;

void put_be32(Bytes* b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b->push_back(static_cast<uint8_t>(v >> s));
}

Bytes idx_images(uint32_t n, uint32_t h, uint32_t w, uint32_t magic = 0x00000803) {
  Bytes b;
  put_be32(&b, magic);
  put_be32(&b, n);
  put_be32(&b, h);
  put_be32(&b, w);
  for (uint32_t i = 0; i < n * h * w; ++i) b.push_back(static_cast<uint8_t>((i * 37u + 11u) % 256));
  return b;
}

Bytes idx_labels(const std::vector<uint8_t>& labels) {
  Bytes b;
  put_be32(&b, 0x00000801);
  put_be32(&b, static_cast<uint32_t>(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

void write_raw(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << path;
}

void write_gz(const std::string& path, const Bytes& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

Bytes read_raw(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Runs fn, which must throw kd::InputError with a one-line message containing path and phrase.
template <typename Fn>
void expect_error(Fn fn, const std::string& path, const std::string& phrase) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one naming " << path << " with '" << phrase << "'";
  } catch (const kd::InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(phrase), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

class IdxReader : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "kd_idx_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

bool fmnist_present() { return fs::is_directory(kd::data::default_fashion_mnist_dir()); }

}  // namespace

TEST_F(IdxReader, RealFashionMnistTrain) {
  if (!fmnist_present())
    GTEST_SKIP() << "no Fashion-MNIST at " << kd::data::default_fashion_mnist_dir();
  const Dataset ds = kd::data::load_fashion_mnist(true);
  ds.validate();
  EXPECT_EQ(ds.name, "fashion-mnist-train");
  ASSERT_EQ(ds.n, 60000);
  EXPECT_EQ(ds.c, 1);
  EXPECT_EQ(ds.h, 28);
  EXPECT_EQ(ds.w, 28);
  EXPECT_EQ(ds.num_classes, 10);
  EXPECT_EQ(ds.class_counts(), std::vector<int64_t>(10, 6000));
  int64_t label_sum = 0;
  for (int32_t y : ds.labels) label_sum += y;
  EXPECT_EQ(label_sum, 270000);
  // First train labels: ankle boot, T-shirt, T-shirt, dress, T-shirt.
  EXPECT_EQ(std::vector<int32_t>(ds.labels.begin(), ds.labels.begin() + 5),
            (std::vector<int32_t>{9, 0, 0, 3, 0}));
  // The published Fashion-MNIST train statistics: mean 0.2860, std 0.3530.
  const kd::data::Normalization st = kd::data::channel_statistics(ds);
  EXPECT_NEAR(st.mean[0], 0.2860, 1e-4);
  EXPECT_NEAR(st.std[0], 0.3530, 1e-4);
}

TEST_F(IdxReader, RealFashionMnistTest) {
  if (!fmnist_present())
    GTEST_SKIP() << "no Fashion-MNIST at " << kd::data::default_fashion_mnist_dir();
  const Dataset ds = kd::data::load_fashion_mnist(kd::data::default_fashion_mnist_dir(), false);
  ASSERT_EQ(ds.n, 10000);
  EXPECT_EQ(ds.h, 28);
  EXPECT_EQ(ds.w, 28);
  EXPECT_EQ(ds.images.size(), 10000u * 784u);
  EXPECT_EQ(ds.class_counts(), std::vector<int64_t>(10, 1000));
  EXPECT_EQ(ds.labels[0], 9);
  EXPECT_EQ(ds.labels[1], 2);
}

TEST_F(IdxReader, EnvironmentOverridesDefaultDir) {
  const char* old = getenv("KDLAB_FMNIST_DIR");
  const std::string saved = old ? old : "";
  setenv("KDLAB_FMNIST_DIR", dir_.c_str(), 1);
  EXPECT_EQ(kd::data::default_fashion_mnist_dir(), dir_);
  expect_error([&] { kd::data::load_fashion_mnist(false); }, path("t10k-images-idx3-ubyte.gz"),
                 "cannot open");
  if (old)
    setenv("KDLAB_FMNIST_DIR", saved.c_str(), 1);
  else
    unsetenv("KDLAB_FMNIST_DIR");
}

TEST_F(IdxReader, RawAndGzipFilesGiveTheSameDataset) {
  const Bytes images = idx_images(5, 4, 3);
  const Bytes labels = idx_labels({0, 2, 1, 2, 0});
  write_raw(path("img"), images);
  write_raw(path("lab"), labels);
  write_gz(path("img.gz"), images);
  write_gz(path("lab.gz"), labels);
  const Dataset raw = kd::data::load_idx(path("img"), path("lab"), 3);
  const Dataset gz = kd::data::load_idx(path("img.gz"), path("lab.gz"), 3, "tiny");
  EXPECT_EQ(raw.n, 5);
  EXPECT_EQ(raw.c, 1);
  EXPECT_EQ(raw.h, 4);
  EXPECT_EQ(raw.w, 3);
  EXPECT_EQ(raw.name, path("img"));
  EXPECT_EQ(gz.name, "tiny");
  EXPECT_EQ(raw.images, Bytes(images.begin() + 16, images.end()));
  EXPECT_EQ(raw.labels, (std::vector<int32_t>{0, 2, 1, 2, 0}));
  EXPECT_EQ(gz.images, raw.images);
  EXPECT_EQ(gz.labels, raw.labels);
}

TEST_F(IdxReader, MissingFileIsNamed) {
  write_raw(path("lab"), idx_labels({0}));
  expect_error([&] { kd::data::load_idx(path("nope.gz"), path("lab"), 10); }, path("nope.gz"),
                 "cannot open: No such file");
}

TEST_F(IdxReader, EmptyFileIsTruncated) {
  write_raw(path("empty"), {});
  expect_error([&] { kd::data::read_idx_images(path("empty")); }, path("empty"),
                 "truncated: expected at least 4 bytes (the IDX magic), got 0");
}

TEST_F(IdxReader, TruncatedHeader) {
  Bytes b = idx_images(2, 2, 2);
  b.resize(6);
  write_raw(path("img"), b);
  expect_error([&] { kd::data::read_idx_images(path("img")); }, path("img"),
                 "truncated: header needs 16 bytes, got 6");
}

TEST_F(IdxReader, TruncatedGzipStream) {
  const Bytes images = idx_images(200, 9, 7);
  write_gz(path("full.gz"), images);
  Bytes gz = read_raw(path("full.gz"));
  ASSERT_GT(gz.size(), 100u);
  gz.resize(gz.size() / 2);
  write_raw(path("cut.gz"), gz);
  expect_error([&] { kd::data::read_idx_images(path("cut.gz")); }, path("cut.gz"),
                 "truncated: expected 12616 bytes, got ");
  expect_error([&] { kd::data::read_idx_images(path("cut.gz")); }, path("cut.gz"),
                 " (gzip stream ends early: unexpected end of file)");
}

// All pixels decompress fine, only the gzip trailer (CRC32 + size) is cut: still refused.
TEST_F(IdxReader, GzipMissingTrailer) {
  write_gz(path("full.gz"), idx_images(20, 5, 5));
  Bytes gz = read_raw(path("full.gz"));
  gz.resize(gz.size() - 4);
  write_raw(path("cut.gz"), gz);
  expect_error(
      [&] { kd::data::read_idx_images(path("cut.gz")); }, path("cut.gz"),
      "truncated gzip stream: all 516 bytes are there but the gzip trailer is cut short");
}

TEST_F(IdxReader, GzipBadChecksum) {
  write_gz(path("full.gz"), idx_images(20, 5, 5));
  Bytes gz = read_raw(path("full.gz"));
  gz[gz.size() - 8] ^= 0x5A;  // first byte of the CRC32
  write_raw(path("bad.gz"), gz);
  expect_error([&] { kd::data::read_idx_images(path("bad.gz")); }, path("bad.gz"),
                 "corrupt gzip stream: incorrect data check");
}

TEST_F(IdxReader, RealGzipCut) {
  if (!fmnist_present()) GTEST_SKIP() << "no Fashion-MNIST";
  Bytes gz = read_raw(kd::data::default_fashion_mnist_dir() + "/train-images-idx3-ubyte.gz");
  ASSERT_GT(gz.size(), 1000u);
  gz.resize(1000);
  write_raw(path("train-images-idx3-ubyte.gz"), gz);
  expect_error([&] { kd::data::read_idx_images(path("train-images-idx3-ubyte.gz")); },
                 path("train-images-idx3-ubyte.gz"), "truncated: expected 47040016 bytes, got ");
}

TEST_F(IdxReader, BadMagic) {
  write_gz(path("img.gz"), idx_images(2, 3, 3, 0x12345678));
  expect_error([&] { kd::data::read_idx_images(path("img.gz")); }, path("img.gz"),
                 ": bad magic 0x12345678, expected 0x00000803 (IDX uint8 images)");
}

TEST_F(IdxReader, LabelsFileGivenAsImages) {
  write_raw(path("lab"), idx_labels({1, 2}));
  write_raw(path("img"), idx_images(2, 3, 3));
  expect_error([&] { kd::data::load_idx(path("lab"), path("img"), 10); }, path("lab"),
                 "bad magic 0x00000801, expected 0x00000803");
}

TEST_F(IdxReader, LabelOutOfRange) {
  write_raw(path("img"), idx_images(7, 2, 2));
  write_gz(path("lab.gz"), idx_labels({0, 1, 2, 3, 4, 12, 6}));
  expect_error([&] { kd::data::load_idx(path("img"), path("lab.gz"), 10); }, path("lab.gz"),
                 "label 12 at index 5 is out of range [0, 10)");
}

TEST_F(IdxReader, HeaderPromisesMoreThanTheFileHolds) {
  Bytes b = idx_images(5, 4, 3);
  b.resize(16 + 4 * 12);  // four images for a header that says five
  write_raw(path("img"), b);
  write_gz(path("img.gz"), b);
  expect_error([&] { kd::data::read_idx_images(path("img")); }, path("img"),
                 "truncated: expected 76 bytes, got 64");
  expect_error([&] { kd::data::read_idx_images(path("img.gz")); }, path("img.gz"),
                 "truncated: expected 76 bytes, got 64");
}

TEST_F(IdxReader, TrailingGarbage) {
  Bytes b = idx_images(5, 4, 3);
  b.insert(b.end(), {1, 2, 3});
  write_raw(path("img"), b);
  write_gz(path("img.gz"), b);
  expect_error([&] { kd::data::read_idx_images(path("img")); }, path("img"),
                 "trailing garbage: expected 76 bytes, got 79");
  expect_error([&] { kd::data::read_idx_images(path("img.gz")); }, path("img.gz"),
                 "trailing garbage: expected 76 bytes, got 79");
}

// RFC 1952: a gzip file is a series of members (`gzip -c a b > c`); they are one stream.
TEST_F(IdxReader, GzipMembersAreReadAsOneStream) {
  const Bytes b = idx_images(5, 4, 3);
  write_gz(path("head.gz"), Bytes(b.begin(), b.begin() + 10));
  write_gz(path("tail.gz"), Bytes(b.begin() + 10, b.end()));
  Bytes both = read_raw(path("head.gz"));
  const Bytes tail = read_raw(path("tail.gz"));
  both.insert(both.end(), tail.begin(), tail.end());
  write_raw(path("img.gz"), both);
  const kd::data::IdxImages img = kd::data::read_idx_images(path("img.gz"));
  EXPECT_EQ(img.n, 5);
  EXPECT_EQ(img.pixels, Bytes(b.begin() + 16, b.end()));
}

// Bytes after the last member that are not another member: zlib's gz* API skipped them.
TEST_F(IdxReader, GzipTrailingGarbageAfterTheStreamIsRefused) {
  write_gz(path("ok.gz"), idx_images(5, 4, 3));
  const Bytes gz = read_raw(path("ok.gz"));
  for (const Bytes& tail : {Bytes{'x'}, Bytes{0x1f}, Bytes(3000, 0), Bytes{0x1f, 0x8c, 0}}) {
    Bytes bad = gz;
    bad.insert(bad.end(), tail.begin(), tail.end());
    write_raw(path("bad.gz"), bad);
    expect_error([&] { kd::data::read_idx_images(path("bad.gz")); }, path("bad.gz"),
                 "trailing garbage after the gzip stream: " + std::to_string(tail.size()) +
                     " bytes at offset " + std::to_string(gz.size()) + " are not a gzip member");
  }
  // A whole second member is read, and then the IDX file is simply too long.
  Bytes two = gz;
  two.insert(two.end(), gz.begin(), gz.end());
  write_raw(path("two.gz"), two);
  expect_error([&] { kd::data::read_idx_images(path("two.gz")); }, path("two.gz"),
               "trailing garbage: expected 76 bytes, got 152");
}

// Opening a FIFO for reading waits for a writer; the reader must refuse it at once.
TEST_F(IdxReader, FifoAndDirectoryAreNotRegularFiles) {
  ASSERT_EQ(mkfifo(path("fifo").c_str(), 0644), 0);
  expect_error([&] { kd::data::read_idx_images(path("fifo")); }, path("fifo"),
               "not a regular file (a FIFO)");
  expect_error([&] { kd::data::read_idx_images(dir_); }, dir_, "not a regular file (a directory)");
}

// 2^26 images promised by a 7872-byte file: the buffer grows with the data, so this is a
// truncation message, not a 49 GiB allocation.
TEST_F(IdxReader, HeaderPromisingBillionsOfBytesIsTruncatedNotAllocated) {
  Bytes b = idx_images(10, 28, 28);
  b[4] = 0x04, b[5] = b[6] = b[7] = 0;  // n = 2^26
  write_raw(path("img"), b);
  write_gz(path("img.gz"), b);
  for (const std::string name : {"img", "img.gz"})
    expect_error([&] { kd::data::read_idx_images(path(name)); }, path(name),
                 "truncated: expected 52613349392 bytes, got 7856");
}

TEST_F(IdxReader, ImagesLargerThan4096AreRefusedFromTheHeader) {
  write_raw(path("img"), idx_images(1, 4097, 1));
  expect_error([&] { kd::data::read_idx_images(path("img")); }, path("img"),
               "images of 4097 rows, expected 1..4096");
  Bytes b;
  for (uint32_t v : {0x803u, 16u, 1u << 30, 1u << 30}) put_be32(&b, v);
  write_raw(path("huge"), b);
  expect_error([&] { kd::data::read_idx_images(path("huge")); }, path("huge"),
               "images of 1073741824 rows, expected 1..4096");
  write_raw(path("tall"), idx_images(1, 4096, 2));
  EXPECT_EQ(kd::data::read_idx_images(path("tall")).h, 4096);
}

TEST_F(IdxReader, CountMismatch) {
  write_raw(path("img"), idx_images(5, 4, 3));
  write_raw(path("lab"), idx_labels({0, 1, 2, 3}));
  try {
    kd::data::load_idx(path("img"), path("lab"), 10);
    ADD_FAILURE() << "count mismatch accepted";
  } catch (const kd::InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(
        msg.find(path("lab") + ": count mismatch: 4 labels, but " + path("img") + " has 5 images"),
        std::string::npos)
        << msg;
  }
}

TEST_F(IdxReader, ZeroDimension) {
  write_raw(path("img"), idx_images(3, 0, 4));
  expect_error([&] { kd::data::read_idx_images(path("img")); }, path("img"),
                 "dimension 1 has size 0");
}

TEST_F(IdxReader, AbsurdHeaderRefusedBeforeAllocating) {
  Bytes b;
  put_be32(&b, 0x00000803);
  put_be32(&b, 0x7FFFFFFF);
  put_be32(&b, 0x7FFFFFFF);
  put_be32(&b, 28);
  write_raw(path("img"), b);
  expect_error([&] { kd::data::read_idx_images(path("img")); }, path("img"),
                 "header dimensions give more than");
}

// Dimensions whose product passes int64 if multiplied before the check (signed overflow, which
// a fuzzer finds); the refusal must come first.
TEST_F(IdxReader, DimensionProductIsCheckedBeforeItCanOverflow) {
  Bytes b;
  put_be32(&b, 0x00000804);
  // 32 x (2^31 - 1) passes the bound; times 2^31 - 1 again is past int64.
  for (uint32_t dim : {32u, 0x7FFFFFFFu, 0x7FFFFFFFu, 1u}) put_be32(&b, dim);
  write_raw(path("img"), b);
  expect_error([&] { kd::data::read_idx_u8(path("img"), 0x00000804); }, path("img"),
               "header dimensions give more than");
}

TEST_F(IdxReader, BadNumClasses) {
  write_raw(path("lab"), idx_labels({0}));
  expect_error([&] { kd::data::read_idx_labels(path("lab"), 0); }, path("lab"),
                 "num_classes must be >= 1");
}
