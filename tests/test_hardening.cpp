// Hardening (issue 11), through the binary where a user meets it: flag values that would wrap or
// silently mean a default, checkpoints with NaN or infinite tensors, a model and data that
// disagree (both named), a log line that cannot be written, and out-of-memory conditions inside
// parallel kernels, which must surface as exceptions rather than abort the process.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <limits>
#include <new>

#include "apps/model_io.h"
#include "apps/run_dir.h"
#include "cli_testing.h"
#include "data/augment.h"
#include "kernels/conv2d.h"
#include "models/registry.h"

namespace kd {
namespace {

using namespace cli_testing;

TEST(Hardening, FlagValuesThatWouldWrapOrMeanTheDefaultAreRefused) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  const std::vector<std::string> base = {"train", "--data-dir", data, "--epochs", "1"};
  auto train = [&](std::vector<std::string> extra, bool with_out = true) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    if (with_out) args.insert(args.end(), {"--out", tmp / "run"});
    return run_kdlab(args, tmp.path);
  };
  expect_error(train({"--seed", "-1"}), {"--seed", "-1"});
  expect_error(train({"--split", "D0", "--split-seed", "-5"}), {"--split-seed"});
  expect_error(train({"--out", ""}, false), {"--out", "empty"});
  expect_error(train({"--eta-min", "inf"}), {"--eta-min", "inf"});
  expect_error(train({"--eta-min", "nan"}), {"--eta-min"});
  expect_error(run_kdlab({"train", "--data-dir", "", "--out", tmp / "run"}, tmp.path),
               {"--data-dir", "empty"});
  expect_error(run_kdlab({"repro", "fmnist-study", "--out", ""}, tmp.path), {"--out", "empty"});
  EXPECT_FALSE(fs::exists(tmp / "run"));
  EXPECT_FALSE(fs::exists(tmp / "runs")) << "an empty --out must not mean the default folder";
}

// A LeNet-5 checkpoint with one weight replaced by `bad`.
std::string save_lenet_with(const TempDir& tmp, const std::string& name, float bad) {
  auto model = models::make_model("lenet5", 10, 1, 0);
  auto state = model->state_dict();
  Tensor w = state.front().second;
  static_cast<float*>(w.raw())[3] = bad;
  apps::save_model(tmp / name, *model, {0.5f}, {0.5f}, {{"role", "teacher"}});
  return tmp / name;
}

TEST(Hardening, NonFiniteWeightsAreRefusedNamingTheTensorUnlessAllowed) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  const std::string nan = save_lenet_with(tmp, "nan.safetensors", std::nanf(""));
  const std::string inf = save_lenet_with(tmp, "inf.safetensors",
                                          std::numeric_limits<float>::infinity());
  const std::string first = models::make_model("lenet5", 10, 1, 0)->state_dict().front().first;
  expect_error(run_kdlab({"eval", "--data-dir", data, "--model", nan}, tmp.path),
               {nan, "'" + first + "'", "nan", "index 3", "--allow-nonfinite"});
  expect_error(run_kdlab({"eval", "--data-dir", data, "--model", save_lenet_with(tmp, "ok.safetensors", 0.1f),
                          "--teacher", inf}, tmp.path),
               {inf, "'" + first + "'", "inf"});
  expect_error(run_kdlab({"distill", "--data-dir", data, "--teacher", nan, "--out", tmp / "run"},
                         tmp.path),
               {nan, "'" + first + "'", "--allow-nonfinite"});
  EXPECT_FALSE(fs::exists(tmp / "run"));
  // Allowed, eval evaluates it: NaN logits give a NaN (null) NLL, reported as such.
  RunResult allowed = run_kdlab({"eval", "--data-dir", data, "--model", nan, "--allow-nonfinite"},
                                tmp.path);
  EXPECT_EQ(allowed.code, 0) << allowed.err;
  EXPECT_NE(allowed.out.find("\"count\": 32"), std::string::npos) << allowed.out;
}

TEST(Hardening, ModelsAndDataThatDisagreeAreRefusedNamingBoth) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  const std::string teacher = save_lenet_with(tmp, "t.safetensors", 0.1f);
  auto hundred = models::make_model("lenet5", 100, 1, 0);
  apps::save_model(tmp / "hundred.safetensors", *hundred, {0.5f}, {0.5f});
  const std::string folder = "--dataset fmnist (" + data + ")";
  expect_error(run_kdlab({"eval", "--data-dir", data, "--model", teacher, "--pad-to", "32"}, tmp.path),
               {"--model " + teacher, "1x28x28", folder, "1x32x32"});
  expect_error(run_kdlab({"eval", "--data-dir", data, "--model", tmp / "hundred.safetensors"}, tmp.path),
               {"--model " + tmp / "hundred.safetensors", "100 classes", folder, "10 classes"});
  expect_error(run_kdlab({"distill", "--data-dir", data, "--teacher", teacher, "--pad-to", "32",
                          "--student-model", "preresnet8", "--out", tmp / "run"}, tmp.path),
               {"--teacher " + teacher, "1x28x28", folder, "1x32x32"});
  EXPECT_FALSE(fs::exists(tmp / "run"));
}

TEST(Hardening, ALogLineThatCannotBeWrittenSaysWhyAndLeavesWholeLines) {
  TempDir tmp;
  apps::RunDir run(tmp / "run", /*allow_existing=*/false);
  run.log("first line");
  const std::string before = read_file(tmp / "run/log.txt");
  ASSERT_NE(before.find("first line\n"), std::string::npos);
  // A full disk, as /dev/full is: the write fails with ENOSPC.
  fs::remove(tmp / "run/log.txt");
  fs::create_symlink("/dev/full", tmp / "run/log.txt");
  try {
    run.log("second line");
    ADD_FAILURE() << "a failed log write was not reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("log.txt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos) << e.what();
  }
}

TEST(Hardening, AFullDiskEndsTheRunWithOneLineAndLeavesOnlyWholeFiles) {
  TempDir tmp;
  const std::string data = write_synthetic_fmnist(tmp / "synthetic");
  // 16 KB per file: config.json, metrics.csv and log.txt fit, LeNet-5's checkpoints (250 KB) not.
  Spawned s = spawn_kdlab({"train", "--data-dir", data, "--epochs", "1", "--out", tmp / "run"},
                          tmp.path, {}, 0, 16 << 10);
  RunResult r = wait_kdlab(s);
  expect_error(r, {"cannot write", tmp / "run/last.safetensors", "File too large"}, /*code=*/1);
  EXPECT_FALSE(fs::exists(tmp / "run/model.safetensors"));
  EXPECT_FALSE(fs::exists(tmp / "run/summary.json")) << "a failed run must not look finished";
  for (const auto& entry : fs::directory_iterator(tmp / "run"))
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos)
        << "temp file left: " << entry.path();
}

// Limits this process's address space to `extra_bytes` beyond what it uses now.
void limit_address_space(size_t extra_bytes) {
  size_t used = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    unsigned long pages = 0;
    if (std::fscanf(f, "%lu", &pages) == 1) used = pages * size_t(sysconf(_SC_PAGESIZE));
    std::fclose(f);
  }
  rlimit limit{used + extra_bytes, used + extra_bytes};
  ASSERT_EQ(setrlimit(RLIMIT_AS, &limit), 0);
}

// These run in a child process (below): an address-space limit and libgomp, which is not
// fork-safe, must not touch the test runner itself. Disabled: only the child runs them.
TEST(HardeningChild, DISABLED_ConvolutionWorkspaceOutOfMemory) {
  // The input gradient of an 11x11 stride-2 convolution of one 2048x2048 plane: 16 MB of data,
  // but its column workspace (121 x 1024^2 floats, 508 MB) is allocated inside the kernel's
  // parallel region.
  ConvGeom g;
  g.n = 1, g.c = 1, g.h = 2048, g.w = 2048, g.k = 1, g.r = 11, g.s = 11, g.stride = 2, g.pad = 5;
  std::vector<float> dy(size_t(g.p()) * g.q(), 1.0f), w(121, 1.0f), dx(size_t(g.h) * g.w);
  limit_address_space(size_t(256) << 20);
  EXPECT_THROW(cpu::conv2d_backward_data<float>(g, dy.data(), w.data(), dx.data(), true),
               std::bad_alloc);
}

TEST(HardeningChild, DISABLED_BatchScratchOutOfMemory) {
  // The batch builder's per-thread scratch for 30000x30000 RGB images (2.7 GB each).
  uint8_t pixel = 0;
  int32_t label = 0;
  int64_t index = 0;
  float out = 0;
  data::Normalization norm{{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}};
  limit_address_space(size_t(512) << 20);
  EXPECT_THROW(data::make_batch_arrays(&pixel, &label, 1, 3, 30000, 30000, &index, 1, norm, {}, 0,
                                       0, &out, nullptr),
               std::bad_alloc);
}

// The exit status of this test binary running one disabled child test; 128 + signal if killed.
int run_child_test(const std::string& name) {
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string filter = "--gtest_filter=" + name;
    const int null_fd = open("/dev/null", O_WRONLY);
    dup2(null_fd, STDOUT_FILENO);
    execl("/proc/self/exe", "kdlab_tests", filter.c_str(), "--gtest_also_run_disabled_tests",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(Hardening, OutOfMemoryInsideParallelKernelsIsAnExceptionNotAnAbort) {
  // 0: the child caught std::bad_alloc; 1: a failed expectation (nothing was thrown);
  // 134 (SIGABRT): an exception escaped an OpenMP region and ended the process.
  EXPECT_EQ(run_child_test("HardeningChild.DISABLED_ConvolutionWorkspaceOutOfMemory"), 0);
  EXPECT_EQ(run_child_test("HardeningChild.DISABLED_BatchScratchOutOfMemory"), 0);
}

}  // namespace
}  // namespace kd
