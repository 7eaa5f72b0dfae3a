// Bit-exact resume through the real binary: a run killed with SIGKILL at an exact step
// ($KDLAB_KILL_AFTER_STEP) and continued with `--resume RUN_DIR` must end with the same bytes in
// its final checkpoint, the same metrics.csv rows (but the wall-clock column) and the same
// summary as the same run left alone. Also: the optimizer state round trip under it, and the
// refusals of a resume that cannot be honoured.
#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <map>
#include <memory>

#include "apps/loop_state.h"
#include "apps/model_io.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "models/registry.h"
#include "tests/cli_testing.h"
#include "tests/cuda_testing.h"

namespace kd {
namespace {

using namespace cli_testing;

// metrics.csv without its last column (seconds: wall-clock time, never repeatable).
std::string metrics_without_seconds(const std::string& run_dir) {
  std::string out;
  for (const std::string& line : lines_of(read_file(run_dir + "/metrics.csv"))) {
    EXPECT_NE(line.rfind(','), std::string::npos) << line;
    out += line.substr(0, line.rfind(',')) + "\n";
  }
  return out;
}

void expect_same_run(const std::string& expected, const std::string& resumed,
                     const std::vector<std::string>& checkpoints, const std::string& what) {
  for (const std::string& name : checkpoints) {
    const std::string a = read_file(expected + "/" + name), b = read_file(resumed + "/" + name);
    ASSERT_FALSE(a.empty()) << what << ": " << name;
    EXPECT_TRUE(a == b) << what << ": " << name << " differs from the uninterrupted run's";
  }
  // The final loop states: every tensor (model, optimizer, loop) and every counter the same;
  // only the seconds spent differ.
  for (const std::string& name : entries_of(expected)) {
    if (name.rfind("last", 0) != 0) continue;
    Checkpoint a = load_checkpoint(expected + "/" + name),
               b = load_checkpoint(resumed + "/" + name);
    a.metadata.erase("seconds"), b.metadata.erase("seconds");
    EXPECT_EQ(a.metadata, b.metadata) << what << ": " << name;
    ASSERT_EQ(a.tensors.size(), b.tensors.size()) << what << ": " << name;
    for (const auto& kv : a.tensors) {
      const Tensor& other = b.tensors[kv.first];
      ASSERT_TRUE(other.defined() && other.nbytes() == kv.second.nbytes()) << kv.first;
      EXPECT_EQ(0, std::memcmp(kv.second.raw(), other.raw(), kv.second.nbytes()))
          << what << ": " << name << " tensor " << kv.first;
    }
  }
  EXPECT_EQ(metrics_without_seconds(expected), metrics_without_seconds(resumed)) << what;
  EXPECT_EQ(read_file(expected + "/summary.json"), read_file(resumed + "/summary.json")) << what;
  for (const std::string& name : entries_of(resumed))
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << what << ": temporary file left: " << name;
}

// An untrained LeNet-5 teacher, as train would write it.
std::string write_lenet_checkpoint(const TempDir& tmp) {
  auto model = models::make_model("lenet5", 10, 1, 0);
  const std::string path = tmp / "teacher.safetensors";
  apps::save_model(path, *model, {0.5f}, {0.5f}, {{"role", "teacher"}});
  return path;
}

std::vector<std::string> with(std::vector<std::string> args, std::vector<std::string> more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// 64 images in batches of 8: 8 steps per epoch, 24 in all; a state file every 3 steps.
// Kill points: before the first state (starts over), right after an epoch's state, and mid-epoch
// two steps after a state (the resumed run repeats them).
TEST(Resume, TrainKilledAnywhereEndsWithTheSameBytes) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  const std::vector<std::string> args = {
      "train", "--data-dir",   data, "--epochs",           "3", "--batch",    "8", "--threads",
      "2",     "--eval-every", "1",  "--checkpoint-every", "3", "--crop-pad", "2", "--hflip"};
  RunResult full = run_kdlab(with(args, {"--out", tmp / "full"}), tmp.path);
  ASSERT_EQ(full.code, 0) << full.err;
  for (int kill_at : {2, 8, 14}) {
    const std::string out = tmp / ("cut" + std::to_string(kill_at));
    RunResult cut = run_kdlab(with(args, {"--out", out}), tmp.path,
                              {{"KDLAB_KILL_AFTER_STEP", std::to_string(kill_at)}});
    ASSERT_EQ(cut.code, 128 + SIGKILL) << "kill at " << kill_at << ": " << cut.err;
    EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
    EXPECT_EQ(fs::exists(out + "/last.safetensors"), kill_at >= 3) << kill_at;
    if (kill_at >= 3) {
      EXPECT_EQ(apps::finished_epochs(out + "/last.safetensors"), kill_at / 8) << kill_at;
    }
    // From another working directory: the run's own folder and relative paths come back.
    fs::create_directories(tmp / "elsewhere");
    RunResult resumed = run_kdlab({"train", "--resume", out}, tmp / "elsewhere");
    ASSERT_EQ(resumed.code, 0) << "kill at " << kill_at << ": " << resumed.err;
    expect_same_run(tmp / "full", out, {"model.safetensors"},
                    "train killed after step " + std::to_string(kill_at));
  }
}

// Adam, MixUp, an interpolated start with BN re-estimation and the independent student (a second
// loop with its own state file), killed inside the first loop and inside the second.
TEST(Resume, DistillKilledInEitherLoopEndsWithTheSameBytes) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  RunResult teacher =
      run_kdlab({"train", "--data-dir", data, "--model", "preresnet8", "--pad-to", "32", "--epochs",
                 "1", "--batch", "16", "--threads", "2", "--out", tmp / "teacher"},
                tmp.path);
  ASSERT_EQ(teacher.code, 0) << teacher.err;
  // Relative paths, resolved against the recorded working directory on resume.
  const std::vector<std::string> args = {"distill",
                                         "--teacher",
                                         "teacher/model.safetensors",
                                         "--data-dir",
                                         "synthetic",
                                         "--pad-to",
                                         "32",
                                         "--epochs",
                                         "2",
                                         "--batch",
                                         "16",
                                         "--threads",
                                         "2",
                                         "--optimizer",
                                         "adam",
                                         "--lr",
                                         "0.001",
                                         "--mixup",
                                         "1",
                                         "--independent",
                                         "--checkpoint-every",
                                         "3",
                                         "--init-from",
                                         "teacher/model.safetensors",
                                         "--init-interpolate",
                                         "0.5"};
  RunResult full = run_kdlab(with(args, {"--out", "full"}), tmp.path);
  ASSERT_EQ(full.code, 0) << full.err;
  for (int kill_at : {5, 12}) {  // 8 steps per loop: step 5 of the student, 4 of the independent
    const std::string out = "cut" + std::to_string(kill_at);
    RunResult cut = run_kdlab(with(args, {"--out", out}), tmp.path,
                              {{"KDLAB_KILL_AFTER_STEP", std::to_string(kill_at)}});
    ASSERT_EQ(cut.code, 128 + SIGKILL) << cut.err;
    EXPECT_EQ(fs::exists(tmp / (out + "/student.safetensors")), kill_at > 8);
    EXPECT_EQ(fs::exists(tmp / (out + "/last-independent.safetensors")), kill_at > 8 + 3);
    RunResult resumed = run_kdlab({"distill", "--resume", out}, tmp.path);
    ASSERT_EQ(resumed.code, 0) << resumed.err;
    expect_same_run(tmp / "full", tmp / out, {"student.safetensors", "independent.safetensors"},
                    "distill killed after step " + std::to_string(kill_at));
  }
}

// The device path: state read back from the GPU, loaded onto it, the unfinished epoch's losses
// restored into the device loss log. Our kernels sum in a fixed order, so on the emulated GPU
// (and on a GPU with --deterministic) the resumed run is the same bits too.
TEST(ResumeCuda, DeviceRunKilledAndResumedEndsWithTheSameBytes) {
  KD_REQUIRE_CUDA();
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  const std::vector<std::string> args = {
      "distill",  "--teacher", write_lenet_checkpoint(tmp), "--data-dir", data,
      "--device", "cuda",      "--deterministic",           "--epochs",   "2",
      "--batch",  "16",        "--checkpoint-every",        "3",          "--mixup",
      "1"};
  RunResult full = run_kdlab(with(args, {"--out", tmp / "full"}), tmp.path);
  ASSERT_EQ(full.code, 0) << full.err;
  const std::string out = tmp / "cut";
  RunResult cut = run_kdlab(with(args, {"--out", out}), tmp.path, {{"KDLAB_KILL_AFTER_STEP", "7"}});
  ASSERT_EQ(cut.code, 128 + SIGKILL) << cut.err;
  RunResult resumed = run_kdlab({"distill", "--resume", out}, tmp.path);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  expect_same_run(tmp / "full", out, {"student.safetensors"},
                  "device distill killed at step 7 (state at 6, mid-epoch)");
}

TEST(Resume, RefusalsNameTheRunAndChangeNothing) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  const std::string out = tmp / "run";
  RunResult cut = run_kdlab({"train", "--data-dir", data, "--epochs", "2", "--batch", "16",
                             "--threads", "1", "--out", out},
                            tmp.path, {{"KDLAB_KILL_AFTER_STEP", "5"}});
  ASSERT_EQ(cut.code, 128 + SIGKILL) << cut.err;
  const std::string state = read_file(out + "/last.safetensors");
  ASSERT_FALSE(state.empty());

  expect_error(run_kdlab({"train", "--resume", out, "--epochs", "3"}, tmp.path),
               {"--resume", "no other flags"});
  expect_error(run_kdlab({"train", "--resume", tmp / "nowhere"}, tmp.path),
               {"--resume", "nowhere", "config.json"});
  expect_error(run_kdlab({"distill", "--resume", out}, tmp.path), {"'train' run", "distill"});

  // A state file cut short is named, and stays as it was.
  write_file(out + "/last.safetensors", state.substr(0, state.size() / 2));
  expect_error(run_kdlab({"train", "--resume", out}, tmp.path), {"last.safetensors"});
  // One of another loop length: config.json changed to 3 epochs under it.
  write_file(out + "/last.safetensors", state);
  std::string config = read_file(out + "/config.json");
  const size_t at = config.find("\"2\"");
  ASSERT_NE(at, std::string::npos) << config;
  write_file(out + "/config.json", config.replace(at, 3, "\"3\""));
  expect_error(run_kdlab({"train", "--resume", out}, tmp.path),
               {"last.safetensors", "2 epochs", "3"});
  EXPECT_EQ(read_file(out + "/last.safetensors"), state);
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
}

// The optimizer's state alone: two optimizers, one restarted from the other's state(), take
// bitwise the same next steps (SGD's first-step rule and Adam's bias correction included).
TEST(Resume, OptimizerStateRoundTripContinuesBitwise) {
  for (const char* name : {"sgd", "adam"}) {
    auto a = models::make_model("lenet5", 10, 1, 3);
    auto b = models::make_model("lenet5", 10, 1, 3);
    auto make = [&](models::Classifier& m) -> std::unique_ptr<Optimizer> {
      if (std::string(name) == "sgd") {
        SgdParams h;
        h.lr = 0.1, h.momentum = 0.9, h.nesterov = true, h.weight_decay = 1e-4;
        return std::make_unique<Sgd>(m.parameters(), h);
      }
      AdamParams h;
      h.lr = 1e-3, h.weight_decay = 1e-4;
      return std::make_unique<Adam>(m.parameters(), h);
    };
    auto opt_a = make(*a);
    auto opt_b = make(*b);
    Tensor x = Tensor::full({4, 1, 28, 28}, 0.25);
    Tensor y = Tensor::from_vector<int32_t>({4}, {1, 2, 3, 4});
    auto step = [&](models::Classifier& m, Optimizer& opt) {
      opt.zero_grad();
      backward(ops::cross_entropy(m.forward(x), y));
      opt.step();
    };
    for (int i = 0; i < 3; ++i) step(*a, *opt_a);
    std::map<std::string, Tensor> model_state, opt_state;
    for (auto& kv : a->state_dict()) model_state[kv.first] = kv.second.clone();
    for (auto& kv : opt_a->state()) opt_state[kv.first] = kv.second.clone();
    b->load_state_dict(model_state);
    opt_b->load_state(opt_state, "test");
    EXPECT_EQ(opt_b->steps_taken(), 3) << name;
    for (int i = 0; i < 2; ++i) step(*a, *opt_a), step(*b, *opt_b);
    auto sa = a->state_dict(), sb = b->state_dict();
    for (size_t i = 0; i < sa.size(); ++i)
      EXPECT_EQ(0, std::memcmp(sa[i].second.raw(), sb[i].second.raw(), sa[i].second.nbytes()))
          << name << ": " << sa[i].first;
    opt_state.erase("steps");
    EXPECT_THROW(opt_b->load_state(opt_state, "test"), InputError) << name;
  }
}

}  // namespace
}  // namespace kd
