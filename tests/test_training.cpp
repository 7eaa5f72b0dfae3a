// End-to-end training on the real Fashion-MNIST files: (a) LeNet-5 learns (>= 85% test accuracy
// in two epochs) through apps::train_supervised; (b) train -> distill -> eval chained through the
// CLI, with eval's JSON checked against the distill run's own summary. (The presets, the
// fmnist-study among them, are run by test_study.cpp.) Skipped when the dataset is absent.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "apps/experiment.h"
#include "data/fashion_mnist.h"
#include "data/idx.h"
#include "models/classifier.h"
#include "tests/cli_testing.h"

namespace kd {
namespace {

using namespace cli_testing;

#define SKIP_WITHOUT_FASHION_MNIST()                                                  \
  if (!have_fashion_mnist())                                                          \
  GTEST_SKIP() << kFashionMnistDir << " is absent (Debian package or KDLAB_FMNIST_DIR)"

nlohmann::json read_json(const std::string& path) {
  std::string text = read_file(path);
  EXPECT_FALSE(text.empty()) << path << " is missing or empty";
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// The paper's LeNet-5 teachers reach ~90% on Fashion-MNIST; two epochs of SGD-Nesterov with a
// cosine schedule already get past 85%, which a broken conv, pool, optimizer or data path cannot.
TEST(Training, LeNet5ReachesEightyFivePercentOnFashionMnistInTwoEpochs) {
  SKIP_WITHOUT_FASHION_MNIST();
  auto start = std::chrono::steady_clock::now();
  data::Dataset train = data::load_fashion_mnist(kFashionMnistDir, true);
  data::Dataset test = data::load_fashion_mnist(kFashionMnistDir, false);
  ASSERT_EQ(train.n, 60000);
  ASSERT_EQ(test.n, 10000);
  auto model = models::make_model("lenet5", 10, 1, /*seed=*/1);
  apps::LoopConfig cfg;
  cfg.epochs = 2;
  cfg.batch = 128;
  cfg.optim.lr = 0.05;  // sgd, momentum 0.9, Nesterov, weight decay 1e-4 (the defaults)
  cfg.seed = 1;
  std::vector<double> losses;
  apps::train_supervised(*model, train, nullptr, data::Normalization::unitcube(1), cfg, "lenet5",
                         [&](const apps::EpochRecord& r) { losses.push_back(r.train_loss); });
  ClassifierStats stats = apps::evaluate_model(*model, nullptr, test,
                                               data::Normalization::unitcube(1), Device::cpu());
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ measured ] LeNet-5, 2 epochs on 60k: test accuracy %.2f%%, NLL %.4f, %.1f s\n",
              100 * stats.accuracy(), stats.nll(), seconds);
  ASSERT_EQ(losses.size(), 2u);
  EXPECT_LT(losses[1], losses[0]) << "the second epoch's mean loss should be lower";
  EXPECT_EQ(stats.count, 10000);
  EXPECT_GE(stats.accuracy(), 0.85);
  EXPECT_LT(stats.nll(), 0.45);  // chance is ln 10 = 2.30
}

// A tiny data folder cut from the real files: 2000 training and 1000 test images.
void write_small_fashion_mnist(const std::string& dir) {
  fs::create_directories(dir);
  write_fashion_mnist_split(dir, "train",
                            data::load_fashion_mnist(kFashionMnistDir, true).take_first(2000));
  write_fashion_mnist_split(dir, "t10k",
                            data::load_fashion_mnist(kFashionMnistDir, false).take_first(1000));
}

TEST(Training, TrainDistillEvalThroughTheCli) {
  SKIP_WITHOUT_FASHION_MNIST();
  TempDir tmp;
  const std::string data_dir = tmp / "data";
  write_small_fashion_mnist(data_dir);
  // One thread: these runs are ~1 s of compute, and two OpenMP threads on a busy 2-core machine
  // spend more time waiting at barriers than computing.
  const std::vector<std::string> tiny = {"--data-dir", data_dir, "--batch", "64", "--threads", "1"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), tiny.begin(), tiny.end());
    return args;
  };

  RunResult t = run_kdlab(with({"train", "--epochs", "2", "--out", tmp / "teacher", "--seed", "3"}), tmp.path);
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_EQ(t.err, "");
  const std::string teacher = tmp / "teacher/model.safetensors";
  nlohmann::json ts = read_json(tmp / "teacher/summary.json");
  EXPECT_EQ(ts["test"]["count"], 1000);
  EXPECT_GT(ts["test"]["accuracy"].get<double>(), 0.5) << "2 epochs on 2000 images: 0.63";
  EXPECT_EQ(read_json(tmp / "teacher/config.json")["train_images"], 2000);

  // tau 1: at tau 4 the tau^2-scaled gradients need a smaller lr than 48 steps can use.
  RunResult d = run_kdlab(with({"distill", "--teacher", teacher, "--tau", "1", "--epochs", "3",
                                "--distill-size", "1500", "--out", tmp / "student", "--seed", "4"}),
                          tmp.path);
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(d.err, "");
  nlohmann::json ds = read_json(tmp / "student/summary.json");
  EXPECT_EQ(ds["distill_data"]["count"], 1500);
  EXPECT_EQ(ds["test"]["count"], 1000);
  nlohmann::json dc = read_json(tmp / "student/config.json");
  EXPECT_EQ(dc["tau"], 1.0);
  EXPECT_EQ(dc["loop"]["epochs"], 3);
  EXPECT_EQ(dc["student"], "lenet5");
  EXPECT_EQ(dc["loss"], "fwd-ce");

  RunResult e = run_kdlab({"eval", "--model", tmp / "student/student.safetensors", "--teacher",
                           teacher, "--data-dir", data_dir, "--threads", "2"},
                          tmp.path);
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(e.err, "");
  nlohmann::json j = nlohmann::json::parse(e.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << "eval prints one JSON object; got:\n" << e.out;
  for (const char* key : {"accuracy", "nll", "ece", "count", "agreement", "kl_teacher_student",
                          "split", "model"})
    EXPECT_TRUE(j.contains(key)) << key << " missing in " << j.dump();
  EXPECT_EQ(j["split"], "test");
  EXPECT_EQ(j["model"], tmp / "student/student.safetensors");
  EXPECT_EQ(j["count"], 1000);
  // The same checkpoint on the same data: eval must reproduce the distill run's own numbers.
  for (const char* key : {"accuracy", "nll", "ece", "agreement", "kl_teacher_student"})
    EXPECT_NEAR(j[key].get<double>(), ds["test"][key].get<double>(), 1e-9) << key;
  EXPECT_GT(j["agreement"].get<double>(), 0.65) << "measured 0.81 when written";
  EXPECT_GE(j["kl_teacher_student"].get<double>(), 0.0);

  // Without teachers: no fidelity keys; on the training split: 2000 images.
  RunResult e2 = run_kdlab({"eval", "--model", teacher, "--split", "train", "--data-dir", data_dir},
                           tmp.path);
  ASSERT_EQ(e2.code, 0) << e2.err;
  nlohmann::json j2 = nlohmann::json::parse(e2.out, nullptr, false);
  ASSERT_TRUE(j2.is_object()) << e2.out;
  EXPECT_EQ(j2["count"], 2000);
  EXPECT_EQ(j2["split"], "train");
  EXPECT_FALSE(j2.contains("agreement"));
  std::printf("[ measured ] train %.1f s (test acc %.3f), distill %.1f s (test agreement %.3f), "
              "eval %.1f s + %.1f s\n", t.seconds, ts["test"]["accuracy"].get<double>(), d.seconds,
              j["agreement"].get<double>(), e.seconds, e2.seconds);
}

}  // namespace
}  // namespace kd
