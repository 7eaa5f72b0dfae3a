// Training, distillation and evaluation loops (see experiment.h). Both loops share one driver:
// per epoch set the cosine learning rate, walk shuffled batches, build each batch (augmented,
// normalized), run the step's loss, backward, optimizer step. On the GPU the dataset is uploaded
// once, each epoch's order once, and batches are built on the device; the step's loss stays there
// too and is read back only every kLossReadInterval steps and at the end of the epoch.
#include "apps/experiment.h"
#include "apps/interrupt.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>

#include "apps/graphed_step.h"
#include "apps/loop_state.h"
#include "apps/progress.h"
#include "data/device_batch.h"
#include "data/sampling.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/profile.h"

namespace kd {
namespace apps {

namespace {

struct HostBatch {
  Tensor images, labels;
  Tensor teacher;  // distillation from cached logits: the teacher's rows for this batch
  int64_t epoch_offset = 0;  // where the batch's first example sits in the epoch's order
};

constexpr int kLossReadInterval = 50;

// Builds the batches of one dataset on the loop's device. CPU: data::make_batch. GPU: the
// dataset's uint8 images and labels are uploaded at construction, each epoch's order by
// start_epoch, and data::make_batch_device draws the same augmentation from the same counters.
class BatchBuilder {
 public:
  BatchBuilder(const data::Dataset& ds, const data::Normalization& norm,
               const data::AugmentSpec& aug, double mixup_alpha, uint64_t seed, Device device)
      : ds_(ds), norm_(norm), aug_(aug), mixup_alpha_(mixup_alpha), seed_(seed), device_(device) {
    if (!device.is_cuda()) return;
    profile::Range range("upload dataset");
    images_ = Tensor::empty({ds.n, ds.c, ds.h, ds.w}, DType::U8, device);
    labels_ = Tensor::empty({ds.n}, DType::I32, device);
    // Straight from the dataset's vectors: no host tensor copy of the whole set first.
    KD_CHECK(int64_t(ds.images.size()) == images_.numel() && int64_t(ds.labels.size()) == ds.n,
             "BatchBuilder: dataset arrays do not match n=" << ds.n << " c=" << ds.c
                                                            << " h=" << ds.h << " w=" << ds.w);
    images_.write_from_host(ds.images.data());
    labels_.write_from_host(ds.labels.data());
  }

  // GPU: the order's indices go to the device once per epoch; batches index into them.
  void start_epoch(const std::vector<int64_t>& order) {
    order_host_ = order.data();
    if (!device_.is_cuda() || order.empty()) return;
    order_ = Tensor::from_vector<int64_t>({int64_t(order.size())}, order).to(device_);
  }

  HostBatch make(const int64_t* idx, int count, uint64_t step) const {
    profile::Range range("data");
    HostBatch b;
    KD_CHECK(order_host_ && idx >= order_host_, "BatchBuilder: make() before start_epoch()");
    b.epoch_offset = idx - order_host_;
    b.images = Tensor::empty({count, ds_.c, ds_.h, ds_.w}, DType::F32, device_);
    b.labels = Tensor::empty({count}, DType::I32, device_);
    const int64_t sample = int64_t(ds_.c) * ds_.h * ds_.w;
    data::MixupDraw mix;
    if (mixup_alpha_ > 0) mix = data::draw_mixup(mixup_alpha_, count, seed_, step);
    if (!device_.is_cuda()) {
      data::make_batch(ds_, idx, count, norm_, aug_, seed_, step, b.images.data<float>(),
                       b.labels.data<int32_t>());
      if (mixup_alpha_ > 0) data::mixup_batch(b.images.data<float>(), count, sample, mix);
      return b;
    }
    KD_CHECK(order_.defined() && idx >= order_host_ && idx + count <= order_host_ + order_.numel(),
             "BatchBuilder: batch indices outside the epoch order given to start_epoch");
    data::DeviceDatasetView view;
    view.images = images_.data<uint8_t>();
    view.labels = labels_.data<int32_t>();
    view.n = ds_.n, view.c = ds_.c, view.h = ds_.h, view.w = ds_.w;
    data::make_batch_device(view, order_.data<int64_t>() + (idx - order_host_), count, norm_,
                            aug_, seed_, step, b.images.data<float>(), b.labels.data<int32_t>());
    if (mixup_alpha_ > 0) data::mixup_device(b.images.data<float>(), count, sample, mix);
    return b;
  }

 private:
  const data::Dataset& ds_;
  data::Normalization norm_;
  data::AugmentSpec aug_;
  double mixup_alpha_;
  uint64_t seed_;
  Device device_;
  Tensor images_, labels_, order_;
  const int64_t* order_host_ = nullptr;
};

// The step losses of one epoch. CPU: read at once. GPU: each step's device scalar is copied
// into a device array (no synchronization); read() brings the unread ones back in one copy into
// a pinned host buffer.
class LossLog {
 public:
  LossLog(Device device, int64_t capacity)
      : device_(device), capacity_(std::max<int64_t>(capacity, 1)) {
    if (device.is_cuda())
      pinned_ = std::make_unique<PinnedBuffer>(device, size_t(capacity_) * sizeof(double));
  }
  LossLog(const LossLog&) = delete;
  LossLog& operator=(const LossLog&) = delete;
  void add(const Tensor& loss, int count) {
    counts_.push_back(count);
    if (!device_.is_cuda()) {
      values_.push_back(loss.item());
      return;
    }
    if (!slots_.defined()) slots_ = Tensor::empty({capacity_}, loss.dtype(), device_);
    KD_CHECK(int64_t(counts_.size()) <= capacity_ && loss.dtype() == slots_.dtype(),
             "LossLog: more steps than the epoch has, or a loss of another dtype");
    slots_.copy_range_from(int64_t(counts_.size()) - 1, loss.view({1}));
  }
  // Values of every step so far; the GPU reads the new ones back in one copy.
  const std::vector<double>& read() {
    if (device_.is_cuda() && values_.size() < counts_.size()) {
      const int64_t first = int64_t(values_.size()), n = int64_t(counts_.size()) - first;
      void* host = pinned_->data();
      slots_.read_to_host(first, n, host);
      for (int64_t i = 0; i < n; ++i)
        values_.push_back(slots_.dtype() == DType::F32 ? double(static_cast<float*>(host)[i])
                                                       : static_cast<double*>(host)[i]);
    }
    return values_;
  }
  double weighted_mean() {
    const std::vector<double>& v = read();
    double sum = 0;
    int64_t seen = 0;
    for (size_t i = 0; i < v.size(); ++i) sum += v[i] * counts_[i], seen += counts_[i];
    return seen ? sum / double(seen) : 0.0;
  }
  size_t steps() const { return counts_.size(); }
  const std::vector<int>& counts() const { return counts_; }
  // A resumed epoch starts with the losses of the steps taken before the interruption.
  void restore(const std::vector<double>& values, const std::vector<int64_t>& counts) {
    KD_CHECK(counts_.empty() && values.size() == counts.size() &&
                 int64_t(counts.size()) <= capacity_,
             "LossLog::restore: only into an empty log, and no more steps than the epoch has");
    values_ = values;
    for (int64_t c : counts) counts_.push_back(int(c));
  }

 private:
  Device device_;
  int64_t capacity_;
  Tensor slots_;
  std::unique_ptr<PinnedBuffer> pinned_;
  std::vector<int> counts_;
  std::vector<double> values_;
};

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

// Every example of ds once, in dataset order, unaugmented, in batches on `device`, with no tape.
void for_each_ordered_batch(const data::Dataset& ds, const data::Normalization& norm,
                            Device device, int batch,
                            const std::function<void(const HostBatch&)>& fn) {
  NoGradGuard no_grad;
  data::BatchLoader loader(ds.n, batch, /*shuffle=*/false, 0);
  loader.start_epoch(0);
  BatchBuilder builder(ds, norm, data::AugmentSpec{}, /*mixup_alpha=*/0, 0, device);
  builder.start_epoch(loader.epoch_order());
  data::Batch b;
  while (loader.next(&b)) fn(builder.make(b.indices, b.count, 0));
}

// The logits of a fixed model (a teacher) on every example of a dataset, computed once in
// dataset order with the batching `for_each_ordered_batch` uses, then served by position: a
// step's rows come out of the copy laid out in its epoch's order (one row copy per step instead
// of the ensemble's forward), an evaluation's rows in dataset order. The values are those the
// model gives on these batches; the tests check that the ones it gives on shuffled batches are
// the same bits.
class LogitCache {
 public:
  LogitCache(const LogitsFn& model, const data::Dataset& ds, const data::Normalization& norm,
             Device device, int batch)
      : device_(device) {
    profile::Range range("cache teacher logits");
    for_each_ordered_batch(ds, norm, device, batch, [&](const HostBatch& hb) {
      Tensor logits = model(hb.images);
      if (!host_.defined()) host_ = Tensor::empty({ds.n, logits.size(1)}, logits.dtype());
      host_.copy_range_from(hb.epoch_offset * logits.size(1), logits);
    });
    epoch_ = device.is_cuda() ? host_.to(device) : host_;
  }
  // Lays the rows out in `order` (positions into the dataset) for rows_at(); until the first
  // call they are in dataset order.
  void start_epoch(const std::vector<int64_t>& order) {
    KD_CHECK(int64_t(order.size()) == host_.size(0), "LogitCache: an order of " << order.size()
                                                         << " for " << host_.size(0) << " rows");
    Tensor permuted = Tensor::empty(host_.shape(), host_.dtype());
    const size_t row = host_.nbytes() / size_t(std::max<int64_t>(host_.size(0), 1));
    const char* src = static_cast<const char*>(host_.raw());
    char* dst = static_cast<char*>(permuted.raw());
    for (size_t i = 0; i < order.size(); ++i)
      std::memcpy(dst + i * row, src + size_t(order[i]) * row, row);
    epoch_ = device_.is_cuda() ? permuted.to(device_) : permuted;
  }
  Tensor rows_at(int64_t offset, int64_t count) const { return epoch_.rows(offset, count); }

 private:
  Device device_;
  Tensor host_;   // [n, classes], dataset order, on the host
  Tensor epoch_;  // the same rows in the current order, on the device
};

// A teacher's logits for one evaluation batch: computed from its images or served by a cache.
using TeacherRows = std::function<Tensor(const HostBatch&)>;

ClassifierStats evaluate_rows(const LogitsFn& model, const TeacherRows& teacher,
                              const data::Dataset& ds, const data::Normalization& norm,
                              Device device, int batch) {
  profile::Range range("evaluate");
  ClassifierStats stats;
  for_each_ordered_batch(ds, norm, device, batch, [&](const HostBatch& hb) {
    Tensor logits = model(hb.images);
    Tensor teacher_logits = teacher ? teacher(hb) : Tensor();
    ops::accumulate_classifier_stats(logits, hb.labels, teacher_logits, &stats);
  });
  return stats;
}

using StepLoss = std::function<Tensor(const HostBatch&)>;
using EpochStart = std::function<void(const std::vector<int64_t>& order)>;
// Fills HostBatch::teacher before the step (outside a captured graph: its rows move every step).
using StepTeacher = std::function<Tensor(const HostBatch&)>;

// Throws when a step's loss is not finite (the run diverged).
void check_finite(const std::vector<double>& losses, size_t from, const std::string& label,
                  int epoch) {
  for (size_t i = from; i < losses.size(); ++i)
    if (!std::isfinite(losses[i]))
      throw Error(label + ": loss became " + std::to_string(losses[i]) + " at epoch " +
                  std::to_string(epoch + 1) +
                  " (the run diverged: lower the learning rate? a non-finite teacher?)");
}

// $KDLAB_KILL_AFTER_STEP=N: the process kills itself with SIGKILL after the N-th training step
// it takes (counted over all its loops, so a later loop of one command can be hit too), once that
// step's state file, if any, is written, as `kill -9` from outside would. The kill-and-resume
// tests use it to stop a run at an exact point.
void maybe_kill_after_step() {
  static const int64_t kill_after = [] {
    const char* value = std::getenv("KDLAB_KILL_AFTER_STEP");
    return value ? std::atoll(value) : 0;
  }();
  static int64_t steps_taken = 0;
  if (++steps_taken == kill_after) std::raise(SIGKILL);
}

[[noreturn]] void throw_interrupted(const LoopConfig& cfg, const std::string& label, int64_t done) {
  const int signal_number = pending_interrupt();
  std::ostringstream what;
  what << label << " stopped by " << signal_name(signal_number) << " after step " << done;
  std::string dir;
  if (!cfg.state_file.empty()) {
    dir = std::filesystem::path(cfg.state_file).parent_path().string();
    what << "; its state is saved in " << cfg.state_file;
  }
  throw Interrupted(signal_number, what.str(), dir);
}

void run_loop(models::Classifier& model, const data::Dataset& train, const data::Dataset* test,
              const data::Normalization& norm, const LoopConfig& cfg, const std::string& label,
              const EpochHook& hook, const StepLoss& step_loss,
              const models::Ensemble* teacher_for_eval, const EpochStart& epoch_start = nullptr,
              const StepTeacher& step_teacher = nullptr) {
  validate(cfg);
  KD_INPUT_CHECK(train.n >= 1, label << ": the training set is empty");
  auto optimizer = make_optimizer(model, cfg.optim);
  data::BatchLoader loader(train.n, cfg.batch, /*shuffle=*/true, cfg.seed);
  const LoopShape shape{cfg.epochs, loader.batches_per_epoch(), label};
  std::unique_ptr<LogitCache> test_teacher;
  LoopPosition resumed;
  std::error_code ec;
  if (cfg.resume && !cfg.state_file.empty() && std::filesystem::exists(cfg.state_file, ec))
    resumed = load_loop_state(cfg.state_file, shape, model, *optimizer);
  BatchBuilder builder(train, norm, cfg.augment, cfg.mixup_alpha, cfg.seed, cfg.device);
  std::unique_ptr<GraphedStep> graphed;
  if (cfg.cuda_graph) {
    check_graphable(model, cfg.device);
    graphed = std::make_unique<GraphedStep>(cfg.device, *optimizer);
  }
  // The whole step on one batch: loss, backward, update; returns the loss.
  auto train_step = [&](const HostBatch& hb) {
    Tensor loss;
    {
      profile::Range range("forward");
      loss = step_loss(hb);
    }
    {
      profile::Range range("backward");
      optimizer->zero_grad();
      backward(loss);
      // Nodes the loss does not depend on would stay on the tape and pile up step after step.
      KD_CHECK(tape_size() == 0, "training step: " << tape_size()
                                     << " recorded ops do not feed the loss; compute side "
                                        "results under NoGradGuard");
    }
    {
      profile::Range range("optimizer");
      optimizer->step();
    }
    return loss;
  };
  Progress progress(label, int64_t(cfg.epochs) * loader.batches_per_epoch());
  // A resumed loop's clock continues from the seconds the interrupted run had spent.
  auto start = std::chrono::steady_clock::now() -
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double>(resumed.seconds));
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  int64_t done = resumed.steps_done;
  for (int epoch = resumed.epoch; epoch < cfg.epochs; ++epoch) {
    double lr = cosine_lr(cfg.optim.lr, cfg.optim.eta_min, epoch, cfg.epochs);
    optimizer->set_lr(lr);
    model.train();
    loader.start_epoch(epoch);
    builder.start_epoch(loader.epoch_order());
    if (epoch_start) epoch_start(loader.epoch_order());
    LossLog losses(cfg.device, loader.batches_per_epoch());
    data::Batch batch;
    if (epoch == resumed.epoch && resumed.step_in_epoch > 0) {
      for (int64_t i = 0; i < resumed.step_in_epoch; ++i) loader.next(&batch);
      losses.restore(resumed.losses, resumed.counts);
    }
    size_t checked = losses.steps();
    auto save_state = [&](int at_epoch, bool epoch_done) {
      if (cfg.state_file.empty()) return;
      profile::Range range("save state");
      LoopPosition pos;
      pos.epoch = at_epoch;
      pos.steps_done = done;
      pos.seconds = elapsed();
      if (!epoch_done) {
        pos.losses = losses.read();
        pos.counts.assign(losses.counts().begin(), losses.counts().end());
        pos.step_in_epoch = int64_t(pos.losses.size());
      }
      save_loop_state(cfg.state_file, shape, model, *optimizer, pos);
    };
    while (loader.next(&batch)) {
      profile::step_begin();
      HostBatch b = builder.make(batch.indices, batch.count, batch.step);
      if (step_teacher) b.teacher = step_teacher(b);
      model.set_step(batch.step);  // keys the dropout masks (nn::Dropout), so a resume repeats them
      Tensor loss;
      if (graphed) {
        loss = graphed->run({b.images, b.labels, b.teacher}, [&](const std::vector<Tensor>& in) {
                              HostBatch fixed = b;
                              fixed.images = in[0], fixed.labels = in[1], fixed.teacher = in[2];
                              return train_step(fixed);
                            });
      } else {
        loss = train_step(b);
      }
      losses.add(loss, batch.count);
      profile::step_end();
      ++done;
      // The CPU has every loss at once; the GPU reads them back every kLossReadInterval steps.
      if (!cfg.device.is_cuda() || losses.steps() % kLossReadInterval == 0) {
        const std::vector<double>& values = losses.read();
        check_finite(values, checked, label, epoch);
        checked = values.size();
        std::ostringstream status;
        status << "epoch " << epoch + 1 << "/" << cfg.epochs << " loss " << values.back();
        progress.update(done, status.str());
      }
      const bool epoch_end = int64_t(losses.steps()) == loader.batches_per_epoch();
      if (cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0 && !epoch_end) {
        check_finite(losses.read(), checked, label, epoch);  // never save a diverged run
        save_state(epoch, false);
      }
      if (!epoch_end) maybe_kill_after_step();
      // A signal mid-epoch: save this step's state and stop (at an epoch's end, the epoch is
      // finished first, below).
      if (!epoch_end && pending_interrupt()) {
        check_finite(losses.read(), checked, label, epoch);
        save_state(epoch, false);
        throw_interrupted(cfg, label, done);
      }
    }
    check_finite(losses.read(), checked, label, epoch);
    EpochRecord rec;
    rec.epoch = epoch + 1;
    rec.lr = lr;
    rec.train_loss = losses.weighted_mean();
    bool last = epoch + 1 == cfg.epochs;
    if (test && (last || (cfg.eval_every > 0 && (epoch + 1) % cfg.eval_every == 0))) {
      rec.evaluated = true;
      if (teacher_for_eval && cfg.logit_cache && !test_teacher) {
        // The teacher is fixed: its test-set logits are the same at every evaluation. The cache
        // starts in dataset order, the order evaluation reads it in.
        LogitsFn teacher_fn = [&](const Tensor& x) { return teacher_for_eval->forward(x); };
        test_teacher = std::make_unique<LogitCache>(teacher_fn, *test, norm, cfg.device,
                                                    kEvalBatch);
      }
      model.eval();
      LogitsFn student_fn = [&](const Tensor& x) { return model.forward(x); };
      TeacherRows teacher_rows;
      if (test_teacher)
        teacher_rows = [&](const HostBatch& hb) {
          return test_teacher->rows_at(hb.epoch_offset, hb.images.size(0));
        };
      else if (teacher_for_eval)
        teacher_rows = [&](const HostBatch& hb) { return teacher_for_eval->forward(hb.images); };
      rec.test = evaluate_rows(student_fn, teacher_rows, *test, norm, cfg.device, kEvalBatch);
      model.train();
    }
    rec.seconds = elapsed();
    if (hook) hook(rec);
    // After the hook: a kill between the two leaves a metrics row the state does not count yet,
    // and the resumed command drops it and writes the same row again.
    save_state(epoch + 1, true);
    maybe_kill_after_step();
    if (pending_interrupt() && epoch + 1 < cfg.epochs) throw_interrupted(cfg, label, done);
  }
  std::ostringstream status;
  status << "done in " << elapsed() << " s";
  progress.finish(status.str());
  model.eval();
}

}  // namespace

void validate(const LoopConfig& c) {
  KD_INPUT_CHECK(c.epochs >= 1, "--epochs: expected at least 1, got " << c.epochs);
  KD_INPUT_CHECK(c.batch >= 1, "--batch: expected at least 1, got " << c.batch);
  KD_INPUT_CHECK(c.optim.name == "sgd" || c.optim.name == "adam",
                 "--optimizer: expected sgd or adam, got '" << c.optim.name << "'");
  // 0 is allowed: distill --init-interpolate 1 scales the LR to eta-min, 0 by default, as the
  // paper's code does (the student then stays the teacher).
  KD_INPUT_CHECK(c.optim.lr >= 0 && std::isfinite(c.optim.lr),
                 "--lr: expected a learning rate >= 0, got " << c.optim.lr);
  KD_INPUT_CHECK(c.optim.eta_min >= 0 && std::isfinite(c.optim.eta_min),
                 "--eta-min: expected a finite learning-rate floor >= 0, got " << c.optim.eta_min);
  KD_INPUT_CHECK(c.optim.momentum >= 0 && c.optim.momentum < 1,
                 "--momentum: expected 0 <= momentum < 1, got " << c.optim.momentum);
  KD_INPUT_CHECK(c.optim.weight_decay >= 0 && std::isfinite(c.optim.weight_decay),
                 "--weight-decay: expected >= 0, got " << c.optim.weight_decay);
  // Bounded so that image size + 2 * padding cannot overflow the augmentation's int arithmetic.
  KD_INPUT_CHECK(c.augment.crop_pad >= 0 && c.augment.crop_pad <= 1024,
                 "--crop-pad: expected 0..1024, got " << c.augment.crop_pad);
  data::make_augment_plan(c.augment);  // refuses out-of-range augmentation settings
  KD_INPUT_CHECK(c.mixup_alpha >= 0 && std::isfinite(c.mixup_alpha),
                 "--mixup: expected a Beta(alpha, alpha) parameter >= 0 (0 = off), got "
                     << c.mixup_alpha);
  KD_INPUT_CHECK(c.eval_every >= 0, "--eval-every: expected >= 0, got " << c.eval_every);
  KD_INPUT_CHECK(c.checkpoint_every >= 0,
                 "--checkpoint-every: expected a number of steps >= 0 (0 = every epoch only), got "
                     << c.checkpoint_every);
}

void validate(const DistillConfig& c) {
  KD_INPUT_CHECK(c.tau > 0 && std::isfinite(c.tau),
                 "--tau: expected a positive temperature, got " << c.tau);
  KD_INPUT_CHECK(c.alpha >= 0 && c.alpha <= 1, "--alpha: expected 0..1, got " << c.alpha);
}

void for_each_eval_batch(const data::Dataset& ds, const data::Normalization& norm, Device device,
                         int batch,
                         const std::function<void(const Tensor& images, const Tensor& labels)>& fn) {
  for_each_ordered_batch(ds, norm, device, batch,
                         [&](const HostBatch& hb) { fn(hb.images, hb.labels); });
}

ClassifierStats evaluate(const LogitsFn& model, const LogitsFn* teacher, const data::Dataset& ds,
                         const data::Normalization& norm, Device device, int batch) {
  TeacherRows rows;
  if (teacher) rows = [&](const HostBatch& hb) { return (*teacher)(hb.images); };
  return evaluate_rows(model, rows, ds, norm, device, batch);
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
  KD_INPUT_CHECK(cfg.mixup_alpha == 0,
                 "--mixup: MixUp is for distillation, where the teacher labels the mixed images");
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
  validate(cfg);
  // Without random augmentation or MixUp, an image's batch holds the same pixels every epoch, so
  // the fixed teacher's logits on it are computed once instead of every step.
  std::unique_ptr<LogitCache> cache;
  if (cfg.logit_cache && !data::is_random(cfg.augment) && cfg.mixup_alpha == 0) {
    LogitsFn teacher_fn = [&](const Tensor& x) { return teacher.forward(x); };
    cache = std::make_unique<LogitCache>(teacher_fn, distill_data, norm, cfg.device, cfg.batch);
  }
  EpochStart epoch_start = [&](const std::vector<int64_t>& order) {
    if (cache) cache->start_epoch(order);
  };
  StepTeacher step_teacher;
  if (cache)
    step_teacher = [&](const HostBatch& b) {
      return cache->rows_at(b.epoch_offset, b.images.size(0));
    };
  StepLoss step = [&](const HostBatch& b) {
    Tensor teacher_logits = b.teacher.defined() ? b.teacher
                                                : teacher.forward(b.images);  // eval mode, NoGradGuard inside
    Tensor logits = student.forward(b.images);
    Tensor loss = ops::distill_loss(dcfg.kind, teacher_logits, logits, dcfg.tau);
    if (dcfg.alpha > 0)
      loss = ops::add(ops::scale(ops::cross_entropy(logits, b.labels), dcfg.alpha),
                      ops::scale(loss, 1.0 - dcfg.alpha));
    return loss;
  };
  run_loop(student, distill_data, test, norm, cfg, label, hook, step, &teacher, epoch_start,
           step_teacher);
}

void reestimate_batch_norm(models::Classifier& model, const data::Dataset& ds,
                           const data::Normalization& norm, Device device, int batch) {
  profile::Range range("re-estimate batchnorm");
  model.train();
  for_each_ordered_batch(ds, norm, device, batch,
                         [&](const HostBatch& hb) { model.forward(hb.images); });
  model.eval();
}

}  // namespace apps
}  // namespace kd
