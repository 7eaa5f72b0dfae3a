// Whole models on the GPU against the CPU: the same seed gives the same initial weights on both
// devices, so 20 SGD-Nesterov steps of LeNet-5 and PreResNet-20 on the same synthetic batches
// must trace the same losses: to 1e-9 in double (every kernel is the same maths; only summation
// orders differ) and to 2e-3 relative in float (float rounding differences grow through 20
// updates but stay far below the loss changes a wrong kernel makes). Both GPU paths are checked:
// our kernels and cuDNN. In --deterministic mode two GPU runs are bitwise equal. A distillation
// step (ensemble teacher + distillation loss) is checked the same way.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/runtime_config.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "base/philox.h"
#include "models/classifier.h"
#include "models/ensemble.h"
#include "tests/cuda_testing.h"

namespace kd {
namespace {

struct Batch {
  Tensor images, labels;
};

// Deterministic synthetic batches: images uniform in [-1, 1], labels uniform over the classes.
std::vector<Batch> synthetic_batches(int steps, int batch, int c, int hw, int classes) {
  std::vector<Batch> out;
  for (int s = 0; s < steps; ++s) {
    std::vector<float> img(size_t(batch) * c * hw * hw);
    for (size_t i = 0; i < img.size(); ++i)
      img[i] = float(2 * philox_uniform_double(100 + s, kStreamTest, i) - 1);
    std::vector<int32_t> lab(batch);
    for (int i = 0; i < batch; ++i) lab[i] = int32_t(philox_below(200 + s, kStreamTest, i, classes));
    out.push_back({Tensor::from_vector<float>({batch, c, hw, hw}, img),
                   Tensor::from_vector<int32_t>({batch}, lab)});
  }
  return out;
}

// The runtime configuration with these GPU kernels and deterministic maths.
RuntimeConfig deterministic_with(GpuImpl impl) {
  RuntimeConfig config = runtime_config();
  config.gpu_kernels.conv = config.gpu_kernels.bn = impl;
  config.math = {/*deterministic=*/true, /*tf32=*/false};
  return config;
}

std::vector<double> train_losses(const std::string& arch, int classes, int c, int hw,
                                 Device device, DType dtype, int steps, int batch) {
  auto model = models::make_model(arch, classes, c, /*seed=*/3);
  model->to(dtype);
  model->to(device);
  model->train();
  SgdParams h;
  h.lr = 0.05, h.momentum = 0.9, h.nesterov = true, h.weight_decay = 5e-4;
  Sgd sgd(model->parameters(), h);
  std::vector<double> losses;
  for (const Batch& b : synthetic_batches(steps, batch, c, hw, classes)) {
    Tensor x = b.images.to(dtype).to(device);
    Tensor y = b.labels.to(device);
    Tensor loss = ops::cross_entropy(model->forward(x), y);
    sgd.zero_grad();
    backward(loss);
    sgd.step();
    losses.push_back(loss.item());
  }
  return losses;
}

void expect_same_trajectory(const std::vector<double>& gpu, const std::vector<double>& cpu,
                            double tol, const char* what) {
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i)
    ASSERT_NEAR(gpu[i], cpu[i], tol * std::max(1.0, std::fabs(cpu[i])))
        << what << ": step " << i + 1 << " loss on the GPU " << gpu[i] << ", CPU " << cpu[i];
  // A trajectory that learned nothing would match trivially; it must move.
  EXPECT_NE(cpu.front(), cpu.back()) << what;
}

void check_model(const std::string& arch, int classes, int c, int hw, GpuImpl impl) {
  cuda_testing::WholeModelSchedule schedule;
  if (impl == GpuImpl::Cudnn && !cuda_testing::gpu().has_cudnn) GTEST_SKIP() << "built without cuDNN";
  ScopedRuntimeConfig config(deterministic_with(impl));
  // On the grid emulator our PreResNet-20 convolutions run as scalar C++, about 5 s a step at
  // batch 16: there it takes 4 steps of batch 4 (LeNet-5 keeps its 20 steps of 16).
  const bool small = cuda_testing::emulated_device() && arch != "lenet5";
  const int steps = small ? 4 : 20, batch = small ? 4 : 16;
  auto cpu64 = train_losses(arch, classes, c, hw, Device::cpu(), DType::F64, steps, batch);
  auto gpu64 = train_losses(arch, classes, c, hw, Device::cuda(), DType::F64, steps, batch);
  expect_same_trajectory(gpu64, cpu64, 1e-9, (arch + " f64").c_str());
  auto cpu32 = train_losses(arch, classes, c, hw, Device::cpu(), DType::F32, steps, batch);
  auto gpu32 = train_losses(arch, classes, c, hw, Device::cuda(), DType::F32, steps, batch);
  expect_same_trajectory(gpu32, cpu32, 2e-3, (arch + " f32").c_str());
  // Deterministic mode: a second GPU run repeats every bit.
  auto again = train_losses(arch, classes, c, hw, Device::cuda(), DType::F32, steps, batch);
  for (int i = 0; i < steps; ++i)
    EXPECT_EQ(std::memcmp(&again[i], &gpu32[i], sizeof(double)), 0)
        << arch << ": deterministic GPU runs differ at step " << i + 1;
}

TEST(CudaTraining, LeNet5NativeMatchesCpuOver20Steps) {
  KD_REQUIRE_CUDA();
  check_model("lenet5", 10, 1, 28, GpuImpl::Native);
}
TEST(CudaTraining, LeNet5CudnnMatchesCpuOver20Steps) {
  KD_REQUIRE_CUDA();
  check_model("lenet5", 10, 1, 28, GpuImpl::Cudnn);
}
TEST(CudaTraining, PreResNet20NativeMatchesCpuOver20Steps) {
  KD_REQUIRE_CUDA();
  check_model("preresnet20", 10, 3, 32, GpuImpl::Native);
}
TEST(CudaTraining, PreResNet20CudnnMatchesCpuOver20Steps) {
  KD_REQUIRE_CUDA();
  check_model("preresnet20", 10, 3, 32, GpuImpl::Cudnn);
}

// Distillation from a 3-member ensemble: teacher forward under no-grad, temperature 4.
std::vector<double> distill_losses(Device device) {
  std::vector<std::shared_ptr<models::Classifier>> members;
  for (int m = 0; m < 3; ++m) {
    members.push_back(models::make_model("lenet5", 10, 1, 10 + m));
    members.back()->to(DType::F64);
    members.back()->to(device);
  }
  models::Ensemble teacher(members);
  auto student = models::make_model("lenet5", 10, 1, 4);
  student->to(DType::F64);
  student->to(device);
  student->train();
  SgdParams h;
  h.lr = 0.05, h.momentum = 0.9, h.nesterov = true;
  Sgd sgd(student->parameters(), h);
  std::vector<double> losses;
  for (const Batch& b : synthetic_batches(10, 16, 1, 28, 10)) {
    Tensor x = b.images.to(DType::F64).to(device);
    Tensor loss = ops::distill_loss(DistillKind::kForwardCE, teacher.forward(x),
                                    student->forward(x), 4.0);
    sgd.zero_grad();
    backward(loss);
    sgd.step();
    losses.push_back(loss.item());
  }
  return losses;
}

TEST(CudaTraining, DistillationFromEnsembleMatchesCpu) {
  KD_REQUIRE_CUDA();
  cuda_testing::WholeModelSchedule schedule;
  RuntimeConfig native = runtime_config();
  native.gpu_kernels = GpuKernels{};
  ScopedRuntimeConfig config(native);
  expect_same_trajectory(distill_losses(Device::cuda()), distill_losses(Device::cpu()), 1e-9,
                         "lenet5 distillation f64");
}

}  // namespace
}  // namespace kd
