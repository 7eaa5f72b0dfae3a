// The kdlab binary as a user meets it: every bad flag, file or dataset ends the process with exit
// code 2 and exactly one stderr line "kdlab: error: ..." naming the flag or file, and leaves
// nothing behind in --out; a run that fails mid-way leaves no summary.json (a run directory
// without one is not complete). Runs KDLAB_BINARY as a child process in a fresh temp directory.
#include <gtest/gtest.h>

#include <initializer_list>

#include "apps/model_io.h"
#include "apps/presets.h"
#include "data/datasets.h"
#include "engine/distill_losses.h"
#include "engine/device.h"
#include "base/philox.h"
#include "models/classifier.h"
#include "models/registry.h"
#include "tests/cli_testing.h"

namespace kd {
namespace {

using namespace cli_testing;

// A valid (untrained) LeNet-5 checkpoint, as train would write it.
std::string write_checkpoint(const TempDir& tmp, const std::string& name = "teacher.safetensors") {
  auto model = models::make_model("lenet5", 10, 1, 0);
  const std::string path = tmp / name;
  apps::save_model(path, *model, {0.5f}, {0.5f}, {{"role", "teacher"}});
  return path;
}

// A copy of the real Fashion-MNIST folder; the caller damages one file.
std::string copy_real_data(const TempDir& tmp) {
  const std::string dir = tmp / "fmnist";
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(kFashionMnistDir))
    fs::copy_file(e.path(), fs::path(dir) / e.path().filename());
  return dir;
}

TEST(Cli, HelpExitsZeroAndNamesSubcommandsAndFlags) {
  TempDir tmp;
  RunResult top = run_kdlab({"--help"}, tmp.path);
  EXPECT_EQ(top.code, 0) << top.err;
  for (const char* word : {"train", "distill", "eval", "repro", "bench"})
    EXPECT_NE(top.out.find(word), std::string::npos) << word << " not in:\n" << top.out;
  RunResult train = run_kdlab({"train", "--help"}, tmp.path);
  EXPECT_EQ(train.code, 0) << train.err;
  for (const char* flag : {"--epochs", "--batch", "--lr", "--model", "--device", "--out",
                           "--threads", "--data-dir", "--seed", "--subset-size"})
    EXPECT_NE(train.out.find(flag), std::string::npos) << flag << " not in:\n" << train.out;
  RunResult distill = run_kdlab({"distill", "--help"}, tmp.path);
  EXPECT_EQ(distill.code, 0) << distill.err;
  for (const char* flag : {"--teacher", "--tau", "--alpha", "--loss", "--student-model"})
    EXPECT_NE(distill.out.find(flag), std::string::npos) << flag << " not in:\n" << distill.out;
  // The choices and their help lines come from the registries, not from text kept beside them.
  for (const auto& e : models::model_registry().entries()) {
    EXPECT_NE(train.out.find(e.name), std::string::npos) << e.name << " not in:\n" << train.out;
    EXPECT_NE(train.out.find(e.help), std::string::npos) << e.help << " not in:\n" << train.out;
  }
  for (const auto& e : data::dataset_registry().entries())
    EXPECT_NE(train.out.find(e.help), std::string::npos) << e.help << " not in:\n" << train.out;
  for (const auto& e : distill_loss_registry().entries())
    EXPECT_NE(distill.out.find(e.help), std::string::npos) << e.help << " not in:\n" << distill.out;
  RunResult repro = run_kdlab({"repro", "--list"}, tmp.path);
  ASSERT_EQ(repro.code, 0) << repro.err;
  for (const apps::Preset& p : apps::presets())
    EXPECT_NE(repro.out.find(p.name + " "), std::string::npos) << p.name << " not in:\n" << repro.out;
  EXPECT_EQ(entries_of(tmp.path), std::vector<std::string>{});
}

TEST(Cli, UnknownRegistryNamesListTheKnownOnes) {
  TempDir tmp;
  expect_error(run_kdlab({"train", "--dataset", "cifar1000", "--out", tmp / "run"}, tmp.path),
               {"--dataset", "cifar1000", "fmnist"});
  expect_error(run_kdlab({"train", "--model", "vgg99", "--out", tmp / "run"}, tmp.path),
               {"--model", "vgg99", "lenet5", "preresnet<depth>"});
  expect_error(run_kdlab({"repro", "fmnist-study", "--dataset", "other", "--out", tmp / "run"},
                         tmp.path),
               {"--dataset", "fmnist-study", "fmnist"});
  EXPECT_FALSE(fs::exists(tmp / "run"));
}

TEST(Cli, UnknownFlagSubcommandAndPresetAreRefused) {
  TempDir tmp;
  expect_error(run_kdlab({"train", "--bogus"}, tmp.path), {"--bogus", "kdlab train --help"});
  expect_error(run_kdlab({"nope"}, tmp.path), {"nope", "train", "distill"});
  expect_error(run_kdlab({}, tmp.path), {"subcommand"});
  expect_error(run_kdlab({"train", "--epochs", "abc"}, tmp.path), {"--epochs", "abc"});
  expect_error(run_kdlab({"distill"}, tmp.path), {"--teacher"});
  expect_error(run_kdlab({"repro", "nope", "--out", tmp / "run"}, tmp.path),
               {"nope", "fmnist-study"});
  EXPECT_FALSE(fs::exists(tmp / "run"));
  EXPECT_EQ(entries_of(tmp.path), std::vector<std::string>{}) << "no runs/ folder either";
}

TEST(Cli, BadDeviceAndThreadsAreRefused) {
  TempDir tmp;
  expect_error(run_kdlab({"train", "--device", "gpu", "--out", tmp / "run"}, tmp.path),
               {"--device", "'gpu'", "auto, cpu or cuda"});
  expect_error(run_kdlab({"train", "--threads", "-2", "--out", tmp / "run"}, tmp.path),
               {"--threads", "-2"});
  // Once accepted, then overflowing the crop arithmetic.
  expect_error(run_kdlab({"train", "--crop-pad", "2147483647", "--out", tmp / "run"}, tmp.path),
               {"--crop-pad", "0..1024", "2147483647"});
  // With CUDA switched off (or absent) asking for it is a clear input error, not a crash.
  expect_error(run_kdlab({"train", "--device", "cuda", "--out", tmp / "run"}, tmp.path,
                         {{"KDLAB_DISABLE_CUDA", "1"}}),
               {"--device cuda"});
  if (!cuda_usable())
    expect_error(run_kdlab({"eval", "--device", "cuda", "--model", "m.safetensors"}, tmp.path),
                 {"--device cuda"});
  EXPECT_FALSE(fs::exists(tmp / "run"));
}

TEST(Cli, BadTrainingFlagsLeaveNoRunDirectory) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  const std::string out = tmp / "run";
  auto train = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"train", "--data-dir", data, "--out", out, "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_kdlab(args, tmp.path);
  };
  expect_error(train({"--epochs", "0"}), {"--epochs", "0"});
  expect_error(train({"--batch", "0"}), {"--batch"});
  expect_error(train({"--lr", "-1"}), {"--lr"});
  expect_error(train({"--optimizer", "rmsprop"}), {"--optimizer", "rmsprop"});
  expect_error(train({"--model", "resnet9000"}), {"--model", "resnet9000", "lenet5"});
  expect_error(train({"--model", "preresnet20"}), {"--model", "preresnet20", "32x32", "28x28"});
  expect_error(train({"--subset-size", "65"}), {"--subset-size", "65", "64"});
  expect_error(train({"--rotation", "200"}), {"--rotation", "200", "[0, 180]"});
  expect_error(train({"--hue", "0.7"}), {"--hue", "0.7"});
  expect_error(train({"--noise", "1.5"}), {"--noise", "1.5"});
  expect_error(train({"--conv", "winograd"}), {"--conv", "winograd", "native or cudnn"});
  expect_error(train({"--bn", "fast"}), {"--bn", "fast"});
  expect_error(train({"--tf32", "--deterministic"}), {"--tf32", "--deterministic"});
  expect_error(train({"--profile-steps", "9:3"}), {"--profile-steps", "9:3", "A:B"});
  expect_error(train({"--profile-steps", "x"}), {"--profile-steps", "'x'"});
  // --device cpu: on a machine with a GPU (or the grid emulator) auto picks cuda.
  expect_error(train({"--device", "cpu", "--cuda-graph"}), {"--cuda-graph", "--device cuda", "cpu"});
  EXPECT_FALSE(fs::exists(out));
}

TEST(Cli, BadDistillFlagsAndTeachersLeaveNoRunDirectory) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  const std::string teacher = write_checkpoint(tmp);
  const std::string out = tmp / "run";
  auto distill = [&](const std::string& t, std::vector<std::string> extra) {
    std::vector<std::string> args = {"distill", "--teacher", t, "--data-dir", data,
                                     "--out", out, "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_kdlab(args, tmp.path);
  };
  expect_error(distill(teacher, {"--loss", "unknown"}), {"--loss", "'unknown'", "fwd-ce"});
  expect_error(distill(teacher, {"--tau", "0"}), {"--tau", "0"});
  expect_error(distill(teacher, {"--alpha", "1.5"}), {"--alpha", "1.5"});
  expect_error(distill(teacher, {"--student-model", "vgg99"}), {"--student-model", "vgg99"});
  expect_error(distill(teacher, {"--mixup", "-1"}), {"--mixup", "-1"});
  // Not a safetensors file: a text file, and a gzip file.
  write_file(tmp / "notes.txt", "this is not a checkpoint\n");
  expect_error(distill(tmp / "notes.txt", {}), {"notes.txt"});
  expect_error(distill(data + "/train-labels-idx1-ubyte.gz", {}), {"train-labels-idx1-ubyte.gz"});
  expect_error(distill(tmp / "absent.safetensors", {}), {"absent.safetensors", "cannot open"});
  EXPECT_FALSE(fs::exists(out));
}

TEST(Cli, EvalRefusesMissingAndCorruptCheckpoints) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  auto eval = [&](const std::string& model) {
    return run_kdlab({"eval", "--model", model, "--data-dir", data, "--threads", "1"}, tmp.path);
  };
  expect_error(eval(tmp / "missing.safetensors"), {"missing.safetensors", "cannot open"});

  std::string garbage;
  // Through uint8_t: a float above 127 converted to a (signed) char is undefined behaviour.
  for (int i = 0; i < 4096; ++i)
    garbage.push_back(char(uint8_t(255 * philox_uniform(3, kStreamTest, i))));
  write_file(tmp / "garbage.safetensors", garbage);
  expect_error(eval(tmp / "garbage.safetensors"), {"garbage.safetensors"});

  const std::string real = read_file(write_checkpoint(tmp, "real.safetensors"));
  ASSERT_GT(real.size(), 100000u);
  for (size_t keep : {size_t(5), size_t(100), real.size() / 2, real.size() - 1}) {
    SCOPED_TRACE("truncated to " + std::to_string(keep) + " bytes");
    write_file(tmp / "cut.safetensors", real.substr(0, keep));
    expect_error(eval(tmp / "cut.safetensors"), {"cut.safetensors"});
  }
  // The intact file evaluates, so the refusals above are about the damage.
  RunResult ok = eval(tmp / "real.safetensors");
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.out.find("\"accuracy\""), std::string::npos) << ok.out;
}

TEST(Cli, LabelOutOfRangeIsRefusedAndNamesTheFile) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic", 64, 32, /*bad_label=*/true);
  expect_error(run_kdlab({"train", "--data-dir", data, "--out", tmp / "run"}, tmp.path),
               {"train-labels-idx1-ubyte.gz", "label 12", "index 37"});
  expect_error(run_kdlab({"repro", "fmnist-study", "--quick", "--data-dir", data, "--out",
                          tmp / "run"},
                         tmp.path),
               {"train-labels-idx1-ubyte.gz", "label 12"});
  EXPECT_FALSE(fs::exists(tmp / "run"));
}

TEST(Cli, TruncatedOrMislabelledRealDataIsRefused) {
  if (!have_fashion_mnist()) GTEST_SKIP() << kFashionMnistDir << " is absent";
  TempDir tmp;
  const std::string dir = copy_real_data(tmp);
  const std::string images = dir + "/train-images-idx3-ubyte.gz";
  const std::string intact = read_file(images);
  ASSERT_GT(intact.size(), 1000000u);
  write_file(images, intact.substr(0, 1000000));  // head -c 1000000
  expect_error(run_kdlab({"train", "--data-dir", dir, "--out", tmp / "run"}, tmp.path),
               {"train-images-idx3-ubyte.gz", "truncated", "47040016"});
  expect_error(run_kdlab({"repro", "fmnist-study", "--quick", "--data-dir", dir, "--out",
                          tmp / "run"},
                         tmp.path),
               {"train-images-idx3-ubyte.gz", "truncated"});
  EXPECT_FALSE(fs::exists(tmp / "run"));

  // The labels file where the images should be: the magic number gives it away.
  fs::copy_file(dir + "/train-labels-idx1-ubyte.gz", images, fs::copy_options::overwrite_existing);
  expect_error(run_kdlab({"train", "--data-dir", dir, "--out", tmp / "run"}, tmp.path),
               {"train-images-idx3-ubyte.gz", "bad magic", "0x00000801", "0x00000803"});
  EXPECT_FALSE(fs::exists(tmp / "run"));

  expect_error(run_kdlab({"train", "--data-dir", tmp / "nowhere", "--out", tmp / "run"}, tmp.path),
               {"nowhere/train-images-idx3-ubyte.gz", "cannot open"});
  EXPECT_FALSE(fs::exists(tmp / "run"));
}

TEST(Cli, ExistingNonEmptyOutIsRefusedAndLeftUntouched) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  const std::string out = tmp / "previous-run";
  fs::create_directories(out);
  write_file(out + "/summary.json", "{\"keep\": true}\n");
  expect_error(run_kdlab({"train", "--data-dir", data, "--out", out, "--epochs", "1"}, tmp.path),
               {"--out", "previous-run", "not empty"});
  expect_error(run_kdlab({"repro", "fmnist-study", "--quick", "--data-dir", data, "--out", out},
                         tmp.path),
               {"--out", "previous-run", "not empty"});
  EXPECT_EQ(entries_of(out), std::vector<std::string>{"summary.json"});
  EXPECT_EQ(read_file(out + "/summary.json"), "{\"keep\": true}\n");
  // A file where the directory should be is refused too.
  write_file(tmp / "a-file", "x");
  expect_error(run_kdlab({"train", "--data-dir", data, "--out", tmp / "a-file", "--epochs", "1"},
                         tmp.path),
               {"--out", "a-file"});
}

// A run that breaks after it started keeps what it wrote (config.json, for the post-mortem) but
// never a summary.json or a checkpoint, so it cannot be mistaken for a finished run.
TEST(Cli, RunDivergingMidwayLeavesNoSummary) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  const std::string out = tmp / "run";
  RunResult r = run_kdlab({"train", "--data-dir", data, "--out", out, "--lr", "1e30", "--batch",
                           "16", "--epochs", "1", "--threads", "1"},
                          tmp.path);
  expect_error(r, {"loss became", "learning rate"}, /*code=*/1);
  ASSERT_TRUE(fs::is_directory(out));
  EXPECT_TRUE(fs::exists(out + "/config.json"));
  EXPECT_FALSE(fs::exists(out + "/summary.json"));
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
  for (const std::string& name : entries_of(out))
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << "temporary file left behind: " << name;
}

// The control for the refusals above: the same synthetic folder trains fine.
TEST(Cli, SyntheticDataTrainsToACompleteRunDirectory) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  const std::string out = tmp / "run";
  RunResult r = run_kdlab({"train", "--data-dir", data, "--out", out, "--epochs", "1", "--batch",
                           "16", "--threads", "1"},
                          tmp.path);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(entries_of(out),
            (std::vector<std::string>{".lock", "config.json", "last.safetensors", "log.txt",
                                      "metrics.csv", "model.safetensors", "summary.json"}));
}

// VGG-16 wants 32x32 images: 28x28 Fashion-MNIST-shaped data is refused without --pad-to and
// trains with --pad-to 32 (2 steps of 32 on the synthetic folder, one thread: a few seconds).
TEST(Cli, Vgg16TrainsOnImagesPaddedTo32) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  expect_error(run_kdlab({"train", "--model", "vgg16", "--data-dir", data, "--out", tmp / "bad"},
                         tmp.path),
               {"vgg16", "32x32", "28x28"});
  EXPECT_FALSE(fs::exists(tmp / "bad"));
  const std::string out = tmp / "run";
  RunResult r = run_kdlab({"train", "--model", "vgg16", "--pad-to", "32", "--data-dir", data,
                           "--out", out, "--epochs", "1", "--batch", "32", "--threads", "1"},
                          tmp.path);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string config = read_file(out + "/config.json");
  EXPECT_NE(config.find("\"vgg16\""), std::string::npos) << config;
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
}

TEST(Cli, SplitHalvesAndOutOfDistributionDistillation) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");  // 64 training images
  auto train_images = [&](const std::string& out) {
    const std::string config = read_file(out + "/config.json");
    const size_t at = config.find("\"train_images\": ");
    return at == std::string::npos ? -1 : std::atoi(config.c_str() + at + 16);
  };
  for (const char* half : {"D0", "D1"}) {
    RunResult r = run_kdlab({"train", "--data-dir", data, "--out", tmp / half, "--epochs", "1",
                             "--batch", "16", "--threads", "1", "--split", half, "--split-seed",
                             "3"},
                            tmp.path);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(train_images(tmp / half), 32) << half;
  }
  expect_error(run_kdlab({"train", "--data-dir", data, "--split", "D2", "--out", tmp / "bad"},
                         tmp.path),
               {"--split", "D2", "D0"});
  EXPECT_FALSE(fs::exists(tmp / "bad"));

  // A Fashion-MNIST-shaped teacher distilled on another 28x28 dataset's images (the OOD arm):
  // the same synthetic files read as --distill-dataset mnist, split in half.
  const std::string teacher = tmp / "D0/model.safetensors";
  RunResult ood = run_kdlab({"distill", "--teacher", teacher, "--data-dir", data,
                             "--distill-dataset", "mnist", "--distill-data-dir", data, "--split",
                             "D1", "--epochs", "1", "--batch", "16", "--threads", "1", "--out",
                             tmp / "ood"},
                            tmp.path);
  ASSERT_EQ(ood.code, 0) << ood.err;
  const std::string config = read_file(tmp / "ood/config.json");
  EXPECT_NE(config.find("\"distill_dataset\": \"mnist\""), std::string::npos) << config;
  EXPECT_NE(config.find("\"distill_images\": 32"), std::string::npos) << config;
  // Images of another shape are refused before anything is written.
  const std::string c10 = tmp / "c10";
  fs::create_directories(c10);
  for (const char* f : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                        "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"})
    write_file(c10 + "/" + f, std::string(3073, '\0'));
  expect_error(run_kdlab({"distill", "--teacher", teacher, "--data-dir", data,
                          "--distill-dataset", "cifar10", "--distill-data-dir", c10, "--out",
                          tmp / "ood2"},
                         tmp.path),
               {"--distill-dataset cifar10", "3x32x32", "1x28x28"});
  EXPECT_FALSE(fs::exists(tmp / "ood2"));
}

}  // namespace
}  // namespace kd

namespace kd {
namespace {

using namespace cli_testing;

// Checkpoints used together must agree on classes and image shape, or the command stops naming
// both files (eval once read a 100-class teacher's logits with a 10-class stride, exit 0).
TEST(Cli, CheckpointsOfOtherClassCountsAreRefusedNamingBoth) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  auto save = [&](const std::string& name, int classes) {
    auto model = models::make_model("lenet5", classes, 1, 0);
    apps::save_model(tmp / name, *model, {0.5f}, {0.5f}, {{"role", "teacher"}});
    return tmp / name;
  };
  const std::string ten = save("ten.safetensors", 10), hundred = save("hundred.safetensors", 100);
  expect_error(run_kdlab({"eval", "--data-dir", data, "--model", ten, "--teacher", hundred}, tmp.path),
               {"--teacher " + hundred, "100 classes", "--model " + ten, "10 classes"});
  expect_error(run_kdlab({"distill", "--data-dir", data, "--teacher", ten, "--teacher", hundred,
                          "--out", tmp / "run"}, tmp.path),
               {"--teacher " + hundred, "100 classes", "--teacher " + ten, "must agree"});
  EXPECT_FALSE(fs::exists(tmp / "run"));
}

}  // namespace
}  // namespace kd
