// The experiment layer's loops: supervised training, distillation from a (frozen) teacher
// ensemble, and evaluation with the paper's fidelity metrics. Presets and the CLI compose these.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "data/augment.h"
#include "data/dataset.h"
#include "engine/device.h"
#include "engine/distill_losses.h"
#include "engine/ops.h"
#include "models/classifier.h"
#include "models/ensemble.h"

namespace kd {
namespace apps {

constexpr int kEvalBatch = 1000;  // evaluation batches: dataset order, this many images each

struct OptimConfig {
  std::string name = "sgd";  // sgd | adam
  double lr = 0.05;
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 1e-4;
  double eta_min = 0.0;  // cosine annealing floor; the schedule steps once per epoch
};

struct LoopConfig {
  int epochs = 10;
  int batch = 128;
  OptimConfig optim;
  data::AugmentSpec augment;
  double mixup_alpha = 0;  // MixUp on distillation batches: lambda ~ Beta(a, a) per batch; 0 = off
  uint64_t seed = 0;
  int eval_every = 0;  // evaluate every N epochs (0: only after the last)
  Device device = Device::cpu();
  // A resumable loop (apps/loop_state.h): its state file is rewritten after every epoch and
  // every checkpoint_every steps (0: epochs only); empty = not kept. With resume, a loop whose
  // state file exists continues from it instead of starting.
  std::string state_file;
  int checkpoint_every = 0;
  bool resume = false;
  // Distillation: a fixed teacher's logits are computed once and reused, on the test set always
  // and on the distillation images when their batches draw no augmentation or MixUp (the
  // results are the same bits; off only to show that).
  bool logit_cache = true;
  // GPU: capture the step as a CUDA graph and replay it (apps/graphed_step.h); same results.
  bool cuda_graph = false;
};

struct DistillConfig {
  DistillKind kind = DistillKind::kForwardCE;
  double tau = 4.0;
  double alpha = 0.0;  // weight of the hard-label cross-entropy (paper: 0)
};

// Refuse settings no loop can run (InputError naming the flag). The loops call these; the CLI
// calls them too, before it reads data or creates a run directory.
void validate(const LoopConfig& config);
void validate(const DistillConfig& config);

// One row of metrics.csv: the epoch's mean training loss, and evaluation when it ran.
struct EpochRecord {
  int epoch = 0;  // 1-based, after this many epochs
  double lr = 0;
  double train_loss = 0;
  double seconds = 0;  // since the loop started
  bool evaluated = false;
  ClassifierStats test;
};
using EpochHook = std::function<void(const EpochRecord&)>;
using LogitsFn = std::function<Tensor(const Tensor& images)>;

// Accuracy, NLL, ECE of `model` on ds; with a teacher also agreement and KL(teacher || model),
// all at T = 1, unaugmented, under NoGradGuard. The model's train/eval mode is the caller's.
ClassifierStats evaluate(const LogitsFn& model, const LogitsFn* teacher, const data::Dataset& ds,
                         const data::Normalization& norm, Device device, int batch = kEvalBatch);
// Every example of ds once, in dataset order, unaugmented and normalized, in batches of `batch`
// (the last one may be smaller) on `device`, under NoGradGuard: the pass evaluation uses.
void for_each_eval_batch(const data::Dataset& ds, const data::Normalization& norm, Device device,
                         int batch,
                         const std::function<void(const Tensor& images, const Tensor& labels)>& fn);
ClassifierStats evaluate_model(models::Classifier& model, const models::Ensemble* teacher,
                               const data::Dataset& ds, const data::Normalization& norm,
                               Device device);

// Supervised cross-entropy training. `test` (optional) is evaluated per cfg.eval_every.
void train_supervised(models::Classifier& model, const data::Dataset& train,
                      const data::Dataset* test, const data::Normalization& norm,
                      const LoopConfig& cfg, const std::string& label, const EpochHook& hook);

// Distillation: each batch is shown to the teacher (eval mode, no grad) and to the student;
// loss = alpha * CE(student, y) + (1 - alpha) * distill(teacher, student; tau).
// Epoch length = one pass over distill_data.
void distill(models::Classifier& student, const models::Ensemble& teacher,
             const data::Dataset& distill_data, const data::Dataset* test,
             const data::Normalization& norm, const LoopConfig& cfg, const DistillConfig& dcfg,
             const std::string& label, const EpochHook& hook);


// One pass over `ds` in train mode with no gradient and no parameter update, in dataset order and
// without augmentation, so BatchNorm's running statistics follow the current weights (after an
// interpolated initialisation; paper-notes §5: momentum as in training, statistics not reset).
// The model is left in eval mode.
void reestimate_batch_norm(models::Classifier& model, const data::Dataset& ds,
                           const data::Normalization& norm, Device device, int batch);

}  // namespace apps
}  // namespace kd
