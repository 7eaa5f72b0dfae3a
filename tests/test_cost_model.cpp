// The cost model (kernels/kernel_cost.h, engine/cost_model.h): exact FLOPs and bytes for known
// shapes, every call of a training step seen, nothing recorded once the recorder is gone, and on
// a GPU backend (the grid emulator in CI) launches that match the backend's own counter.
#include <gtest/gtest.h>

#include <functional>

#include "engine/autograd.h"
#include "engine/cost_model.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/runtime_config.h"
#include "models/classifier.h"
#include "tests/cuda_testing.h"

namespace kd {
namespace {

TEST(CostModel, ConvolutionForwardCountsItsOperandsOnce) {
  Tensor x = Tensor::zeros({2, 3, 8, 8}), w = Tensor::zeros({4, 3, 3, 3}), b = Tensor::zeros({4});
  CostRecorder recorder(Device::cpu());
  ops::conv2d(x, w, b, 1, 1);
  const CostTotals& t = recorder.totals();
  // y is [2, 4, 8, 8]: 2 * n*k*p*q*c*r*s multiply-adds plus one bias add per output.
  EXPECT_DOUBLE_EQ(t.flops, 2.0 * 2 * 4 * 8 * 8 * 3 * 3 * 3 + 2 * 4 * 8 * 8);
  EXPECT_DOUBLE_EQ(t.bytes_read, 4.0 * (2 * 3 * 8 * 8 + 4 * 3 * 3 * 3 + 4));
  EXPECT_DOUBLE_EQ(t.bytes_written, 4.0 * (2 * 4 * 8 * 8));
  EXPECT_EQ(t.calls, 1);
  EXPECT_EQ(t.launches, 0);  // the CPU launches nothing
  ASSERT_EQ(recorder.by_kernel().count("conv2d_forward"), 1u);
  // Compute-bound at the H200's peaks: flops / 67e12 exceeds bytes / 4.8e12 here.
  EXPECT_DOUBLE_EQ(t.ideal_seconds, std::max(t.flops / 67e12, t.bytes() / 4.8e12));
}

// Under --tf32 only the matrix kernels move to the tensor-core rate; the rest keep the FP32 one.
TEST(CostModel, TensorCorePeakCostsOnlyTheMatrixKernels) {
  EXPECT_TRUE(runs_on_tensor_cores("conv2d_forward_residual"));
  EXPECT_TRUE(runs_on_tensor_cores("conv2d_backward_weight"));
  EXPECT_TRUE(runs_on_tensor_cores("linear_backward_data"));
  EXPECT_FALSE(runs_on_tensor_cores("batchnorm_forward_train"));
  EXPECT_FALSE(runs_on_tensor_cores("sgd_update_multi"));
  Tensor x = Tensor::zeros({2, 3, 8, 8}), w = Tensor::zeros({4, 3, 3, 3}), b = Tensor::zeros({4});
  PeakRates tensor;
  tensor.tensor_cores = true;
  // Made-up rates so that each kernel is compute-bound and the rate shows in the ideal time.
  tensor.flops_per_s = 1e3, tensor.tensor_flops_per_s = 1e4, tensor.bytes_per_s = 1e12;
  CostRecorder recorder(Device::cpu(), tensor);
  ops::relu(ops::conv2d(x, w, b, 1, 1));
  const CostTotals& conv = recorder.by_kernel().at("conv2d_forward");
  const CostTotals& relu = recorder.by_kernel().at("relu_forward");
  ASSERT_GT(conv.flops, 0);
  ASSERT_GT(relu.flops, 0);
  EXPECT_DOUBLE_EQ(conv.ideal_seconds, conv.flops / 1e4);
  EXPECT_DOUBLE_EQ(relu.ideal_seconds, relu.flops / 1e3);
}

TEST(CostModel, AssignedGradientsSkipTheZeroingAndTheRead) {
  Tensor x = Tensor::full({4, 250}, 1.0);
  x.set_requires_grad(true);
  const Tensor labels = Tensor::from_vector<int32_t>({4}, {0, 1, 2, 3});
  for (bool x_has_grad : {false, true}) {
    SCOPED_TRACE(x_has_grad ? "x holds a gradient" : "x has no gradient yet");
    Tensor loss = ops::cross_entropy(ops::relu(x), labels);
    CostRecorder recorder(Device::cpu());
    backward(loss);
    // relu_backward reads y and dy and writes dx (1000 floats each); dx is read too only when
    // it accumulates into a gradient x already had.
    const auto& k = recorder.by_kernel();
    ASSERT_EQ(k.count("relu_backward"), 1u);
    EXPECT_DOUBLE_EQ(k.at("relu_backward").bytes_read, (x_has_grad ? 3 : 2) * 4000.0);
    EXPECT_DOUBLE_EQ(k.at("relu_backward").bytes_written, 4000.0);
    // x's gradient is never zeroed: only cross-entropy's fresh dlogits (4000 bytes) and the
    // loss's seed (4) are.
    ASSERT_EQ(k.count("memset"), 1u);
    EXPECT_DOUBLE_EQ(k.at("memset").bytes_written, 4004.0);
  }
}

TEST(CostModel, RecordsNothingOnceGone) {
  Tensor x = Tensor::full({64}, 2.0);
  {
    CostRecorder recorder(Device::cpu());
    ops::relu(x);
    EXPECT_EQ(recorder.totals().calls, 1);
  }
  CostRecorder again(Device::cpu());  // a second recorder starts from nothing
  EXPECT_EQ(again.totals().calls, 0);
  EXPECT_THROW(CostRecorder{Device::cpu()}, Error);  // one at a time per device
}

// A LeNet-5 SGD step on 8 images after a first one (which builds the gradient arena), recorded;
// `inspect` sees the model and the recorder.
void record_lenet_step(const std::function<void(models::Classifier&, CostRecorder&)>& inspect) {
  auto model = models::make_model("lenet5", 10, 1, 0);
  model->train();
  Tensor x = Tensor::full({8, 1, 28, 28}, 0.5);
  Tensor y = Tensor::from_vector<int32_t>({8}, {0, 1, 2, 3, 4, 5, 6, 7});
  Sgd sgd(model->parameters(), SgdParams{});
  auto step = [&] {
    Tensor loss = ops::cross_entropy(model->forward(x), y);
    sgd.zero_grad();
    backward(loss);
    sgd.step();
  };
  step();
  CostRecorder recorder(Device::cpu());
  step();
  inspect(*model, recorder);
}

// A whole LeNet-5 step: every layer's kernels appear, with the call counts the model implies.
TEST(CostModel, TrainingStepSeesEveryKernel) {
  record_lenet_step([](models::Classifier& model, CostRecorder& recorder) {
    const auto& k = recorder.by_kernel();
    EXPECT_EQ(k.at("conv2d_forward").calls, 2);
    // Both backward passes are one call (conv2d_backward); the first layer's input needs no data
    // pass, so they cost more than the forward's FLOPs and less than twice them.
    EXPECT_EQ(k.at("conv2d_backward").calls, 2);
    EXPECT_EQ(k.count("conv2d_backward_data") + k.count("conv2d_backward_weight"), 0u);
    EXPECT_GT(k.at("conv2d_backward").flops, k.at("conv2d_forward").flops);
    EXPECT_LT(k.at("conv2d_backward").flops, 2 * k.at("conv2d_forward").flops);
    EXPECT_EQ(k.at("linear_forward").calls, 3);
    EXPECT_EQ(k.at("sgd_update_multi").calls, 1);
    double param_bytes = 0;
    for (const Tensor& p : model.parameters()) param_bytes += double(p.nbytes());
    // SGD without momentum reads parameters and gradients and writes the parameters.
    EXPECT_DOUBLE_EQ(k.at("sgd_update_multi").bytes_read, 2 * param_bytes);
    EXPECT_DOUBLE_EQ(k.at("sgd_update_multi").bytes_written, param_bytes);
    EXPECT_GT(recorder.totals().flops, 2 * 8 * 0.4e6);  // LeNet-5 is about 0.4 MFLOP forward
  });
}

// --precision bf16: the model's weights go to bf16 in one call and their gradients come back in
// one (nn::Bf16WeightCopies), whatever the number of layers; no weight is cast on its own.
TEST(CostModel, Bf16StepCastsEveryWeightInOneCallEachWay) {
  RuntimeConfig config = runtime_config();
  config.precision = Precision::Bf16;
  ScopedRuntimeConfig scoped(config);
  record_lenet_step([](models::Classifier& model, CostRecorder& recorder) {
    const auto& k = recorder.by_kernel();
    double weight_elems = 0;
    int weights = 0;
    for (const Tensor& p : model.parameters())
      if (p.dim() >= 2) weight_elems += double(p.numel()), ++weights;
    ASSERT_EQ(weights, 5);  // two convolutions, three linear layers
    EXPECT_EQ(k.at("to_bf16_multi").calls, 1);
    EXPECT_DOUBLE_EQ(k.at("to_bf16_multi").bytes_read, 4 * weight_elems);
    EXPECT_DOUBLE_EQ(k.at("to_bf16_multi").bytes_written, 2 * weight_elems);
    EXPECT_EQ(k.at("from_bf16_multi").calls, 1);  // into the gradient arena: added
    EXPECT_DOUBLE_EQ(k.at("from_bf16_multi").bytes_written, 4 * weight_elems);
  });
}

// On a GPU backend the wrapped table sees exactly the launches the backend counts.
TEST(CostModelCuda, LaunchesMatchTheBackendsCounter) {
  KD_REQUIRE_CUDA();
  const Device gpu = Device::cuda();
  Tensor x = Tensor::full({4, 3, 8, 8}, 0.25, DType::F32, gpu);
  Tensor w = Tensor::full({5, 3, 3, 3}, 0.5, DType::F32, gpu);
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  Tensor labels = Tensor::from_vector<int32_t>({4}, {0, 1, 2, 3}).to(gpu);
  const Backend& backend = backend_of(gpu);
  backend.synchronize();
  const uint64_t before = backend.launch_count();
  int64_t recorded = 0, calls = 0;
  {
    CostRecorder recorder(gpu);
    Tensor loss =
        ops::cross_entropy(ops::flatten(ops::relu(ops::conv2d(x, w, Tensor(), 1, 1))), labels);
    backward(loss);
    recorded = recorder.totals().launches;
    calls = recorder.totals().calls;
    // Both passes of the convolution's backward in one launch (kernels/cuda/conv2d.cu).
    EXPECT_EQ(recorder.by_kernel().at("conv2d_backward").launches, 1);
  }
  backend.synchronize();
  EXPECT_EQ(recorded, int64_t(backend.launch_count() - before));
  EXPECT_GE(recorded, calls - 1);  // every call launched something (a fill may be a memset)
}

// A CPU and a GPU recorder at once: each table keeps calling its own kernels.
TEST(CostModelCuda, CpuAndGpuRecordersLiveSideBySide) {
  KD_REQUIRE_CUDA();
  Tensor host = Tensor::full({64}, -1.0), device = Tensor::full({64}, -2.0, DType::F32,
                                                                  Device::cuda());
  CostRecorder on_cpu(Device::cpu()), on_gpu(Device::cuda());
  Tensor a = ops::relu(host), b = ops::relu(device);
  EXPECT_EQ(on_cpu.totals().calls, 1);
  EXPECT_EQ(on_gpu.totals().calls, 1);
  EXPECT_EQ(a.to_vector<float>(), std::vector<float>(64, 0.0f));
  EXPECT_EQ(b.to_vector<float>(), std::vector<float>(64, 0.0f));
  EXPECT_EQ(on_cpu.totals().launches, 0);
  EXPECT_GT(on_gpu.totals().launches, 0);
}

}  // namespace
}  // namespace kd

namespace kd {
namespace {

// The gradient arena: after the first step every gradient is a piece of one buffer, so
// zero_grad is one memset; a parameter that never received a gradient keeps none.
TEST(GradientArena, ZeroGradIsOneMemsetAndUnusedParametersKeepNoGradient) {
  auto model = models::make_model("lenet5", 10, 1, 0);
  model->train();
  std::vector<Tensor> params = model->parameters();
  Tensor unused = Tensor::full({3}, 1.0);
  unused.set_requires_grad(true);
  params.push_back(unused);
  Sgd sgd(params, SgdParams{});
  Tensor x = Tensor::full({4, 1, 28, 28}, 0.5);
  Tensor y = Tensor::from_vector<int32_t>({4}, {0, 1, 2, 3});
  for (int step = 0; step < 2; ++step) {
    Tensor loss = ops::cross_entropy(model->forward(x), y);
    sgd.zero_grad();
    backward(loss);
    sgd.step();
  }
  double grad_bytes = 0;
  for (const Tensor& p : model->parameters()) grad_bytes += double(p.nbytes());
  {
    CostRecorder recorder(Device::cpu());
    sgd.zero_grad();
    ASSERT_EQ(recorder.by_kernel().count("memset"), 1u);
    EXPECT_EQ(recorder.by_kernel().at("memset").calls, 1);
    EXPECT_DOUBLE_EQ(recorder.by_kernel().at("memset").bytes_written, grad_bytes);
  }
  for (const Tensor& p : model->parameters())
    for (float v : p.grad().to_vector<float>()) ASSERT_EQ(v, 0.0f);
  EXPECT_FALSE(unused.grad().defined());
  // The pieces are adjacent: the second parameter's gradient starts where the first one's ends.
  const auto& ps = model->parameters();
  EXPECT_EQ(static_cast<const char*>(ps[1].grad().raw()),
            static_cast<const char*>(ps[0].grad().raw()) + ps[0].nbytes());

  // A gradient replaced behind the optimizer's back is noticed, and zeroed with the rest.
  Tensor first = ps[0];
  first.clear_grad();
  first.grad_or_zeros().fill_(5.0);
  sgd.zero_grad();
  for (float v : first.grad().to_vector<float>()) ASSERT_EQ(v, 0.0f);
  EXPECT_EQ(static_cast<const char*>(ps[1].grad().raw()),
            static_cast<const char*>(ps[0].grad().raw()) + ps[0].nbytes());
}

// Parameters of two dtypes share no arena: each gradient is zeroed on its own, correctly.
TEST(GradientArena, MixedDtypesZeroEachGradient) {
  Tensor a = Tensor::full({4}, 1.0, DType::F32), b = Tensor::full({2}, 1.0, DType::F64);
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  a.grad_or_zeros().fill_(3.0);
  b.grad_or_zeros().fill_(4.0);
  Sgd sgd({a, b}, SgdParams{});
  sgd.zero_grad();
  EXPECT_EQ(a.grad().to_vector<float>(), std::vector<float>(4, 0.0f));
  EXPECT_EQ(b.grad().to_vector<double>(), std::vector<double>(2, 0.0));
}

}  // namespace
}  // namespace kd
