// The GPU code paths of the engine and the loops, run on the emulated CUDA device: our CUDA
// kernels from their own source on the grid emulator (kernels/cuda_grid/), cuDNN forwarded to the
// CPU twins (kernels/cuda_emu/); this file only builds into kdlab_emu_tests. What is exact on a
// GPU is compared exactly: the device batches (augmentation and MixUp share integer maths with
// the CPU), example counts, BatchNorm's num_batches_tracked. Losses, statistics and weights come
// from kernels that sum in another order than the CPU's, so they are compared within float
// rounding (relative 1e-3 after two epochs; a plumbing fault such as a stale loss read back, a
// missed optimizer pack or a wrong batch moves them by far more). Guard mode is on for the whole
// binary: device memory is unreadable outside emulated kernels and copies, so a host dereference
// of a device pointer (a crash on a real GPU) kills the test with a backtrace.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "apps/experiment.h"
#include "apps/model_io.h"
#include "data/device_batch.h"
#include "engine/device.h"
#include "engine/tensor.h"
#include "kernels/metrics.h"
#include "base/philox.h"
#include "models/classifier.h"
#include "models/ensemble.h"
#include "tests/cuda_testing.h"

namespace kd {
namespace {

struct GuardEverything : ::testing::Environment {
  void SetUp() override {
    setenv("KDLAB_PROGRESS", "off", 0);
    // Only when the tests run on the emulated GPU: other runs must not open a GPU backend here.
    const char* backend = std::getenv("KDLAB_GPU_BACKEND");
    if (!backend || std::string(backend) != "grid" || !cuda_testing::emulated_device()) return;
    const char* guard = std::getenv("KDLAB_EMU_GUARD");  // "0" turns the guard off
    cuda_testing::gpu().emulator->set_guard(!guard || std::string(guard) != "0");
  }
};
::testing::Environment* const g_guard = ::testing::AddGlobalTestEnvironment(new GuardEverything);

// n random images (uint8 from Philox), labels over 10 classes.
data::Dataset synthetic(int n, int c, int hw, uint64_t seed) {
  data::Dataset ds;
  ds.n = n, ds.c = c, ds.h = hw, ds.w = hw, ds.num_classes = 10, ds.name = "synthetic";
  ds.images.resize(size_t(ds.image_size()) * n);
  for (size_t i = 0; i < ds.images.size(); ++i)
    ds.images[i] = uint8_t(philox4x32(seed, kStreamTest, i).v[0] & 0xFF);
  for (int i = 0; i < n; ++i) ds.labels.push_back(int32_t(philox_below(seed + 1, kStreamTest, i, 10)));
  ds.validate();
  return ds;
}

data::AugmentSpec every_augmentation(bool colour) {
  data::AugmentSpec a;
  a.crop_pad = 2, a.hflip = true, a.vflip = true, a.rotation_degrees = 15;
  a.brightness = 0.3, a.contrast = 0.4, a.noise_p = 0.1;
  if (colour) a.saturation = 0.5, a.hue = 0.1;
  return a;
}

apps::LoopConfig loop_config(Device device, int epochs, int batch) {
  apps::LoopConfig cfg;
  cfg.epochs = epochs, cfg.batch = batch, cfg.seed = 7, cfg.eval_every = 1, cfg.device = device;
  cfg.optim.lr = 0.05, cfg.optim.momentum = 0.9, cfg.optim.weight_decay = 5e-4;
  return cfg;
}

bool near(double got, double want, double rel) {
  return std::fabs(got - want) <= rel * std::max(1.0, std::fabs(want));
}

// Two evaluations of nearly the same logits: a near-tie may flip one example's argmax.
void expect_close_stats(const ClassifierStats& gpu, const ClassifierStats& cpu,
                        const std::string& what) {
  EXPECT_EQ(gpu.count, cpu.count) << what;
  EXPECT_LE(std::abs(gpu.correct - cpu.correct), 1) << what;
  EXPECT_LE(std::abs(gpu.agree - cpu.agree), 1) << what;
  EXPECT_TRUE(near(gpu.nll_sum, cpu.nll_sum, 1e-3))
      << what << ": nll " << gpu.nll_sum << " vs " << cpu.nll_sum;
  EXPECT_TRUE(near(gpu.kl_sum, cpu.kl_sum, 1e-3))
      << what << ": kl " << gpu.kl_sum << " vs " << cpu.kl_sum;
  double conf_gpu = 0, conf_cpu = 0;
  int64_t binned_gpu = 0, binned_cpu = 0;
  for (int b = 0; b < kEceBins; ++b) {
    conf_gpu += gpu.bin_conf_sum[b], conf_cpu += cpu.bin_conf_sum[b];
    binned_gpu += gpu.bin_count[b], binned_cpu += cpu.bin_count[b];
  }
  EXPECT_EQ(binned_gpu, binned_cpu) << what;
  EXPECT_TRUE(near(conf_gpu, conf_cpu, 1e-3)) << what << ": confidence " << conf_gpu << " vs "
                                              << conf_cpu;
}

// Every state tensor (parameters and buffers) within `rel` of the CPU's (integer tensors equal);
// `device` is copied to the host. rel = 0 asks for equal bytes.
void expect_close_state(const nn::Module& device, const nn::Module& cpu, const std::string& what,
                        double rel) {
  nn::NamedTensors a = device.state_dict(), b = cpu.state_dict();
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first) << what;
    Tensor host = a[i].second.to(Device::cpu());
    ASSERT_EQ(host.nbytes(), b[i].second.nbytes()) << what << " " << a[i].first;
    if (rel == 0 || host.dtype() != DType::F32) {
      EXPECT_EQ(std::memcmp(host.raw(), b[i].second.raw(), host.nbytes()), 0)
          << what << ": " << a[i].first << " differs";
      continue;
    }
    const std::vector<float> got = host.to_vector<float>(), want = b[i].second.to_vector<float>();
    int64_t off = 0;
    for (size_t k = 0; k < got.size(); ++k) off += !near(got[k], want[k], rel);
    EXPECT_EQ(off, 0) << what << ": " << off << " of " << got.size() << " values of "
                      << a[i].first << " differ by more than " << rel;
  }
}

struct LoopResult {
  std::vector<apps::EpochRecord> epochs;
  std::shared_ptr<models::Classifier> model;
};

void expect_same_loops(const LoopResult& gpu, const LoopResult& cpu, bool with_teacher) {
  ASSERT_EQ(gpu.epochs.size(), cpu.epochs.size());
  for (size_t e = 0; e < cpu.epochs.size(); ++e) {
    const std::string what = "epoch " + std::to_string(e + 1);
    EXPECT_TRUE(near(gpu.epochs[e].train_loss, cpu.epochs[e].train_loss, 1e-3))
        << what << ": train loss on the device " << gpu.epochs[e].train_loss << ", CPU "
        << cpu.epochs[e].train_loss;
    EXPECT_TRUE(gpu.epochs[e].evaluated && cpu.epochs[e].evaluated) << what;
    expect_close_stats(gpu.epochs[e].test, cpu.epochs[e].test, what);
    EXPECT_EQ(cpu.epochs[e].test.count, 100) << what;
    if (with_teacher) {
      EXPECT_GT(cpu.epochs[e].test.kl_sum, 0.0) << what;
    }
  }
  // A loop that learned nothing would match trivially.
  EXPECT_NE(cpu.epochs.front().train_loss, cpu.epochs.back().train_loss);
  expect_close_state(*gpu.model, *cpu.model, "trained weights", 1e-3);
}

LoopResult supervised(Device device) {
  const data::Dataset train = synthetic(300, 1, 28, 1), test = synthetic(100, 1, 28, 2);
  LoopResult r;
  r.model = models::make_model("lenet5", 10, 1, /*seed=*/3);
  r.model->to(device);
  // Batch 5: 60 steps per epoch, so the device's loss log is read at step 50 and at the end.
  apps::LoopConfig cfg = loop_config(device, 2, 5);
  cfg.augment = every_augmentation(false);
  apps::train_supervised(*r.model, train, &test, data::Normalization::unitcube(1), cfg, "emu",
                         [&](const apps::EpochRecord& rec) { r.epochs.push_back(rec); });
  return r;
}

TEST(EmulatedGpuLoops, TrainSupervisedMatchesCpu) {
  KD_REQUIRE_EMULATED_GPU();
  cuda_testing::WholeModelSchedule schedule;
  expect_same_loops(supervised(Device::cuda()), supervised(Device::cpu()), false);
}

models::Ensemble make_teacher(Device device, int c) {
  std::vector<std::shared_ptr<models::Classifier>> members;
  for (int m = 0; m < 3; ++m) {
    members.push_back(models::make_model("lenet5", 10, c, 20 + m));
    members.back()->to(device);
  }
  return models::Ensemble(members);
}

LoopResult distilled(Device device) {
  const data::Dataset train = synthetic(300, 1, 28, 3), test = synthetic(100, 1, 28, 4);
  models::Ensemble teacher = make_teacher(device, 1);
  LoopResult r;
  r.model = models::make_model("lenet5", 10, 1, /*seed=*/5);
  r.model->to(device);
  apps::LoopConfig cfg = loop_config(device, 2, 5);
  cfg.augment = every_augmentation(false);
  cfg.mixup_alpha = 0.4;
  apps::DistillConfig dcfg;
  dcfg.tau = 4.0, dcfg.alpha = 0.25;  // the hard-label term too: scale and add on the device
  apps::distill(*r.model, teacher, train, &test, data::Normalization::unitcube(1), cfg, dcfg, "emu",
                [&](const apps::EpochRecord& rec) { r.epochs.push_back(rec); });
  return r;
}

TEST(EmulatedGpuLoops, DistillWithMixupFromEnsembleMatchesCpu) {
  KD_REQUIRE_EMULATED_GPU();
  cuda_testing::WholeModelSchedule schedule;
  expect_same_loops(distilled(Device::cuda()), distilled(Device::cpu()), true);
}

// On the device the cached teacher logits (laid out per epoch, served by row copies) must give the
// same bits as the ensemble run on every batch: the cache is plumbing, not maths.
TEST(EmulatedGpuLoops, DistillWithLogitCacheIsBitwiseTheRunWithout) {
  KD_REQUIRE_EMULATED_GPU();
  cuda_testing::WholeModelSchedule schedule;
  const data::Dataset train = synthetic(50, 1, 28, 3), test = synthetic(30, 1, 28, 4);
  models::Ensemble teacher = make_teacher(Device::cuda(), 1);
  LoopResult runs[2];
  for (int cached = 0; cached < 2; ++cached) {
    LoopResult& r = runs[cached];
    r.model = models::make_model("lenet5", 10, 1, /*seed=*/5);
    r.model->to(Device::cuda());
    apps::LoopConfig cfg = loop_config(Device::cuda(), 2, 16);  // a partial last batch of 2
    cfg.logit_cache = cached == 1;
    apps::DistillConfig dcfg;
    apps::distill(*r.model, teacher, train, &test, data::Normalization::unitcube(1), cfg, dcfg,
                  "emu", [&](const apps::EpochRecord& rec) { r.epochs.push_back(rec); });
  }
  ASSERT_EQ(runs[0].epochs.size(), 2u);
  for (size_t e = 0; e < 2; ++e) {
    EXPECT_EQ(runs[0].epochs[e].train_loss, runs[1].epochs[e].train_loss) << e;
    EXPECT_EQ(runs[0].epochs[e].test.kl_sum, runs[1].epochs[e].test.kl_sum) << e;
    EXPECT_EQ(runs[0].epochs[e].test.agree, runs[1].epochs[e].test.agree) << e;
  }
  runs[0].model->to(Device::cpu());
  expect_close_state(*runs[1].model, *runs[0].model, "cached vs uncached", /*rel=*/0);
}

// 1100 examples: a full batch of 1000 and a partial one, with and without a teacher.
TEST(EmulatedGpuLoops, EvaluateModelMatchesCpu) {
  KD_REQUIRE_EMULATED_GPU();
  cuda_testing::WholeModelSchedule schedule;
  const data::Dataset ds = synthetic(1100, 1, 28, 6);
  const data::Normalization norm = data::Normalization::unitcube(1);
  ClassifierStats got[2], want[2];
  for (int with_teacher = 0; with_teacher < 2; ++with_teacher) {
    for (Device device : {Device::cuda(), Device::cpu()}) {
      auto model = models::make_model("lenet5", 10, 1, 8);
      model->to(device);
      models::Ensemble teacher = make_teacher(device, 1);
      ClassifierStats s =
          apps::evaluate_model(*model, with_teacher ? &teacher : nullptr, ds, norm, device);
      (device.is_cuda() ? got : want)[with_teacher] = s;
    }
    expect_close_stats(got[with_teacher], want[with_teacher],
                      with_teacher ? "with teacher" : "without teacher");
    EXPECT_EQ(want[with_teacher].count, 1100);
  }
  EXPECT_GT(want[1].agree, 0);
}

// The device keeps the losses and reads them back late; a diverged run must still be stopped,
// in the epoch where it diverged.
TEST(EmulatedGpuLoops, DivergenceIsCaughtOnTheDevicePath) {
  KD_REQUIRE_EMULATED_GPU();
  cuda_testing::WholeModelSchedule schedule;
  const data::Dataset train = synthetic(120, 1, 28, 9);
  for (Device device : {Device::cuda(), Device::cpu()}) {
    auto model = models::make_model("lenet5", 10, 1, 3);
    model->to(device);
    apps::LoopConfig cfg = loop_config(device, 2, 4);
    cfg.optim.lr = 1e30;
    try {
      apps::train_supervised(*model, train, nullptr, data::Normalization::unitcube(1), cfg, "emu",
                             nullptr);
      ADD_FAILURE() << device.str() << ": a run with lr 1e30 finished";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("loss became"), std::string::npos) << device.str() << ": " << msg;
      EXPECT_NE(msg.find("at epoch 1"), std::string::npos) << device.str() << ": " << msg;
    }
  }
}

// PreResNet-8 on colour images (saturation and hue jitter too): BatchNorm's running statistics
// and its device-side num_batches_tracked counter match the CPU's, and a checkpoint saved from
// the device model loads back with the same bytes.
TEST(EmulatedGpuLoops, BatchNormCounterAndCheckpointOfDeviceModel) {
  KD_REQUIRE_EMULATED_GPU();
  cuda_testing::WholeModelSchedule schedule;
  const data::Dataset train = synthetic(48, 3, 32, 10), test = synthetic(100, 3, 32, 11);
  LoopResult r[2];
  for (int i = 0; i < 2; ++i) {
    const Device device = i == 0 ? Device::cuda() : Device::cpu();
    r[i].model = models::make_model("preresnet8", 10, 3, 12);
    r[i].model->to(device);
    apps::LoopConfig cfg = loop_config(device, 2, 16);
    cfg.augment = every_augmentation(true);
    apps::train_supervised(*r[i].model, train, &test, data::Normalization::unitcube(3), cfg, "emu",
                           [&](const apps::EpochRecord& rec) { r[i].epochs.push_back(rec); });
  }
  expect_same_loops(r[0], r[1], false);
  int counters = 0;
  for (const auto& [name, t] : r[0].model->state_dict()) {
    if (name.find("num_batches_tracked") == std::string::npos) continue;
    ++counters;
    EXPECT_EQ(t.item(), 6.0) << name << ": 2 epochs of 3 steps";
  }
  EXPECT_GT(counters, 0);

  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("kdlab-emu-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "model.safetensors").string();
  apps::save_model(path, *r[0].model, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f});
  apps::LoadedModel loaded = apps::load_model(path);
  fs::remove_all(dir);
  expect_close_state(*r[0].model, *loaded.model, "checkpoint of the device model", 0);
}

// Adam's multi-tensor update and GroupNorm (preresnet8-ln) on the device, one epoch.
TEST(EmulatedGpuLoops, AdamWithGroupNormMatchesCpu) {
  KD_REQUIRE_EMULATED_GPU();
  cuda_testing::WholeModelSchedule schedule;
  const data::Dataset train = synthetic(40, 3, 32, 13), test = synthetic(100, 3, 32, 14);
  LoopResult r[2];
  for (int i = 0; i < 2; ++i) {
    const Device device = i == 0 ? Device::cuda() : Device::cpu();
    r[i].model = models::make_model("preresnet8-ln", 10, 3, 15);
    r[i].model->to(device);
    apps::LoopConfig cfg = loop_config(device, 2, 8);
    cfg.optim.name = "adam", cfg.optim.lr = 1e-3;
    apps::train_supervised(*r[i].model, train, &test, data::Normalization::unitcube(3), cfg, "emu",
                           [&](const apps::EpochRecord& rec) { r[i].epochs.push_back(rec); });
  }
  expect_same_loops(r[0], r[1], false);
}

// The guard itself: reading device memory on the host outside an emulated kernel dies, naming
// the cause; inside one (a copy) it works.
TEST(EmulatedGuardDeathTest, HostReadOfDeviceMemoryDies) {
  KD_REQUIRE_EMULATED_GPU();
  cuda_testing::WholeModelSchedule schedule;
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor t = Tensor::full({16}, 2.0).to(Device::cuda());
  if (!cuda_testing::gpu().emulator->is_guarded_device_pointer(t.raw()))
    GTEST_SKIP() << "guard mode is off (KDLAB_EMU_GUARD=0, or no address space for the arena)";
  EXPECT_EQ(t.to_vector<float>()[3], 2.0f);  // through a copy
  const float* p = t.data<float>();
  EXPECT_DEATH(
      {
        volatile float v = p[3];
        (void)v;
      },
      "host code touched device memory");
}

}  // namespace
}  // namespace kd
