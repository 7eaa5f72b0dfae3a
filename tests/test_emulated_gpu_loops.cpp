// The GPU code paths of the engine and the loops, run on the emulated CUDA device
// (kernels/cuda_emu/emu.h; this file only builds into kdlab_emu_tests). Every emulated kernel is
// its CPU twin, so anything that differs between Device::cuda() and Device::cpu() here is the
// plumbing's fault: the device batches (augmentation, MixUp), the losses kept on the device and
// read back every 50 steps, the multi-tensor optimizer, the BatchNorm counter, the ensemble
// staging, evaluation from per-row stats. Hence the comparisons are BITWISE. Guard mode is on
// for the whole binary: device memory is unreadable outside emulated kernels and copies, so a
// host dereference of a device pointer (a crash on a real GPU) kills the test with a backtrace.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#if KDLAB_EMULATED_CUDA
#include "apps/experiment.h"
#include "apps/model_io.h"
#include "data/device_batch.h"
#include "engine/device.h"
#include "engine/tensor.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda_emu/emu.h"
#include "kernels/metrics.h"
#include "kernels/philox.h"
#include "models/classifier.h"
#include "models/ensemble.h"

namespace kd {
namespace {

struct GuardEverything : ::testing::Environment {
  void SetUp() override {
    setenv("KDLAB_PROGRESS", "off", 0);
    const char* guard = std::getenv("KDLAB_EMU_GUARD");  // "0" turns the guard off
    cuda::emu::set_guard(!guard || std::string(guard) != "0");
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

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

void expect_same_stats(const ClassifierStats& gpu, const ClassifierStats& cpu, const std::string& what) {
  EXPECT_EQ(gpu.count, cpu.count) << what;
  EXPECT_EQ(gpu.correct, cpu.correct) << what;
  EXPECT_TRUE(same_bits(gpu.nll_sum, cpu.nll_sum)) << what << ": nll " << gpu.nll_sum << " vs " << cpu.nll_sum;
  for (int b = 0; b < kEceBins; ++b) {
    EXPECT_EQ(gpu.bin_count[b], cpu.bin_count[b]) << what << " bin " << b;
    EXPECT_TRUE(same_bits(gpu.bin_conf_sum[b], cpu.bin_conf_sum[b])) << what << " bin " << b;
    EXPECT_TRUE(same_bits(gpu.bin_correct_sum[b], cpu.bin_correct_sum[b])) << what << " bin " << b;
  }
  EXPECT_EQ(gpu.agree, cpu.agree) << what;
  EXPECT_TRUE(same_bits(gpu.kl_sum, cpu.kl_sum)) << what << ": kl " << gpu.kl_sum << " vs " << cpu.kl_sum;
}

// Every state tensor (parameters and buffers) equal in bytes; `device` is copied to the host.
void expect_same_state(const nn::Module& device, const nn::Module& cpu, const std::string& what) {
  nn::NamedTensors a = device.state_dict(), b = cpu.state_dict();
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first) << what;
    Tensor host = a[i].second.to(Device::cpu());
    ASSERT_EQ(host.nbytes(), b[i].second.nbytes()) << what << " " << a[i].first;
    EXPECT_EQ(std::memcmp(host.raw(), b[i].second.raw(), host.nbytes()), 0)
        << what << ": " << a[i].first << " differs";
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
    EXPECT_TRUE(same_bits(gpu.epochs[e].train_loss, cpu.epochs[e].train_loss))
        << what << ": train loss on the device " << gpu.epochs[e].train_loss << ", CPU "
        << cpu.epochs[e].train_loss;
    EXPECT_TRUE(gpu.epochs[e].evaluated && cpu.epochs[e].evaluated) << what;
    expect_same_stats(gpu.epochs[e].test, cpu.epochs[e].test, what);
    EXPECT_EQ(cpu.epochs[e].test.count, 100) << what;
    if (with_teacher) {
      EXPECT_GT(cpu.epochs[e].test.kl_sum, 0.0) << what;
    }
  }
  // A loop that learned nothing would match trivially.
  EXPECT_NE(cpu.epochs.front().train_loss, cpu.epochs.back().train_loss);
  expect_same_state(*gpu.model, *cpu.model, "trained weights");
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

TEST(EmulatedGpuLoops, TrainSupervisedMatchesCpuBitwise) {
  ASSERT_TRUE(cuda_usable()) << "no emulated device: is KDLAB_DISABLE_CUDA set?";
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

TEST(EmulatedGpuLoops, DistillWithMixupFromEnsembleMatchesCpuBitwise) {
  ASSERT_TRUE(cuda_usable()) << "no emulated device: is KDLAB_DISABLE_CUDA set?";
  expect_same_loops(distilled(Device::cuda()), distilled(Device::cpu()), true);
}

// 1100 examples: a full batch of 1000 and a partial one, with and without a teacher.
TEST(EmulatedGpuLoops, EvaluateModelMatchesCpuBitwise) {
  ASSERT_TRUE(cuda_usable()) << "no emulated device: is KDLAB_DISABLE_CUDA set?";
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
    expect_same_stats(got[with_teacher], want[with_teacher],
                      with_teacher ? "with teacher" : "without teacher");
    EXPECT_EQ(want[with_teacher].count, 1100);
  }
  EXPECT_GT(want[1].agree, 0);
}

// The device keeps the losses and reads them back late; a diverged run must still be stopped,
// in the epoch where it diverged.
TEST(EmulatedGpuLoops, DivergenceIsCaughtOnTheDevicePath) {
  ASSERT_TRUE(cuda_usable()) << "no emulated device: is KDLAB_DISABLE_CUDA set?";
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
  ASSERT_TRUE(cuda_usable()) << "no emulated device: is KDLAB_DISABLE_CUDA set?";
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
  expect_same_state(*r[0].model, *loaded.model, "checkpoint of the device model");
}

// Adam's multi-tensor update and GroupNorm (preresnet8-ln) on the device, one epoch.
TEST(EmulatedGpuLoops, AdamWithGroupNormMatchesCpuBitwise) {
  ASSERT_TRUE(cuda_usable()) << "no emulated device: is KDLAB_DISABLE_CUDA set?";
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

// Kernel-level: the per-row stats folded on the host equal the CPU's stats bitwise, and an
// out-of-range label gives NaN nll (the device contract) instead of an error.
TEST(EmulatedKernels, RowStatsFoldToTheCpuStats) {
  ASSERT_TRUE(cuda_usable()) << "no emulated device: is KDLAB_DISABLE_CUDA set?";
  const int rows = 37, cols = 7;
  std::vector<float> logits(rows * cols), teacher(rows * cols);
  for (size_t i = 0; i < logits.size(); ++i) {
    logits[i] = float(6 * philox_uniform(1, kStreamTest, i) - 3);
    teacher[i] = float(6 * philox_uniform(2, kStreamTest, i) - 3);
  }
  std::vector<int32_t> labels(rows);
  for (int r = 0; r < rows; ++r) labels[r] = int32_t(philox_below(3, kStreamTest, r, cols));
  Tensor d_logits = Tensor::from_vector<float>({rows, cols}, logits).to(Device::cuda());
  Tensor d_teacher = Tensor::from_vector<float>({rows, cols}, teacher).to(Device::cuda());
  Tensor d_labels = Tensor::from_vector<int32_t>({rows}, labels).to(Device::cuda());
  Tensor d_rows = Tensor::empty({rows, kRowStatFields}, DType::F64, Device::cuda());
  for (bool with_teacher : {false, true}) {
    cuda::classifier_row_stats<float>(rows, cols, d_logits.data<float>(),
                                      d_labels.data<int32_t>(),
                                      with_teacher ? d_teacher.data<float>() : nullptr,
                                      d_rows.data<double>());
    const std::vector<double> per_row = d_rows.to_vector<double>();
    ClassifierStats got, want;
    fold_row_stats(rows, per_row.data(), with_teacher, &got);
    cpu::classifier_stats<float>(rows, cols, logits.data(), labels.data(),
                                 with_teacher ? teacher.data() : nullptr, &want);
    expect_same_stats(got, want, with_teacher ? "with teacher" : "without teacher");
  }
  labels[4] = cols;  // out of range
  d_labels = Tensor::from_vector<int32_t>({rows}, labels).to(Device::cuda());
  cuda::classifier_row_stats<float>(rows, cols, d_logits.data<float>(), d_labels.data<int32_t>(),
                                    nullptr, d_rows.data<double>());
  const std::vector<double> per_row = d_rows.to_vector<double>();
  EXPECT_TRUE(std::isnan(per_row[4 * kRowStatFields + 1]));
  EXPECT_EQ(per_row[4 * kRowStatFields + 0], 0.0);
}

// The guard itself: reading device memory on the host outside an emulated kernel dies, naming
// the cause; inside one (a copy) it works.
TEST(EmulatedGuardDeathTest, HostReadOfDeviceMemoryDies) {
  ASSERT_TRUE(cuda_usable()) << "no emulated device: is KDLAB_DISABLE_CUDA set?";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor t = Tensor::full({16}, 2.0).to(Device::cuda());
  if (!cuda::emu::is_guarded_device_pointer(t.raw()))
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
#endif  // KDLAB_EMULATED_CUDA
