// Training, distillation and evaluation loops (see experiment.h). Both loops share one driver:
// per epoch set the cosine learning rate, walk shuffled batches, build each batch (augmented,
// normalized), run the step's loss, backward, optimizer step.
#include "apps/experiment.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <sstream>

#include "apps/progress.h"
#include "data/sampling.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"

namespace kd {
namespace apps {

namespace {

struct HostBatch {
  Tensor images, labels;
};

HostBatch build_batch(const data::Dataset& ds, const int64_t* idx, int count,
                      const data::Normalization& norm, const data::AugmentSpec& aug,
                      uint64_t seed, uint64_t step, Device device) {
  HostBatch b;
  b.images = Tensor::empty({count, ds.c, ds.h, ds.w});
  b.labels = Tensor::empty({count}, DType::I32);
  data::make_batch(ds, idx, count, norm, aug, seed, step, b.images.data<float>(),
                   b.labels.data<int32_t>());
  if (device.is_cuda()) {
    b.images = b.images.to(device);
    b.labels = b.labels.to(device);
  }
  return b;
}

std::unique_ptr<Optimizer> make_optimizer(const models::Classifier& model, const OptimConfig& o) {
  if (o.name == "sgd") {
    SgdParams h;
    h.lr = o.lr, h.momentum = o.momentum, h.nesterov = o.nesterov, h.weight_decay = o.weight_decay;
    return std::make_unique<Sgd>(model.parameters(), h);
  }
  if (o.name == "adam") {
    AdamParams h;
    h.lr = o.lr, h.weight_decay = o.weight_decay;
    return std::make_unique<Adam>(model.parameters(), h);
  }
  throw Error("make_optimizer: unknown optimizer '" + o.name + "' (validate() refuses it)");
}

using StepLoss = std::function<Tensor(const HostBatch&)>;

void run_loop(models::Classifier& model, const data::Dataset& train, const data::Dataset* test,
              const data::Normalization& norm, const LoopConfig& cfg, const std::string& label,
              const EpochHook& hook, const StepLoss& step_loss,
              const models::Ensemble* teacher_for_eval) {
  validate(cfg);
  KD_INPUT_CHECK(train.n >= 1, label << ": the training set is empty");
  auto optimizer = make_optimizer(model, cfg.optim);
  data::BatchLoader loader(train.n, cfg.batch, /*shuffle=*/true, cfg.seed);
  Progress progress(label, int64_t(cfg.epochs) * loader.batches_per_epoch());
  auto start = std::chrono::steady_clock::now();
  int64_t done = 0;
  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    double lr = cosine_lr(cfg.optim.lr, cfg.optim.eta_min, epoch, cfg.epochs);
    optimizer->set_lr(lr);
    model.train();
    loader.start_epoch(epoch);
    data::Batch batch;
    double loss_sum = 0;
    int64_t seen = 0;
    while (loader.next(&batch)) {
      HostBatch b = build_batch(train, batch.indices, batch.count, norm, cfg.augment, cfg.seed,
                                batch.step, cfg.device);
      Tensor loss = step_loss(b);
      double value = loss.item();
      KD_CHECK(std::isfinite(value), label << ": loss became " << value << " at epoch "
                                          << epoch + 1 << " (lower the learning rate?)");
      optimizer->zero_grad();
      backward(loss);
      optimizer->step();
      loss_sum += value * batch.count;
      seen += batch.count;
      ++done;
      std::ostringstream status;
      status << "epoch " << epoch + 1 << "/" << cfg.epochs << " loss " << value;
      progress.update(done, status.str());
    }
    EpochRecord rec;
    rec.epoch = epoch + 1;
    rec.lr = lr;
    rec.train_loss = loss_sum / double(seen);
    bool last = epoch + 1 == cfg.epochs;
    if (test && (last || (cfg.eval_every > 0 && (epoch + 1) % cfg.eval_every == 0))) {
      rec.evaluated = true;
      rec.test = evaluate_model(model, teacher_for_eval, *test, norm, cfg.device);
      model.train();
    }
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (hook) hook(rec);
  }
  std::ostringstream status;
  status << "done in " << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s";
  progress.finish(status.str());
  model.eval();
}

}  // namespace

void validate(const LoopConfig& c) {
  KD_INPUT_CHECK(c.epochs >= 1, "--epochs: expected at least 1, got " << c.epochs);
  KD_INPUT_CHECK(c.batch >= 1, "--batch: expected at least 1, got " << c.batch);
  KD_INPUT_CHECK(c.optim.name == "sgd" || c.optim.name == "adam",
                 "--optimizer: expected sgd or adam, got '" << c.optim.name << "'");
  KD_INPUT_CHECK(c.optim.lr > 0 && std::isfinite(c.optim.lr),
                 "--lr: expected a positive learning rate, got " << c.optim.lr);
  KD_INPUT_CHECK(c.optim.eta_min >= 0, "--eta-min: expected >= 0, got " << c.optim.eta_min);
  KD_INPUT_CHECK(c.optim.momentum >= 0 && c.optim.momentum < 1,
                 "--momentum: expected 0 <= momentum < 1, got " << c.optim.momentum);
  KD_INPUT_CHECK(c.optim.weight_decay >= 0 && std::isfinite(c.optim.weight_decay),
                 "--weight-decay: expected >= 0, got " << c.optim.weight_decay);
  KD_INPUT_CHECK(c.augment.crop_pad >= 0, "--crop-pad: expected >= 0, got " << c.augment.crop_pad);
  KD_INPUT_CHECK(c.eval_every >= 0, "--eval-every: expected >= 0, got " << c.eval_every);
}

void validate(const DistillConfig& c) {
  KD_INPUT_CHECK(c.tau > 0 && std::isfinite(c.tau),
                 "--tau: expected a positive temperature, got " << c.tau);
  KD_INPUT_CHECK(c.alpha >= 0 && c.alpha <= 1, "--alpha: expected 0..1, got " << c.alpha);
}

ClassifierStats evaluate(const LogitsFn& model, const LogitsFn* teacher, const data::Dataset& ds,
                         const data::Normalization& norm, Device device, int batch) {
  NoGradGuard no_grad;
  ClassifierStats stats;
  data::BatchLoader loader(ds.n, batch, /*shuffle=*/false, 0);
  loader.start_epoch(0);
  data::Batch b;
  while (loader.next(&b)) {
    HostBatch hb = build_batch(ds, b.indices, b.count, norm, data::AugmentSpec{}, 0, 0, device);
    Tensor logits = model(hb.images).to(Device::cpu());
    Tensor teacher_logits = teacher ? (*teacher)(hb.images).to(Device::cpu()) : Tensor();
    Tensor labels = hb.labels.to(Device::cpu());
    cpu::classifier_stats<float>(b.count, int(logits.size(1)), logits.data<float>(),
                                 labels.data<int32_t>(),
                                 teacher ? teacher_logits.data<float>() : nullptr, &stats);
  }
  return stats;
}

ClassifierStats evaluate_model(models::Classifier& model, const models::Ensemble* teacher,
                               const data::Dataset& ds, const data::Normalization& norm,
                               Device device) {
  model.eval();
  LogitsFn fn = [&](const Tensor& x) { return model.forward(x); };
  LogitsFn tfn = [&](const Tensor& x) { return teacher->forward(x); };
  return evaluate(fn, teacher ? &tfn : nullptr, ds, norm, device);
}

void train_supervised(models::Classifier& model, const data::Dataset& train,
                      const data::Dataset* test, const data::Normalization& norm,
                      const LoopConfig& cfg, const std::string& label, const EpochHook& hook) {
  StepLoss step = [&](const HostBatch& b) {
    return ops::cross_entropy(model.forward(b.images), b.labels);
  };
  run_loop(model, train, test, norm, cfg, label, hook, step, nullptr);
}

void distill(models::Classifier& student, const models::Ensemble& teacher,
             const data::Dataset& distill_data, const data::Dataset* test,
             const data::Normalization& norm, const LoopConfig& cfg, const DistillConfig& dcfg,
             const std::string& label, const EpochHook& hook) {
  validate(dcfg);
  KD_INPUT_CHECK(teacher.num_classes() == student.num_classes,
                 "teacher has " << teacher.num_classes() << " classes, student "
                                << student.num_classes);
  StepLoss step = [&](const HostBatch& b) {
    Tensor teacher_logits = teacher.forward(b.images);  // eval mode, NoGradGuard inside
    Tensor logits = student.forward(b.images);
    Tensor loss = ops::distill_loss(dcfg.kind, teacher_logits, logits, dcfg.tau);
    if (dcfg.alpha > 0)
      loss = ops::add(ops::scale(ops::cross_entropy(logits, b.labels), dcfg.alpha),
                      ops::scale(loss, 1.0 - dcfg.alpha));
    return loss;
  };
  run_loop(student, distill_data, test, norm, cfg, label, hook, step, &teacher);
}

DistillKind parse_distill_kind(const std::string& name) {
  if (name == "fwd-ce") return DistillKind::kForwardCE;
  if (name == "kl") return DistillKind::kKL;
  if (name == "rev-ce") return DistillKind::kReverseCE;
  if (name == "sym-kl") return DistillKind::kSymmetricKL;
  if (name == "brier") return DistillKind::kBrier;
  if (name == "hard-ce") return DistillKind::kHardCE;
  throw InputError("--loss: expected fwd-ce, kl, rev-ce, sym-kl, brier or hard-ce, got '" + name +
                   "'");
}

const char* distill_kind_name(DistillKind kind) {
  switch (kind) {
    case DistillKind::kForwardCE: return "fwd-ce";
    case DistillKind::kKL: return "kl";
    case DistillKind::kReverseCE: return "rev-ce";
    case DistillKind::kSymmetricKL: return "sym-kl";
    case DistillKind::kBrier: return "brier";
    case DistillKind::kHardCE: return "hard-ce";
  }
  return "?";
}

}  // namespace apps
}  // namespace kd
