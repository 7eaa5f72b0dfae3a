// The interpolated initialisation (models/interpolate.h, distill --init-from): lambda = 0 is the
// random student and lambda = 1 the teacher, bit for bit, over every state-dict entry including
// BatchNorm's running statistics and num_batches_tracked; lambda = 0.5 is the midpoint; a
// mismatched architecture is refused naming the entry. Then the BatchNorm re-estimation pass and
// the binary: a LeNet-5 student started at lambda = 1 with the paper's LR scaling (lr -> eta_min
// = 0) ends with exactly the teacher's weights, and train --save-init writes the initial model.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "apps/experiment.h"
#include "apps/model_io.h"
#include "base/check.h"
#include "data/augment.h"
#include "models/interpolate.h"
#include "models/registry.h"
#include "tests/cli_testing.h"
#include "tests/data_testing.h"

namespace kd {
namespace {
namespace fs = std::filesystem;

std::map<std::string, std::vector<double>> values_of(const models::Classifier& m) {
  std::map<std::string, std::vector<double>> out;
  for (const auto& [name, t] : m.state_dict()) {
    std::vector<double> v;
    if (t.dtype() == DType::F32)
      for (float x : t.to_vector<float>()) v.push_back(x);
    else
      for (int64_t x : t.to_vector<int64_t>()) v.push_back(double(x));
    out[name] = v;
  }
  return out;
}

// A teacher whose BatchNorm statistics and counters are not the fresh ones.
std::shared_ptr<models::Classifier> trained_looking_teacher() {
  auto teacher = models::make_model("preresnet8", 10, 3, /*seed=*/1);
  std::map<std::string, Tensor> sd;
  for (const auto& [name, t] : teacher->state_dict())
    if (name.find("num_batches_tracked") != std::string::npos)
      sd[name] = Tensor::from_vector<int64_t>(t.shape(), {7});
    else if (name.find("running_var") != std::string::npos)
      sd[name] = Tensor::full(t.shape(), 2.5, DType::F32);
    else
      sd[name] = t;
  teacher->load_state_dict(sd);
  return teacher;
}

TEST(Interpolate, LambdaZeroIsRandomAndOneIsTheTeacherExactly) {
  auto teacher = trained_looking_teacher();
  const auto random = values_of(*models::make_model("preresnet8", 10, 3, /*seed=*/2));
  auto s0 = models::make_model("preresnet8", 10, 3, 2);
  models::interpolate_from(*s0, *teacher, 0.0);
  EXPECT_EQ(values_of(*s0), random);
  auto s1 = models::make_model("preresnet8", 10, 3, 2);
  models::interpolate_from(*s1, *teacher, 1.0);
  EXPECT_EQ(values_of(*s1), values_of(*teacher));
  EXPECT_TRUE(models::has_batch_norm(*s1));
  EXPECT_FALSE(models::has_batch_norm(*models::make_model("lenet5", 10, 1, 0)));
  EXPECT_FALSE(models::has_batch_norm(*models::make_model("preresnet8-ln", 10, 3, 0)));
}

TEST(Interpolate, HalfwayIsTheMidpointAndCountersTruncate) {
  auto teacher = trained_looking_teacher();
  const auto t = values_of(*teacher);
  auto s = models::make_model("preresnet8", 10, 3, 2);
  const auto r = values_of(*s);
  models::interpolate_from(*s, *teacher, 0.5);
  for (const auto& [name, v] : values_of(*s))
    for (size_t k = 0; k < v.size(); ++k) {
      if (name.find("num_batches_tracked") != std::string::npos) {
        EXPECT_EQ(v[k], 3.0) << name << ": trunc(0.5 * 7 + 0.5 * 0)";
      } else {
        EXPECT_EQ(float(v[k]), float(0.5 * t.at(name)[k] + 0.5 * r.at(name)[k])) << name;
      }
    }
}

TEST(Interpolate, RefusesAnotherArchitectureAndLambdaOutside01) {
  auto teacher = models::make_model("preresnet8", 10, 3, 1);
  auto other = models::make_model("preresnet14", 10, 3, 2);
  EXPECT_THROW(models::interpolate_from(*other, *teacher, 0.5), InputError);
  auto narrow = models::make_model("preresnet8", 7, 3, 2);
  try {
    models::interpolate_from(*narrow, *teacher, 0.5);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("fc.weight"), std::string::npos) << e.what();
  }
  auto same = models::make_model("preresnet8", 10, 3, 2);
  EXPECT_THROW(models::interpolate_from(*same, *teacher, 1.5), InputError);
}

TEST(Interpolate, BatchNormReestimationMovesOnlyTheRunningStatistics) {
  auto model = models::make_model("preresnet8", 10, 3, 4);
  const auto before = values_of(*model);
  const data::Dataset ds = data_testing::random_dataset(24, 3, 32, 32, 10, 5);
  apps::reestimate_batch_norm(*model, ds, data::Normalization::unitcube(3), Device::cpu(), 8);
  EXPECT_FALSE(model->is_training());
  int moved = 0;
  for (const auto& [name, v] : values_of(*model)) {
    const bool stat = name.find("running_") != std::string::npos;
    if (name.find("num_batches_tracked") != std::string::npos) {
      EXPECT_EQ(v[0], before.at(name)[0] + 3) << name << ": three batches";
    } else if (stat) {
      moved += v != before.at(name);
    } else {
      EXPECT_EQ(v, before.at(name)) << name << " is a weight: no update";
    }
  }
  EXPECT_GT(moved, 0);
}

TEST(Interpolate, StudentStartedAtTheTeacherWithScaledLrStaysTheTeacher) {
  cli_testing::TempDir tmp;
  cli_testing::write_fashion_mnist_split(tmp.path, "train",
                                         data_testing::random_dataset(48, 1, 28, 28, 10, 6));
  cli_testing::write_fashion_mnist_split(tmp.path, "t10k",
                                         data_testing::random_dataset(16, 1, 28, 28, 10, 7));
  auto r = cli_testing::run_kdlab({"train", "--data-dir", tmp.path, "--epochs", "1", "--batch",
                                   "16", "--save-init", "--out", tmp / "teacher"},
                                  tmp.path);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(fs::exists(tmp / "teacher/init.safetensors"));
  const apps::LoadedModel init = apps::load_model(tmp / "teacher/init.safetensors");
  EXPECT_EQ(values_of(*init.model), values_of(*models::make_model("lenet5", 10, 1, 0)))
      << "the saved initial weights are those of seed 0";
  auto d = cli_testing::run_kdlab(
      {"distill", "--teacher", tmp / "teacher/model.safetensors", "--data-dir", tmp.path,
       "--init-from", tmp / "teacher/model.safetensors", "--init-interpolate", "1", "--epochs",
       "1", "--batch", "16", "--out", tmp / "student"},
      tmp.path);
  ASSERT_EQ(d.code, 0) << d.err;
  const apps::LoadedModel teacher = apps::load_model(tmp / "teacher/model.safetensors");
  const apps::LoadedModel student = apps::load_model(tmp / "student/student.safetensors");
  EXPECT_EQ(values_of(*student.model), values_of(*teacher.model));
  EXPECT_NE(d.out.find("test agreement 100.00%"), std::string::npos) << d.out;
  const std::string config = cli_testing::read_file(tmp / "student/config.json");
  EXPECT_NE(config.find("\"lr\": 0.0"), std::string::npos) << config;
  auto bad = cli_testing::run_kdlab({"distill", "--teacher", tmp / "teacher/model.safetensors",
                                     "--data-dir", tmp.path, "--init-interpolate", "0.5", "--out",
                                     tmp / "bad"},
                                    tmp.path);
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("--init-from and --init-interpolate"), std::string::npos) << bad.err;
}

TEST(IndependentStudent, IsExactlyTheLabelTrainedModelOfTheSameRecipe) {
  cli_testing::TempDir tmp;
  cli_testing::write_fashion_mnist_split(tmp.path, "train",
                                         data_testing::random_dataset(48, 1, 28, 28, 10, 8));
  cli_testing::write_fashion_mnist_split(tmp.path, "t10k",
                                         data_testing::random_dataset(16, 1, 28, 28, 10, 9));
  const std::vector<std::string> recipe = {"--data-dir", tmp.path, "--epochs", "2", "--batch",
                                           "16", "--lr", "0.02", "--seed", "5", "--threads", "1"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), recipe.begin(), recipe.end());
    return args;
  };
  auto teacher = cli_testing::run_kdlab({"train", "--data-dir", tmp.path, "--epochs", "2",
                                         "--seed", "1", "--out", tmp / "t"},
                                        tmp.path);
  ASSERT_EQ(teacher.code, 0) << teacher.err;
  auto labels = cli_testing::run_kdlab(with({"train", "--out", tmp / "labels"}), tmp.path);
  ASSERT_EQ(labels.code, 0) << labels.err;
  auto d = cli_testing::run_kdlab(
      with({"distill", "--teacher", tmp / "t/model.safetensors", "--independent", "--out",
            tmp / "d"}),
      tmp.path);
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_NE(d.out.find("\nindependent student test accuracy"), std::string::npos) << d.out;
  const apps::LoadedModel independent = apps::load_model(tmp / "d/independent.safetensors");
  const apps::LoadedModel trained = apps::load_model(tmp / "labels/model.safetensors");
  EXPECT_EQ(values_of(*independent.model), values_of(*trained.model))
      << "same seed, images, epochs and optimizer on the labels: the same weights";
  const apps::LoadedModel student = apps::load_model(tmp / "d/student.safetensors");
  EXPECT_NE(values_of(*student.model), values_of(*trained.model));
  const std::string summary = cli_testing::read_file(tmp / "d/summary.json");
  EXPECT_NE(summary.find("\"independent\""), std::string::npos) << summary;
  EXPECT_NE(summary.find("kl_teacher_student"), std::string::npos) << summary;
  auto bad = cli_testing::run_kdlab(
      {"distill", "--teacher", tmp / "t/model.safetensors", "--data-dir", tmp.path,
       "--independent", "--distill-dataset", "mnist", "--out", tmp / "bad"},
      tmp.path);
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("--independent with --distill-dataset"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace kd
