// Inputs that lie about their size, through the kdlab binary (issue 11 items 1-3, reader side):
// an IDX header promising far more than the file holds, a FIFO or a device where a file should
// be, gzip with trailing garbage, checkpoint metadata describing a huge model. Each run has its
// address space capped (kBudget), so a reader that sizes memory from a header rather than from
// the file fails here with bad_alloc, not only on a small machine; and a deadline, so a reader
// that blocks on a FIFO fails instead of hanging the suite. Each must end with exit 2 (bad
// input), one line naming the file, a small peak memory, and no run directory left behind.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include "apps/model_io.h"
#include "engine/safetensors.h"
#include "models/classifier.h"
#include "tests/cli_testing.h"

namespace kd {
namespace {

using namespace cli_testing;

constexpr uint64_t kBudget = uint64_t(2) << 30;  // RLIMIT_AS of every run here
// Peak resident memory a refused input may cost. The child's figure includes the test process
// it was forked from (Linux keeps the high-water mark across exec), hence not tighter.
constexpr long kSmallPeakKb = 400 * 1024;

std::string images_file(const std::string& dir) { return dir + "/train-images-idx3-ubyte.gz"; }

RunResult train(const TempDir& tmp, const std::string& data, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"train", "--data-dir", data, "--out", tmp / "run",
                                   "--epochs", "1", "--threads", "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_kdlab_bounded(args, tmp.path, kBudget);
}

// The refusal every test here expects, plus bounded memory, no hang, and no run directory.
void expect_cheap_refusal(const RunResult& r, const TempDir& tmp,
                          std::initializer_list<std::string> needles, int code = 2) {
  EXPECT_FALSE(r.timed_out) << "kdlab hung and was killed";
  expect_error(r, needles, code);
  EXPECT_LT(r.peak_rss_kb, kSmallPeakKb) << "peak memory for a refused input";
  EXPECT_FALSE(fs::exists(tmp / "run")) << "a refused run left a run directory";
}

std::string gzip_bytes(const std::string& raw) {
  TempDir tmp;
  gzFile f = gzopen((tmp / "x.gz").c_str(), "wb");
  EXPECT_NE(f, nullptr);
  EXPECT_EQ(gzwrite(f, raw.data(), unsigned(raw.size())), int(raw.size()));
  EXPECT_EQ(gzclose(f), Z_OK);
  return read_file(tmp / "x.gz");
}

std::string be32(uint32_t v) {
  std::string b;
  for (int s = 24; s >= 0; s -= 8) b.push_back(char((v >> s) & 0xFF));
  return b;
}

// The binary trains on the synthetic data under the same cap: the refusals below are the
// inputs', not the cap's.
TEST(BoundedInput, ValidDataTrainsUnderTheSameCap) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  RunResult r = train(tmp, data);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "run/summary.json"));
}

// 2^26 images of 28x28 promised, 10 there: 49 GiB asked for before; now the buffer follows the
// data, so the truncation is seen at a few kilobytes.
TEST(BoundedInput, IdxHeaderPromisingBillionsOfBytesIsRefusedCheaply) {
  for (bool raw : {false, true}) {
    SCOPED_TRACE(raw ? "raw" : "gzip");
    TempDir tmp;
    const std::string data = write_synthetic_fmnist(tmp / "data");
    const std::vector<uint8_t> pixels(10 * 28 * 28, 7);
    write_idx(images_file(data), 0x803, {1u << 26, 28, 28}, pixels.data(), pixels.size(), raw);
    expect_cheap_refusal(train(tmp, data), tmp,
                         {images_file(data), "truncated: expected 52613349392 bytes, got 7856"});
  }
}

// The payload is there but grows past what any model can take: images of 2^15 x 2^15 (16 GiB
// for 16 of them) or 2^30 x 2^30 are refused from the header, before anything is read.
TEST(BoundedInput, IdxImagesLargerThan4096AreRefusedFromTheHeader) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  const uint8_t pixel = 1;
  write_idx(images_file(data), 0x803, {16, 1u << 15, 1u << 15}, &pixel, 1);
  expect_cheap_refusal(train(tmp, data), tmp,
                       {images_file(data), "images of 32768 rows, expected 1..4096"});
  write_idx(images_file(data), 0x803, {1, 28, 1u << 30}, &pixel, 1);
  expect_cheap_refusal(train(tmp, data), tmp,
                       {images_file(data), "images of 1073741824 columns, expected 1..4096"});
  // eval reads the test split the same way.
  write_idx(data + "/t10k-images-idx3-ubyte.gz", 0x803, {16, 1u << 30, 1u << 30}, &pixel, 1);
  auto model = models::make_model("lenet5", 10, 1, 0);
  apps::save_model(tmp / "m.safetensors", *model, {0.5f}, {0.5f});
  expect_cheap_refusal(run_kdlab_bounded({"eval", "--model", tmp / "m.safetensors", "--data-dir",
                                          data, "--threads", "1"},
                                         tmp.path, kBudget),
                       tmp, {"t10k-images-idx3-ubyte.gz", "images of 1073741824 rows"});
}

// A FIFO blocked the reader forever (gzopen waits for a writer); a character device never ends.
TEST(BoundedInput, FifoDeviceAndDirectoryAsDataFilesAreRefusedAtOnce) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  fs::remove(images_file(data));
  ASSERT_EQ(mkfifo(images_file(data).c_str(), 0644), 0);
  RunResult r = train(tmp, data);
  expect_cheap_refusal(r, tmp, {images_file(data), "not a regular file (a FIFO)"});
  EXPECT_LT(r.seconds, 30);

  fs::remove(images_file(data));
  fs::create_symlink("/dev/zero", images_file(data));
  expect_cheap_refusal(train(tmp, data), tmp,
                       {images_file(data), "not a regular file (a character device)"});

  fs::remove(images_file(data));
  fs::create_directory(images_file(data));
  expect_cheap_refusal(train(tmp, data), tmp,
                       {images_file(data), "not a regular file (a directory)"});
}

TEST(BoundedInput, FifoAndDirectoryAsCheckpointsAreRefusedAtOnce) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  ASSERT_EQ(mkfifo((tmp / "teacher.safetensors").c_str(), 0644), 0);
  auto eval = [&](const std::string& model) {
    return run_kdlab_bounded({"eval", "--model", model, "--data-dir", data, "--threads", "1"},
                             tmp.path, kBudget, 60);
  };
  expect_cheap_refusal(eval(tmp / "teacher.safetensors"), tmp,
                       {"teacher.safetensors", "not a regular file (a FIFO)"});
  fs::create_directory(tmp / "dir.safetensors");
  expect_cheap_refusal(eval(tmp / "dir.safetensors"), tmp,
                       {"dir.safetensors", "not a regular file (a directory)"});
  RunResult distill = run_kdlab_bounded(
      {"distill", "--teacher", tmp / "teacher.safetensors", "--data-dir", data, "--out",
       tmp / "run", "--threads", "1"},
      tmp.path, kBudget, 60);
  expect_cheap_refusal(distill, tmp, {"teacher.safetensors", "not a regular file (a FIFO)"});
}

// zlib's gz* reader ignored whatever followed the gzip member; now only further members may.
TEST(BoundedInput, GzipTrailingGarbageIsRefusedAndMoreMembersAreRead) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  const std::string labels = data + "/train-labels-idx1-ubyte.gz";
  const std::string intact = read_file(labels);
  write_file(labels, intact + "garbage");
  expect_cheap_refusal(train(tmp, data), tmp,
                       {labels, "trailing garbage after the gzip stream: 7 bytes at offset " +
                                    std::to_string(intact.size())});
  write_file(labels, intact + std::string(512, '\0'));  // zero padding is not a member either
  expect_cheap_refusal(train(tmp, data), tmp, {labels, "trailing garbage", "512 bytes"});

  // `gzip -c head tail > labels`: two members holding one IDX file train like one.
  std::string raw = be32(0x801) + be32(64);
  for (int i = 0; i < 64; ++i) raw.push_back(char(i % 10));
  write_file(labels, gzip_bytes(raw.substr(0, 20)) + gzip_bytes(raw.substr(20)));
  RunResult r = train(tmp, data);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "run/summary.json"));
}

// A LeNet-5 checkpoint whose metadata is then edited.
std::string edited_checkpoint(const TempDir& tmp, const std::string& key,
                              const std::string& value) {
  auto model = models::make_model("lenet5", 10, 1, 0);
  const std::string path = tmp / "edited.safetensors";
  apps::save_model(path, *model, {0.5f}, {0.5f});
  StFile file = read_safetensors(path);
  file.metadata[key] = value;
  write_safetensors_atomic(path, file);
  return path;
}

RunResult eval_checkpoint(const TempDir& tmp, const std::string& data, const std::string& ckpt) {
  return run_kdlab_bounded({"eval", "--model", ckpt, "--data-dir", data, "--threads", "1"},
                           tmp.path, kBudget);
}

// num_classes=100000000 asked for 33 GB (VGG-16's head) before any tensor was compared.
TEST(BoundedInput, CheckpointMetadataIsBoundedAndNamed) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  struct Case {
    const char* key;
    const char* value;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"num_classes", "100000000", {"'num_classes' is '100000000'", "[2, 1000000]"}},
      {"num_classes", "1", {"'num_classes' is '1'", "[2, 1000000]"}},
      {"in_channels", "3000000", {"'in_channels' is '3000000'", "[1, 1024]"}},
      {"image_size", "1000000", {"'image_size' is '1000000'", "[1, 4096]"}},
      {"model", "preresnet900000002", {"metadata key 'model'", "preresnet900000002"}},
      {"model", "preresnet1208", {"metadata key 'model'", "at most 1202"}},
      {"pad_to", "4096", {"'pad_to' is 4096", "expected 0 or 28"}},
      {"pad_to", "-5", {"'pad_to' is '-5'", "[0, 4096]"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.key) + "=" + c.value);
    const std::string ckpt = edited_checkpoint(tmp, c.key, c.value);
    RunResult r = eval_checkpoint(tmp, data, ckpt);
    EXPECT_FALSE(r.timed_out);
    expect_error(r, {"edited.safetensors"});
    for (const std::string& n : c.needles)
      EXPECT_NE(r.err.find(n), std::string::npos) << "'" << n << "' not in: " << r.err;
    EXPECT_LT(r.peak_rss_kb, kSmallPeakKb);
  }
}

// Within the bound but more classes than the file stores: the classifier is compared on a
// 2-class build first, so the 500000-class head (168 MB for LeNet, 1 GB for VGG-16) is never
// allocated for a file that holds 10 classes.
TEST(BoundedInput, ClassSizedTensorsAreComparedBeforeTheModelIsBuilt) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  RunResult r = eval_checkpoint(tmp, data, edited_checkpoint(tmp, "num_classes", "500000"));
  expect_cheap_refusal(r, tmp, {"edited.safetensors", "'num_classes' is 500000", "'11.weight'",
                                "stored as [10, 84]", "expected [500000, 84]"});

  // A 2000-class LeNet-5 stored whole passes the comparison and evaluates (labels 0..9 are
  // among its 2000 classes).
  auto big = models::make_model("lenet5", 2000, 1, 0);
  apps::save_model(tmp / "big.safetensors", *big, {0.5f}, {0.5f});
  RunResult ok = eval_checkpoint(tmp, data, tmp / "big.safetensors");
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.out.find("\"accuracy\""), std::string::npos) << ok.out;
}

// A stored tensor of another shape is named with both shapes, before training starts.
TEST(BoundedInput, TeacherTensorShapeMismatchIsRefusedNamingTheTensor) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  auto model = models::make_model("lenet5", 10, 1, 0);
  apps::save_model(tmp / "t.safetensors", *model, {0.5f}, {0.5f});
  StFile file = read_safetensors(tmp / "t.safetensors");
  for (StEntry& e : file.entries)
    if (e.name == "7.weight") e = make_entry<float>("7.weight", {120, 399}, std::vector<float>(120 * 399));
  write_safetensors_atomic(tmp / "t.safetensors", file);
  RunResult r = run_kdlab_bounded({"distill", "--teacher", tmp / "t.safetensors", "--data-dir",
                                   data, "--out", tmp / "run", "--threads", "1"},
                                  tmp.path, kBudget);
  expect_cheap_refusal(r, tmp, {"t.safetensors", "7.weight", "[120, 399]", "[120, 400]"});
}

// A safetensors header of millions of tiny JSON values cost 10-20x its size to parse.
TEST(BoundedInput, SafetensorsHeaderWithMillionsOfValuesIsRefused) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  std::string header = "{\"x\":{\"dtype\":\"U8\",\"shape\":[";
  for (int i = 0; i < 3000000; ++i) header += "1,";
  header += "0],\"data_offsets\":[0,0]}}";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(char((uint64_t(header.size()) >> (8 * i)) & 0xFF));
  write_file(tmp / "wide.safetensors", bytes + header);
  RunResult r = eval_checkpoint(tmp, data, tmp / "wide.safetensors");
  expect_cheap_refusal(r, tmp, {"wide.safetensors", "more than 1000000 JSON elements"});
}

// --subset-per-class reserved per_class x classes entries before checking per_class.
TEST(BoundedInput, HugeSubsetPerClassIsRefusedBeforeReserving) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  expect_cheap_refusal(train(tmp, data, {"--subset-per-class", "2000000000"}), tmp,
                       {"class 0 has 7 examples, fewer than the 2000000000 requested"});
}

// An allocation a flag sizes beyond memory is one line naming the flag and the bytes, exit 1
// (a resource, not bad input): --pad-to 4096 on 64 images is 1 GiB, over a 768 MiB cap.
TEST(BoundedInput, OutOfMemoryIsOneLineNamingWhatWasAllocated) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data");
  RunResult r = run_kdlab_bounded({"train", "--data-dir", data, "--out", tmp / "run",
                                   "--model", "preresnet8", "--pad-to", "4096", "--threads", "1"},
                                  tmp.path, uint64_t(768) << 20);
  expect_cheap_refusal(r, tmp, {"--pad-to 4096", "out of memory", "1073741824 bytes"}, 1);
}

}  // namespace
}  // namespace kd
