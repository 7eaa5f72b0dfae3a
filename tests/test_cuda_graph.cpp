// CUDA graphs (engine/step_graph.h, apps/graphed_step.h): a capture runs nothing and a replay
// runs the captured kernels, copies and memsets in order on the inputs' current values; a
// capture that synchronizes fails cleanly; the blocks a graph may write stay out of the cache
// while it lives; and the training and distillation loops under --cuda-graph end with the eager
// loop's bytes while launching a fraction of its kernels. The same tests run on a GPU and on the
// grid emulator, whose runtime refuses what a GPU refuses during a capture.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "apps/experiment.h"
#include "apps/graphed_step.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/runtime_config.h"
#include "engine/step_graph.h"
#include "engine/tensor.h"
#include "models/classifier.h"
#include "models/ensemble.h"
#include "tests/cuda_testing.h"
#include "tests/data_testing.h"

namespace kd {
namespace {

std::vector<float> host_values(const Tensor& t) { return t.to(Device::cpu()).to_vector<float>(); }

Tensor device_values(const std::vector<float>& v) {
  return Tensor::from_vector<float>({int64_t(v.size())}, v).to(Device::cuda());
}

TEST(CudaGraph, ACaptureRunsNothingAndEachReplayRunsItOnTheCurrentInputs) {
  KD_REQUIRE_CUDA();
  NoGradGuard no_grad;
  Tensor a = device_values({1, 2, 3, 4});
  Tensor b = device_values({10, 20, 30, 40});
  Tensor out = Tensor::zeros({4}, DType::F32, Device::cuda());
  Tensor scratch = Tensor::full({4}, 7.0, DType::F32, Device::cuda());
  StepGraph graph(Device::cuda());
  const uint64_t launches_before = cuda_testing::gpu().launch_count();
  graph.capture([&] {
    scratch.zero_();                                   // a memset
    Tensor sum = ops::add(ops::scale(a, 2.0), b);      // scale: a memset and a kernel; add
    out.copy_from(ops::relu(ops::add(sum, scratch)));  // two kernels and a copy
  });
  EXPECT_EQ(graph.nodes(), 7);
  EXPECT_EQ(cuda_testing::gpu().launch_count() - launches_before, 7u)
      << "each captured operation counts once, when it is issued";
  EXPECT_EQ(host_values(out), std::vector<float>(4, 0.0f)) << "the capture ran something";
  EXPECT_EQ(host_values(scratch), std::vector<float>(4, 7.0f)) << "the capture ran the memset";

  graph.replay();
  EXPECT_EQ(host_values(out), (std::vector<float>{12, 24, 36, 48}));
  EXPECT_EQ(host_values(scratch), std::vector<float>(4, 0.0f));
  a.copy_from(device_values({-10, 0, 1, 2}));  // new inputs in the captured tensors
  graph.replay();
  EXPECT_EQ(host_values(out), (std::vector<float>{0, 20, 32, 44}));
}

// A 1x1 convolution on our kernels is one strided-batched cuBLAS call over the images: one
// launch, one node (not one per image), and the replay gives the eager result.
TEST(CudaGraph, EachIssuedCallIsOneNode) {
  KD_REQUIRE_CUDA();
  NoGradGuard no_grad;
  std::vector<float> xs(3 * 4 * 5 * 5), ws(6 * 4);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = float(int(i % 7) - 3);
  for (size_t i = 0; i < ws.size(); ++i) ws[i] = float(int(i % 5) - 2) * 0.5f;
  Tensor x = Tensor::from_vector<float>({3, 4, 5, 5}, xs).to(Device::cuda());
  Tensor w = Tensor::from_vector<float>({6, 4, 1, 1}, ws).to(Device::cuda());
  const std::vector<float> eager = host_values(ops::conv2d(x, w, Tensor(), 1, 0));
  Tensor y = Tensor::zeros({3, 6, 5, 5}, DType::F32, Device::cuda());
  StepGraph graph(Device::cuda());
  const uint64_t launches_before = cuda_testing::gpu().launch_count();
  graph.capture([&] { y.copy_from(ops::conv2d(x, w, Tensor(), 1, 0)); });
  EXPECT_EQ(uint64_t(graph.nodes()), cuda_testing::gpu().launch_count() - launches_before);
  graph.replay();
  EXPECT_EQ(host_values(y), eager);
}

TEST(CudaGraph, ASynchronizingCallFailsTheCaptureAndLeavesTheStreamUsable) {
  KD_REQUIRE_CUDA();
  NoGradGuard no_grad;
  Tensor a = device_values({1, 2, 3});
  StepGraph graph(Device::cuda());
  EXPECT_THROW(graph.capture([&] {
                 Tensor doubled = ops::scale(a, 2.0);
                 doubled.to(Device::cpu());  // a copy to the host waits for the stream
               }),
               Error);
  EXPECT_FALSE(graph.captured());
  EXPECT_THROW(graph.replay(), Error);
  // Eager work after the failed capture runs at once again.
  EXPECT_EQ(host_values(ops::scale(a, 3.0)), (std::vector<float>{3, 6, 9}));
  graph.capture([&] { a.zero_(); });  // and a later capture works
  graph.replay();
  EXPECT_EQ(host_values(a), std::vector<float>(3, 0.0f));
}

TEST(CudaGraph, BlocksAGraphMayWriteStayOutOfTheCacheUntilItIsReset) {
  KD_REQUIRE_CUDA();
  NoGradGuard no_grad;
  CachingAllocator& allocator = CachingAllocator::for_device(Device::cuda());
  const int64_t n = 4099;  // a size class of its own in this test
  Tensor a = Tensor::full({n}, 1.0, DType::F32, Device::cuda());
  const void* before_capture = nullptr;
  {
    Tensor freed_in_capture = Tensor::zeros({n}, DType::F32, Device::cuda());
    before_capture = freed_in_capture.raw();
    StepGraph graph(Device::cuda());
    std::vector<const void*> graph_blocks;
    graph.capture([&] {
      Tensor t = ops::scale(a, 2.0);  // allocated and freed inside the capture
      graph_blocks.push_back(t.raw());
      a.copy_from(ops::add(t, freed_in_capture));
      graph_blocks.push_back(freed_in_capture.raw());
      freed_in_capture = Tensor();  // freed during the capture: the graph still writes it
    });
    EXPECT_GT(allocator.pooled_bytes(), 0u);
    // Same-size tensors made while the graph lives never get the blocks it writes.
    std::vector<Tensor> others;
    for (int i = 0; i < 4; ++i) {
      others.push_back(Tensor::full({n}, 5.0, DType::F32, Device::cuda()));
      for (const void* p : graph_blocks) EXPECT_NE(others.back().raw(), p);
    }
    graph.replay();
    EXPECT_EQ(host_values(a), std::vector<float>(size_t(n), 2.0f));
    for (const Tensor& o : others)
      EXPECT_EQ(host_values(o), std::vector<float>(size_t(n), 5.0f)) << "a replay wrote into it";
  }
  // The graph is gone: its blocks are ordinary cache again.
  Tensor reused = Tensor::empty({n}, DType::F32, Device::cuda());
  (void)before_capture;
  EXPECT_GE(allocator.cached_bytes() + allocator.in_use_bytes(), reused.nbytes());
}

// A 4-element device parameter with a fixed gradient, for the optimizer replay tests.
Tensor parameter() {
  Tensor p = device_values({0.5f, -1.25f, 2.0f, 3.5f});
  p.set_requires_grad(true);
  p.set_grad(device_values({0.1f, 0.2f, -0.3f, 0.7f}));
  return p;
}

// SGD reads its learning rate from device memory when the update runs (SgdParams::lr_device):
// one graph captured at the first rate replays each later one (set_lr), with the bits of an
// eager update at that rate.
TEST(CudaGraph, SgdReadsTheLearningRateWhenTheUpdateRuns) {
  KD_REQUIRE_CUDA();
  NoGradGuard no_grad;
  SgdParams h;
  h.lr = 0.1, h.momentum = 0.9, h.weight_decay = 0.01;
  Tensor graphed = parameter(), eager = parameter();
  Sgd graphed_sgd({graphed}, h), eager_sgd({eager}, h);
  graphed_sgd.step(), eager_sgd.step();  // the first step fills the momentum, eagerly
  StepGraph graph(Device::cuda());
  graph.capture([&] { graphed_sgd.step(); });
  for (double lr : {0.1, 0.037, 0.5}) {
    graphed_sgd.set_lr(lr);
    eager_sgd.set_lr(lr);
    graph.replay();
    eager_sgd.step();
    EXPECT_EQ(host_values(graphed), host_values(eager)) << "lr " << lr;
  }
  // A rate frozen at 0.1 would have moved the parameter differently.
  Tensor frozen = parameter();
  Sgd frozen_sgd({frozen}, h);
  for (int i = 0; i < 4; ++i) frozen_sgd.step();
  EXPECT_NE(host_values(frozen), host_values(graphed));
}

// Adam reads its learning rate and its step count from device memory when the update runs
// (AdamParams::lr_device, step_device), and its step() advances the count on the device: one
// graph replays each step's bias correction at each rate with an eager update's bits. A
// checkpointed state puts the device count back.
TEST(CudaGraph, AdamReadsItsStepAndLearningRateWhenTheUpdateRuns) {
  KD_REQUIRE_CUDA();
  NoGradGuard no_grad;
  AdamParams h;
  h.lr = 0.1, h.weight_decay = 0.01;
  Tensor graphed = parameter(), eager = parameter();
  Adam graphed_adam({graphed}, h), eager_adam({eager}, h);
  graphed_adam.step(), eager_adam.step();
  StepGraph graph(Device::cuda());
  graph.capture([&] { graphed_adam.step(); });
  // The capture ran step() on the host, which counted the first replay (as GraphedStep).
  bool first = true;
  for (double lr : {0.1, 0.1, 0.037, 0.5}) {
    graphed_adam.set_lr(lr);
    eager_adam.set_lr(lr);
    graph.replay();
    if (!first) graphed_adam.count_replayed_step();
    first = false;
    eager_adam.step();
    EXPECT_EQ(host_values(graphed), host_values(eager)) << "lr " << lr;
  }
  EXPECT_EQ(graphed_adam.steps_taken(), 5);
  // The same five updates on the CPU (std::pow for the bias correction, as PyTorch).
  Tensor host = parameter().to(Device::cpu());
  host.set_requires_grad(true);
  host.set_grad(Tensor::from_vector<float>({4}, {0.1f, 0.2f, -0.3f, 0.7f}));
  Adam host_adam({host}, h);
  for (double lr : {0.1, 0.1, 0.1, 0.037, 0.5}) {
    host_adam.set_lr(lr);
    host_adam.step();
  }
  const std::vector<float> want = host.to_vector<float>(), got = host_values(graphed);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << i;
  // A step count frozen at the capture's (2) moves the parameter differently.
  Tensor frozen = parameter();
  Adam frozen_adam({frozen}, h);
  frozen_adam.step(), frozen_adam.step();
  for (double lr : {0.1, 0.1, 0.037, 0.5}) {
    frozen_adam.set_lr(lr);
    frozen_adam.load_state(
        [&] {
          std::map<std::string, Tensor> s;
          for (auto& kv : frozen_adam.state()) s[kv.first] = kv.second.to(Device::cpu());
          s["steps"] = Tensor::from_vector<int64_t>({1}, {1});
          return s;
        }(),
        "test");
    frozen_adam.step();
  }
  EXPECT_NE(host_values(frozen), host_values(graphed));
  // Resuming from the graphed optimizer's state continues as the eager one does.
  Tensor resumed = graphed.to(Device::cpu()).to(Device::cuda());
  resumed.set_requires_grad(true);
  resumed.set_grad(device_values({0.1f, 0.2f, -0.3f, 0.7f}));
  Adam resumed_adam({resumed}, h);
  std::map<std::string, Tensor> saved;
  for (auto& kv : graphed_adam.state()) saved[kv.first] = kv.second.to(Device::cpu());
  resumed_adam.load_state(saved, "test");
  resumed_adam.set_lr(0.5);
  resumed_adam.step();
  eager_adam.step();
  EXPECT_EQ(host_values(resumed), host_values(eager));
}

// ---- The loops under --cuda-graph ----

data::Dataset synthetic(int n, int c, int hw, uint64_t seed) {
  return data_testing::random_dataset(n, c, hw, hw, 10, seed);
}

// Batches of 8 from a set of 8k+4 images: k full steps and a short one per epoch; each epoch
// has its own learning rate (read by the replayed update from device memory) and an evaluation.
apps::LoopConfig graph_loop(bool cuda_graph, int epochs = 3) {
  apps::LoopConfig cfg;
  cfg.epochs = epochs, cfg.batch = 8, cfg.seed = 11, cfg.eval_every = 1, cfg.device = Device::cuda();
  cfg.optim.lr = 0.05, cfg.optim.momentum = 0.9, cfg.optim.weight_decay = 5e-4;
  cfg.augment.crop_pad = 2, cfg.augment.hflip = true;
  cfg.cuda_graph = cuda_graph;
  return cfg;
}

struct Trained {
  std::vector<apps::EpochRecord> epochs;
  std::shared_ptr<models::Classifier> model;
  uint64_t launches = 0;
};

void expect_same_bytes(const Trained& graphed, const Trained& eager) {
  ASSERT_EQ(graphed.epochs.size(), eager.epochs.size());
  for (size_t e = 0; e < eager.epochs.size(); ++e) {
    EXPECT_EQ(graphed.epochs[e].train_loss, eager.epochs[e].train_loss) << "epoch " << e + 1;
    EXPECT_EQ(graphed.epochs[e].test.nll_sum, eager.epochs[e].test.nll_sum) << "epoch " << e + 1;
    EXPECT_EQ(graphed.epochs[e].test.kl_sum, eager.epochs[e].test.kl_sum) << "epoch " << e + 1;
  }
  EXPECT_NE(eager.epochs.front().train_loss, eager.epochs.back().train_loss) << "nothing learned";
  nn::NamedTensors a = graphed.model->state_dict(), b = eager.model->state_dict();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    Tensor x = a[i].second.to(Device::cpu()), y = b[i].second.to(Device::cpu());
    ASSERT_EQ(x.nbytes(), y.nbytes()) << a[i].first;
    EXPECT_EQ(std::memcmp(x.raw(), y.raw(), x.nbytes()), 0) << a[i].first << " differs";
  }
}

Trained train(const std::string& arch, int channels, int hw, int full_steps, int epochs,
              bool cuda_graph, const std::string& optimizer = "sgd") {
  setenv("KDLAB_PROGRESS", "off", 0);
  const data::Dataset train_set = synthetic(8 * full_steps + 4, channels, hw, 1),
                      test = synthetic(12, channels, hw, 2);
  Trained r;
  r.model = models::make_model(arch, 10, channels, /*seed=*/3);
  r.model->to(Device::cuda());
  const uint64_t before = cuda_testing::gpu().launch_count();
  apps::LoopConfig cfg = graph_loop(cuda_graph, epochs);
  if (optimizer == "adam") cfg.optim.name = "adam", cfg.optim.lr = 2e-3;
  apps::train_supervised(*r.model, train_set, &test, data::Normalization::unitcube(channels), cfg,
                         "graph",
                         [&](const apps::EpochRecord& rec) { r.epochs.push_back(rec); });
  r.launches = cuda_testing::gpu().launch_count() - before;
  return r;
}

TEST(CudaGraphLoops, LeNet5TrainingUnderAGraphIsBitwiseTheEagerLoop) {
  KD_REQUIRE_CUDA();
  cuda_testing::WholeModelSchedule schedule;
  const Trained eager = train("lenet5", 1, 28, 10, 3, false),
                graphed = train("lenet5", 1, 28, 10, 3, true);
  expect_same_bytes(graphed, eager);
  // 33 steps: the first and each epoch's short one run eagerly, the second is captured (counted
  // as the kernels it holds) and every other full one, across the three learning rates, is one
  // graph launch and three copies. A loop that never replayed would launch as many kernels as
  // the eager one.
  EXPECT_LT(graphed.launches, eager.launches / 3)
      << graphed.launches << " launches under the graph, " << eager.launches << " eager";
}

TEST(CudaGraphLoops, LeNet5TrainingWithAdamUnderAGraphIsBitwiseTheEagerLoop) {
  KD_REQUIRE_CUDA();
  cuda_testing::WholeModelSchedule schedule;
  const Trained eager = train("lenet5", 1, 28, 6, 2, false, "adam"),
                graphed = train("lenet5", 1, 28, 6, 2, true, "adam");
  expect_same_bytes(graphed, eager);
  EXPECT_LT(graphed.launches, eager.launches / 2);
}

TEST(CudaGraphLoops, PreResNetTrainingUnderAGraphIsBitwiseTheEagerLoop) {
  KD_REQUIRE_CUDA();
  cuda_testing::WholeModelSchedule schedule;
  const Trained eager = train("preresnet8", 3, 32, 3, 2, false),
                graphed = train("preresnet8", 3, 32, 3, 2, true);
  expect_same_bytes(graphed, eager);
  EXPECT_LT(graphed.launches, eager.launches);
}

// --precision bf16 under the graph: the bf16 kernels, the casts of the weights and the fp32
// views' temporaries (allocated inside the ops, so from the capture's pool) replay bitwise.
TEST(CudaGraphLoops, Bf16PreResNetTrainingUnderAGraphIsBitwiseTheEagerLoop) {
  KD_REQUIRE_CUDA();
  cuda_testing::WholeModelSchedule schedule;
  RuntimeConfig config = runtime_config();
  config.precision = Precision::Bf16;
  ScopedRuntimeConfig scoped(config);
  const Trained eager = train("preresnet8", 3, 32, 3, 2, false),
                graphed = train("preresnet8", 3, 32, 3, 2, true);
  expect_same_bytes(graphed, eager);
  EXPECT_LT(graphed.launches, eager.launches);
}

Trained distill(bool cuda_graph, bool logit_cache) {
  setenv("KDLAB_PROGRESS", "off", 0);
  const data::Dataset train_set = synthetic(28, 1, 28, 3), test = synthetic(12, 1, 28, 4);
  std::vector<std::shared_ptr<models::Classifier>> members;
  for (int m = 0; m < 2; ++m) {
    members.push_back(models::make_model("lenet5", 10, 1, 20 + m));
    members.back()->to(Device::cuda());
  }
  models::Ensemble teacher(members);
  Trained r;
  r.model = models::make_model("lenet5", 10, 1, /*seed=*/5);
  r.model->to(Device::cuda());
  apps::LoopConfig cfg = graph_loop(cuda_graph);
  cfg.augment = data::AugmentSpec();  // unaugmented: the teacher's logits can be cached
  cfg.logit_cache = logit_cache;
  apps::DistillConfig dcfg;
  dcfg.tau = 4.0, dcfg.alpha = 0.25;
  const uint64_t before = cuda_testing::gpu().launch_count();
  apps::distill(*r.model, teacher, train_set, &test, data::Normalization::unitcube(1), cfg, dcfg,
                "graph", [&](const apps::EpochRecord& rec) { r.epochs.push_back(rec); });
  r.launches = cuda_testing::gpu().launch_count() - before;
  return r;
}

TEST(CudaGraphLoops, DistillationUnderAGraphIsBitwiseTheEagerLoopWithAndWithoutTheLogitCache) {
  KD_REQUIRE_CUDA();
  cuda_testing::WholeModelSchedule schedule;
  // Cached: the teacher's rows are copied in before each replay. Not cached: the ensemble's
  // forward is part of the graph.
  for (bool cache : {true, false}) {
    SCOPED_TRACE(cache ? "logit cache" : "teachers in the step");
    const Trained eager = distill(false, cache), graphed = distill(true, cache);
    expect_same_bytes(graphed, eager);
    EXPECT_LT(graphed.launches, eager.launches);
  }
}

TEST(CudaGraphLoops, WhatAGraphWouldFreezeIsRefusedNamingTheFlag) {
  KD_REQUIRE_CUDA();
  EXPECT_THROW(apps::check_graph_device(Device::cpu()), InputError);
  // VGG-16's classifier has dropout, keyed by the step.
  std::shared_ptr<models::Classifier> vgg = models::make_model("vgg16", 10, 3, 1);
  vgg->to(Device::cuda());
  const data::Dataset set = synthetic(8, 3, 32, 5);
  try {
    apps::train_supervised(*vgg, set, nullptr, data::Normalization::unitcube(3), graph_loop(true),
                           "graph", nullptr);
    ADD_FAILURE() << "a model with dropout was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("dropout"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kd
