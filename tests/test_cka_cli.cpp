// `kdlab eval --cka` end to end on tiny untrained PreResNet-8 checkpoints over a synthetic
// Fashion-MNIST-format folder padded to 32x32: the JSON holds per-teacher, per-stage CKA with the
// batch size used; a model compared with itself scores 1; models without stages, --cka without a
// teacher and a bad --cka-batch are refused in one line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "apps/model_io.h"
#include "models/classifier.h"
#include "tests/cli_testing.h"

namespace kd {
namespace {

using namespace cli_testing;

std::string write_model(const TempDir& tmp, const std::string& arch, uint64_t seed,
                        const std::string& pad_to) {
  auto model = models::make_model(arch, 10, 1, seed);
  const std::string path = tmp / (arch + "-" + std::to_string(seed) + ".safetensors");
  apps::save_model(path, *model, {0.5f}, {0.5f}, {{"pad_to", pad_to}});
  return path;
}

TEST(CkaCli, EvalReportsPerTeacherPerStageCka) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data", 16, 25);
  const std::string student = write_model(tmp, "preresnet8", 1, "32");
  const std::string teacher = write_model(tmp, "preresnet8", 2, "32");
  RunResult r = run_kdlab({"eval", "--model", student, "--teacher", teacher, "--teacher", student,
                           "--cka", "--cka-batch", "10", "--data-dir", data, "--threads", "1"},
                          tmp.path);
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("cka")) << r.out;
  ASSERT_EQ(j["cka"].size(), 2u) << "one entry per teacher";
  for (const auto& entry : j["cka"]) {
    EXPECT_EQ(entry["batch"], 10);
    EXPECT_EQ(entry["batches"], 3);  // 10 + 10 + 5 images
    EXPECT_EQ(entry["skipped_batches"], 0);
    ASSERT_EQ(entry["per_stage"].size(), 3u);
  }
  EXPECT_EQ(j["cka"][0]["teacher"], teacher);
  for (double v : j["cka"][0]["per_stage"]) {
    EXPECT_GT(v, 0.0);
    EXPECT_LT(v, 0.999);
  }
  for (double v : j["cka"][1]["per_stage"]) EXPECT_NEAR(v, 1.0, 1e-9) << "the model itself";
  EXPECT_TRUE(j.contains("agreement")) << "the usual fidelity metrics stay";
}

TEST(CkaCli, RefusesModelsWithoutStagesAndMissingTeachers) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "data", 16, 8);
  const std::string preresnet = write_model(tmp, "preresnet8", 1, "32");
  const std::string lenet = write_model(tmp, "lenet5", 1, "0");
  expect_error(run_kdlab({"eval", "--model", lenet, "--teacher", lenet, "--cka", "--data-dir",
                            data},
                           tmp.path),
                 {"--cka", "lenet5 has no stages"});
  expect_error(run_kdlab({"eval", "--model", preresnet, "--cka", "--data-dir", data}, tmp.path),
                 {"--cka", "--teacher"});
  expect_error(run_kdlab({"eval", "--model", preresnet, "--teacher", preresnet, "--cka",
                            "--cka-batch", "1", "--data-dir", data},
                           tmp.path),
                 {"--cka-batch", "1"});
}

}  // namespace
}  // namespace kd
