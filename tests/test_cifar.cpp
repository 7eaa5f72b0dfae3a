// The CIFAR-10/100 binary readers (data/cifar.h) on files this test writes: records come back in
// file order with the right label byte and planes, and every malformed file (missing, empty,
// truncated, trailing bytes, label or coarse label out of range) is refused with one line naming
// the file. Then a real `kdlab train --dataset cifar10` on a generated set, through the binary.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <functional>
#include <string>
#include <vector>

#include "base/check.h"
#include "data/cifar.h"
#include "data/datasets.h"
#include "tests/cli_testing.h"
#include "tests/data_testing.h"

namespace kd {
namespace {

using cli_testing::TempDir;
namespace fs = std::filesystem;

// The bytes of `ds` as CIFAR records; `coarse` gives CIFAR-100's first label byte.
std::string cifar_bytes(const data::Dataset& ds, int label_bytes, int first, int count) {
  std::string out;
  for (int i = first; i < first + count; ++i) {
    if (label_bytes == 2) out.push_back(char(ds.labels[i] / 5));  // coarse: 20 superclasses
    out.push_back(char(ds.labels[i]));
    out.append(reinterpret_cast<const char*>(ds.image(i)), data::kCifarPixels);
  }
  return out;
}

// A CIFAR-10 folder: 5 training files of `per_file` records and a test file of 7.
data::Dataset write_cifar10(const std::string& dir, int per_file, data::Dataset* test = nullptr) {
  fs::create_directories(dir);
  data::Dataset train = data_testing::random_dataset(5 * per_file, 3, 32, 32, 10, 11);
  const std::vector<std::string> files = data::cifar10_files(dir, true);
  for (int f = 0; f < 5; ++f)
    cli_testing::write_file(files[f], cifar_bytes(train, 1, f * per_file, per_file));
  data::Dataset t = data_testing::random_dataset(7, 3, 32, 32, 10, 12);
  cli_testing::write_file(dir + "/test_batch.bin", cifar_bytes(t, 1, 0, 7));
  if (test) *test = t;
  return train;
}

using data_testing::expect_refused;

TEST(Cifar, Cifar10RecordsComeBackInFileOrderWithTheirPlanes) {
  TempDir tmp;
  data::Dataset test_want;
  const data::Dataset want = write_cifar10(tmp / "c10", 3, &test_want);
  const data::Dataset got = data::load_dataset("cifar10", tmp / "c10", true);
  EXPECT_EQ(got.n, 15);
  EXPECT_EQ(got.c, 3);
  EXPECT_EQ(got.h, 32);
  EXPECT_EQ(got.w, 32);
  EXPECT_EQ(got.num_classes, 10);
  EXPECT_EQ(got.labels, want.labels);
  EXPECT_EQ(got.images, want.images);
  const data::Dataset test = data::load_dataset("cifar10", tmp / "c10", false);
  EXPECT_EQ(test.n, 7);
  EXPECT_EQ(test.images, test_want.images);
  EXPECT_EQ(test.labels, test_want.labels);
}

TEST(Cifar, Cifar100ReadsTheFineLabel) {
  TempDir tmp;
  fs::create_directories(tmp / "c100");
  data::Dataset ds = data_testing::random_dataset(9, 3, 32, 32, 100, 13);
  for (int i = 0; i < ds.n; ++i) ds.labels[i] = (i * 37 + 5) % 100;  // fine labels up to 99
  cli_testing::write_file(tmp / "c100/train.bin", cifar_bytes(ds, 2, 0, 9));
  cli_testing::write_file(tmp / "c100/test.bin", cifar_bytes(ds, 2, 0, 4));
  const data::Dataset got = data::load_dataset("cifar100", tmp / "c100", true);
  EXPECT_EQ(got.num_classes, 100);
  EXPECT_EQ(got.labels, ds.labels);
  EXPECT_EQ(got.images, ds.images);
  EXPECT_EQ(data::load_dataset("cifar100", tmp / "c100", false).n, 4);
}

TEST(Cifar, MalformedFilesAreRefusedNamingTheFile) {
  TempDir tmp;
  const std::string dir = tmp / "c10";
  write_cifar10(dir, 2);
  const std::string file = dir + "/data_batch_3.bin";
  const std::string good = cli_testing::read_file(file);
  auto load = [&] { data::load_dataset("cifar10", dir, true); };

  cli_testing::write_file(file, good.substr(0, good.size() - 1));
  expect_refused(load, "data_batch_3.bin", "not a whole number of 3073-byte");
  cli_testing::write_file(file, good + "x");
  expect_refused(load, "data_batch_3.bin", "1 bytes");
  cli_testing::write_file(file, "");
  expect_refused(load, "data_batch_3.bin", "empty");
  std::string bad_label = good;
  bad_label[3073] = char(10);  // the second record's label
  cli_testing::write_file(file, bad_label);
  expect_refused(load, "data_batch_3.bin", "record 1 (byte 3073) has label 10");
  fs::remove(file);
  expect_refused(load, "data_batch_3.bin", "cannot open");
  // A FIFO blocked std::ifstream's open until some writer came; now refused at once.
  ASSERT_EQ(mkfifo(file.c_str(), 0644), 0);
  expect_refused(load, "data_batch_3.bin", "not a regular file (a FIFO)");
  fs::remove(file);
  fs::create_directory(file);
  expect_refused(load, "data_batch_3.bin", "not a regular file (a directory)");
  fs::remove(file);

  // CIFAR-10 files read as CIFAR-100: 3073-byte records are not 3074-byte ones.
  fs::create_directories(tmp / "c100");
  cli_testing::write_file(tmp / "c100/train.bin", std::string(3074 * 2, '\0'));
  std::string coarse = std::string(3074 * 2, '\0');
  coarse[3074] = char(20);
  cli_testing::write_file(tmp / "c100/train.bin", coarse);
  expect_refused([&] { data::load_dataset("cifar100", tmp / "c100", true); }, "train.bin",
                 "coarse label 20");
  std::string fine = std::string(3074, '\0');
  fine[1] = char(100);
  cli_testing::write_file(tmp / "c100/train.bin", fine);
  expect_refused([&] { data::load_dataset("cifar100", tmp / "c100", true); }, "train.bin",
                 "has label 100");
}

TEST(Cifar, TrainsAPreResNetThroughTheBinary) {
  TempDir tmp;
  write_cifar10(tmp / "c10", 8);
  cli_testing::RunResult r = cli_testing::run_kdlab(
      {"train", "--dataset", "cifar10", "--data-dir", tmp / "c10", "--model", "preresnet8",
       "--epochs", "1", "--batch", "20", "--device", "cpu", "--out", tmp / "run"},
      tmp.path);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("test accuracy"), std::string::npos) << r.out;
  const std::string config = cli_testing::read_file(tmp / "run/config.json");
  EXPECT_NE(config.find("\"dataset\": \"cifar10\""), std::string::npos) << config;
  EXPECT_TRUE(fs::exists(tmp / "run/model.safetensors"));
  // A 28x28 model on 32x32 data is refused before anything is written.
  cli_testing::RunResult lenet = cli_testing::run_kdlab(
      {"train", "--dataset", "cifar10", "--data-dir", tmp / "c10", "--model", "lenet5",
       "--out", tmp / "run2"},
      tmp.path);
  EXPECT_EQ(lenet.code, 2);
  EXPECT_NE(lenet.err.find("32x32"), std::string::npos) << lenet.err;
  EXPECT_FALSE(fs::exists(tmp / "run2"));
}

}  // namespace
}  // namespace kd
