// train / distill / eval subcommands: load data, build or load models, run the loops of
// experiment.cpp, and write the run directory (config.json, metrics.csv, summary.json,
// checkpoints, log.txt).
#include "apps/commands.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "apps/cka.h"
#include "apps/graphed_step.h"
#include "apps/loop_state.h"
#include "apps/model_io.h"
#include "models/interpolate.h"
#include "apps/report.h"
#include "apps/run_dir.h"
#include "data/datasets.h"
#include "data/sampling.h"
#include "engine/profile.h"
#include "engine/runtime_config.h"

namespace kd {
namespace apps {

namespace {

nlohmann::json loop_json(const LoopConfig& c) {
  nlohmann::json j = {{"epochs", c.epochs}, {"batch", c.batch}, {"optimizer", c.optim.name},
                      {"lr", c.optim.lr}, {"momentum", c.optim.momentum},
                      {"nesterov", c.optim.nesterov}, {"weight_decay", c.optim.weight_decay},
                      {"eta_min", c.optim.eta_min}, {"schedule", "cosine, stepped per epoch"},
                      {"crop_pad", c.augment.crop_pad}, {"hflip", c.augment.hflip},
                      {"vflip", c.augment.vflip}, {"rotation", c.augment.rotation_degrees},
                      {"brightness", c.augment.brightness}, {"contrast", c.augment.contrast},
                      {"saturation", c.augment.saturation}, {"hue", c.augment.hue},
                      {"noise_p", c.augment.noise_p}, {"mixup_alpha", c.mixup_alpha},
                      {"seed", c.seed},
                      {"eval_every", c.eval_every}, {"checkpoint_every", c.checkpoint_every},
                      {"device", c.device.str()}};
  if (c.device.is_cuda()) {
    const GpuKernels k = runtime_config().gpu_kernels;
    const MathMode m = runtime_config().math;
    j["gpu"] = {{"name", device_name(c.device)}, {"conv", gpu_impl_name(k.conv)},
                {"bn", gpu_impl_name(k.bn)}, {"deterministic", m.deterministic},
                {"tf32", m.tf32 && !m.deterministic}, {"cudnn_find", m.find},
                {"cuda_graph", c.cuda_graph}};
  } else {
    j["cpu"] = {{"conv", cpu_conv_name(runtime_config().cpu_conv)}};
  }
  return j;
}

nlohmann::json stats_json(const ClassifierStats& s, bool with_teacher) {
  nlohmann::json j = {{"count", s.count}, {"accuracy", s.accuracy()}, {"nll", s.nll()},
                      {"ece", s.ece()}};
  if (with_teacher) {
    j["agreement"] = s.agreement();
    j["kl_teacher_student"] = s.kl();
  }
  return j;
}

EpochHook metrics_writer(RunDir& run, bool with_teacher) {
  return [&run, with_teacher](const EpochRecord& r) {
    auto f = [](double v) { return format_fixed(v, 6); };
    std::vector<std::pair<std::string, std::string>> row = {
        {"epoch", std::to_string(r.epoch)}, {"lr", f(r.lr)}, {"train_loss", f(r.train_loss)},
        {"test_acc", r.evaluated ? f(r.test.accuracy()) : ""},
        {"test_nll", r.evaluated ? f(r.test.nll()) : ""},
        {"test_ece", r.evaluated ? f(r.test.ece()) : ""}};
    if (with_teacher) {
      row.push_back({"test_agree", r.evaluated ? f(r.test.agreement()) : ""});
      row.push_back({"test_kl", r.evaluated ? f(r.test.kl()) : ""});
    }
    row.push_back({"seconds", format_fixed(r.seconds, 2)});
    run.append_metrics(row);
    if (r.evaluated)
      run.log("epoch " + std::to_string(r.epoch) + ": test acc " +
              format_percent(r.test.accuracy(), 2) +
              (with_teacher ? ", agreement " + format_percent(r.test.agreement(), 2) : ""));
  };
}

uint64_t subset_seed(const CommonOptions& common) {
  KD_INPUT_CHECK(common.subset_seed >= -1, "--subset-seed: expected >= 0, got " << common.subset_seed);
  return common.subset_seed < 0 ? common.seed : uint64_t(common.subset_seed);
}

data::Dataset training_subset(const data::Dataset& train, int per_class, int64_t size,
                              uint64_t seed, const char* size_flag = "--subset-size") {
  KD_INPUT_CHECK(per_class == 0 || size == 0,
                 "--subset-per-class and --subset-size: give at most one");
  if (per_class > 0)
    return train.subset(data::stratified_subset_indices(train.labels, per_class, seed,
                                                        train.num_classes));
  if (size > 0) {
    KD_INPUT_CHECK(size <= train.n, size_flag << " " << size << ": the training set has only "
                                                      << train.n << " images");
    return train.subset(data::random_subset_indices(train.n, size, seed));
  }
  return train;
}

// "10 classes, 1x28x28 images": what must agree between checkpoints used together.
std::string describe_model(const models::Classifier& m) {
  return std::to_string(m.num_classes) + " classes, " + std::to_string(m.in_channels) + "x" +
         std::to_string(m.image_size) + "x" + std::to_string(m.image_size) + " images";
}

// Models used together (an ensemble's members, a model and its teachers) read the same images and
// compare probabilities over the same classes.
bool same_classes_and_input(const models::Classifier& a, const models::Classifier& b) {
  return a.num_classes == b.num_classes && a.in_channels == b.in_channels &&
         a.image_size == b.image_size;
}

// "--dataset fmnist (/usr/share/...): 10 classes, 1x28x28 images": the data side of a mismatch,
// named by the flag and the folder its files were read from.
std::string describe_data(const std::string& flag, const std::string& name, const std::string& dir,
                          const data::Dataset& ds) {
  const std::string folder = data::dataset_dir(data::dataset_registry().find(name), dir);
  return flag + " " + name + " (" + folder + "): " + std::to_string(ds.num_classes) +
         " classes, " + std::to_string(ds.c) + "x" + std::to_string(ds.h) + "x" +
         std::to_string(ds.w) + " images";
}

// A model and the data it is fed must agree on classes and image shape; the refusal names both.
void check_model_fits_data(const std::string& model_flag, const std::string& model_path,
                           const models::Classifier& model, const CommonOptions& common,
                           const data::Dataset& ds, const std::string& hint) {
  KD_INPUT_CHECK(model.num_classes == ds.num_classes && model.in_channels == ds.c &&
                     model.image_size == ds.h && model.image_size == ds.w,
                 model_flag << " " << model_path << ": " << model.arch << ", "
                            << describe_model(model) << "; "
                            << describe_data("--dataset", common.dataset, common.data_dir, ds)
                            << hint);
}

std::vector<std::shared_ptr<models::Classifier>> load_teachers(const std::vector<std::string>& paths,
                                                                Device device,
                                                                bool allow_nonfinite) {
  std::vector<std::shared_ptr<models::Classifier>> out;
  for (const std::string& p : paths) {
    LoadedModel m = load_model(p, allow_nonfinite);
    // An ensemble averages its members' probabilities over the same classes of the same images.
    if (!out.empty()) {
      const models::Classifier& first = *out.front();
      KD_INPUT_CHECK(same_classes_and_input(*m.model, first),
                     "--teacher " << p << ": " << describe_model(*m.model) << "; --teacher "
                                  << paths.front() << ": " << describe_model(first)
                                  << " (an ensemble's members must agree)");
    }
    m.model->to(device);
    out.push_back(m.model);
  }
  return out;
}

std::shared_ptr<models::Classifier> make_model_for_flag(const std::string& flag,
                                                        const std::string& arch,
                                                        const data::Dataset& ds, uint64_t seed) {
  std::shared_ptr<models::Classifier> model;
  try {
    model = models::make_model(arch, ds.num_classes, ds.c, seed);
  } catch (const InputError& e) {
    throw InputError(flag + ": " + e.what());
  }
  KD_INPUT_CHECK(model->image_size == ds.h && model->image_size == ds.w,
                 flag << " " << arch << ": expects " << model->image_size << "x"
                      << model->image_size << " images, the dataset has " << ds.h << "x" << ds.w);
  return model;
}

// A split of the dataset the common options name, read and padded as they say.
data::Dataset load_split(const CommonOptions& common, bool train) {
  data::LoadOptions options;
  options.resize = common.resize;
  KD_INPUT_CHECK(common.pad_to >= 0, "--pad-to: expected a size >= 0 (0 = off), got "
                                         << common.pad_to);
  KD_INPUT_CHECK(common.test_size >= 0, "--test-size: expected >= 0 (0 = all), got "
                                            << common.test_size);
  data::Dataset ds = data::load_dataset(common.dataset, common.data_dir, train, options);
  if (!train && common.test_size > 0 && common.test_size < ds.n) ds = ds.take_first(common.test_size);
  return common.pad_to > 0 ? ds.padded_to(common.pad_to) : ds;
}

// The --split half of a training set.
data::Dataset split_of(const CommonOptions& common, const data::Dataset& train) {
  if (common.split == "all" || common.split == "D0+D1") return train;
  return train.subset(data::named_split_indices(common.split, train.n, common.split_seed));
}

// What a checkpoint records of the data it was trained on.
std::map<std::string, std::string> data_metadata(const CommonOptions& common) {
  return {{"dataset", common.dataset}, {"pad_to", std::to_string(common.pad_to)},
          {"resize", std::to_string(common.resize)}, {"split", common.split},
          {"split_seed", std::to_string(common.split_seed)}};
}

// The run directory of a train or distill command: a new one, or with --resume the existing one,
// its metrics cut back to the epochs its state file counts. `loop` gets the state file.
RunDir open_run_dir(const CommonOptions& common, const std::string& command, LoopConfig& loop) {
  RunDir run(resolve_out(common, command), /*allow_existing=*/common.resume);
  loop.state_file = run.file("last.safetensors");
  loop.resume = common.resume;
  if (common.resume) {
    const int epochs = finished_epochs(loop.state_file);
    run.keep_metrics_rows(epochs);
    run.log("resumed after " + std::to_string(epochs) + " finished epochs");
  }
  return run;
}

}  // namespace

std::string resolve_out(const CommonOptions& common, const std::string& command) {
  return common.out.empty() ? "runs/" + command + "-" + utc_timestamp("%Y%m%d-%H%M%S") : common.out;
}

Device apply_common(const CommonOptions& common) {
  // Refused here, before any data is read or a run directory exists.
  data::named_split_indices(common.split, 0, 0);
  RuntimeConfig config;
  config.threads = common.threads;
  config.cpu_conv = parse_cpu_conv("--cpu-conv", common.cpu_conv);
  config.gpu_kernels.conv = parse_gpu_impl("--conv", common.conv);
  config.gpu_kernels.bn = parse_gpu_impl("--bn", common.bn);
  config.math.deterministic = common.deterministic;
  config.math.tf32 = common.tf32;
  config.math.find = common.cudnn_find;
  config.precision = parse_precision("--precision", common.precision);
  if (!common.profile_steps.empty())
    config.profile_window = profile::parse_step_window(common.profile_steps);
  Device device = parse_device(common.device);
  // --conv/--bn choose between GPU implementations; on the CPU they change nothing, so a CPU run
  // neither checks them against the GPU backend nor opens it.
  if (!device.is_cuda()) config.gpu_kernels = GpuKernels{};
  set_runtime_config(config);
  return device;
}

int run_train(const CommonOptions& common, const TrainOptions& options) {
  Device device = apply_common(common);
  // Flags are refused before any data is read or the run directory exists, so a bad command
  // line never leaves a half-made run behind.
  validate(options.loop);
  if (options.loop.cuda_graph) check_graph_device(device);
  KD_INPUT_CHECK(options.subset_per_class >= 0,
                 "--subset-per-class: expected >= 0, got " << options.subset_per_class);
  KD_INPUT_CHECK(options.subset_size >= 0, "--subset-size: expected >= 0, got " << options.subset_size);
  data::Dataset train = load_split(common, true);
  data::Dataset test = load_split(common, false);
  auto model = make_model_for_flag("--model", options.model, train, common.seed);
  if (options.loop.cuda_graph) check_graphable(*model, device);
  train = split_of(common, train);
  train = training_subset(train, options.subset_per_class, options.subset_size, subset_seed(common));
  LoopConfig loop = options.loop;
  RunDir run = open_run_dir(common, "train", loop);
  loop.seed = common.seed;
  loop.device = device;
  // A resumed run keeps the config.json it was started with.
  if (!common.resume)
    run.write_config(nlohmann::json{{"command", "train"},
                                    {"dataset", common.dataset},
                                    {"pad_to", common.pad_to},
                                    {"resize", common.resize},
                                    {"split", common.split},
                                    {"split_seed", common.split_seed},
                                    {"model", options.model},
                                    {"train_images", train.n},
                                    {"subset_per_class", options.subset_per_class},
                                    {"subset_size", options.subset_size},
                                    {"subset_seed", subset_seed(common)},
                                    {"loop", loop_json(loop)},
                                    {"threads", num_threads()}});
  data::Normalization norm = data::dataset_normalization(common.dataset, train.c);
  if (options.save_init && !common.resume) {
    std::map<std::string, std::string> meta = data_metadata(common);
    meta["role"] = "initial teacher";
    save_model(run.file("init.safetensors"), *model, norm.mean, norm.std, meta);
  }
  model->to(device);
  train_supervised(*model, train, &test, norm, loop, "train " + options.model,
                   metrics_writer(run, false));
  std::map<std::string, std::string> meta = data_metadata(common);
  meta["role"] = "teacher";
  meta["train_images"] = std::to_string(train.n);
  save_model(run.file("model.safetensors"), *model, norm.mean, norm.std, meta);
  ClassifierStats stats = evaluate_model(*model, nullptr, test, norm, device);
  run.write_summary({{"command", "train"}, {"test", stats_json(stats, false)},
                     {"train_images", train.n}, {"checkpoint", "model.safetensors"}});
  std::cout << "test accuracy " << format_percent(stats.accuracy(), 2) << ", NLL "
            << format_fixed(stats.nll(), 4) << ", ECE " << format_fixed(stats.ece(), 4) << "\n"
            << "run directory: " << run.path() << "\n";
  return 0;
}

int run_distill(const CommonOptions& common, DistillOptions options) {
  Device device = apply_common(common);
  KD_INPUT_CHECK(!options.teachers.empty(), "--teacher: give at least one teacher checkpoint");
  options.distill.kind = parse_distill_kind(options.loss);
  validate(options.loop);
  validate(options.distill);
  if (options.loop.cuda_graph) check_graph_device(device);
  KD_INPUT_CHECK(options.init_from.empty() == (options.init_lambda < 0),
                 "--init-from and --init-interpolate: give both or neither");
  KD_INPUT_CHECK(options.init_from.empty() ||
                     (options.init_lambda >= 0 && options.init_lambda <= 1),
                 "--init-interpolate: expected a lambda in [0, 1], got " << options.init_lambda);
  KD_INPUT_CHECK(!options.independent || options.distill_dataset.empty(),
                 "--independent with --distill-dataset: the independent student trains on the "
                 "distillation images' labels, which are not the teacher's classes");
  KD_INPUT_CHECK(options.init_kind == "final" || options.init_kind == "init",
                 "--init-kind: expected final or init, got '" << options.init_kind << "'");
  KD_INPUT_CHECK(options.distill_size >= 0,
                 "--distill-size: expected >= 0 (0 = all), got " << options.distill_size);
  auto members = load_teachers(options.teachers, device, options.allow_nonfinite);
  models::Ensemble teacher(members);
  std::string arch = options.student_model.empty() ? members.front()->arch : options.student_model;
  data::Dataset train = load_split(common, true);
  data::Dataset test = load_split(common, false);
  for (size_t i = 0; i < members.size(); ++i)
    check_model_fits_data("--teacher", options.teachers[i], *members[i], common, train,
                          " (see --pad-to, --dataset)");
  // The distillation images: the --split half of the training set, or of another dataset's
  // (--distill-dataset: the paper's out-of-distribution arm), then --distill-size of them.
  data::Dataset distill_source = train;
  if (!options.distill_dataset.empty()) {
    CommonOptions other = common;
    other.dataset = options.distill_dataset;
    other.data_dir = options.distill_data_dir;
    distill_source = load_split(other, true);
    KD_INPUT_CHECK(distill_source.c == train.c && distill_source.h == train.h &&
                       distill_source.w == train.w,
                   "--distill-dataset " << options.distill_dataset << ": " << distill_source.c
                                        << "x" << distill_source.h << "x" << distill_source.w
                                        << " images, the student's dataset has " << train.c
                                        << "x" << train.h << "x" << train.w);
    KD_INPUT_CHECK(options.distill.alpha == 0 || distill_source.num_classes == train.num_classes,
                   "--alpha " << options.distill.alpha << " with --distill-dataset "
                              << options.distill_dataset << ": its labels are not the teacher's "
                                                            "classes (use --alpha 0)");
  }
  data::Dataset distill_data = training_subset(split_of(common, distill_source), 0,
                                               options.distill_size, subset_seed(common),
                                               "--distill-size");
  auto student = make_model_for_flag("--student-model", arch, train, common.seed);
  LoopConfig loop = options.loop;
  if (!options.init_from.empty()) {
    LoadedModel source = load_model(options.init_from, options.allow_nonfinite);
    models::interpolate_from(*student, *source.model, options.init_lambda);
    // The paper's code scales the LR when it starts near the trained teacher (type 'final').
    if (options.init_kind == "final")
      loop.optim.lr = std::max(loop.optim.lr * (1.0 - options.init_lambda), loop.optim.eta_min);
  }
  student->to(device);
  if (loop.cuda_graph) check_graphable(*student, device);
  RunDir run = open_run_dir(common, "distill", loop);
  loop.seed = common.seed;
  loop.device = device;
  // A resumed run keeps the config.json it was started with.
  if (!common.resume)
    run.write_config(
        nlohmann::json{{"command", "distill"},
                       {"dataset", common.dataset},
                       {"pad_to", common.pad_to},
                       {"resize", common.resize},
                       {"split", common.split},
                       {"split_seed", common.split_seed},
                       {"distill_dataset",
                        options.distill_dataset.empty() ? common.dataset : options.distill_dataset},
                       {"teachers", options.teachers},
                       {"student", arch},
                       {"loss", options.loss},
                       {"tau", options.distill.tau},
                       {"alpha", options.distill.alpha},
                       {"logit_cache", !loop.logit_cache ? "off"
                                       : data::is_random(loop.augment) || loop.mixup_alpha > 0
                                           ? "test set"
                                           : "test set and distillation images"},
                       {"distill_images", distill_data.n},
                       {"subset_seed", subset_seed(common)},
                       {"init_from", options.init_from},
                       {"init_interpolate", options.init_from.empty() ? 0.0 : options.init_lambda},
                       {"init_kind", options.init_from.empty() ? "" : options.init_kind},
                       {"loop", loop_json(loop)},
                       {"threads", num_threads()}});
  data::Normalization norm = data::dataset_normalization(common.dataset, train.c);
  // A resumed student takes its statistics from the state file.
  std::error_code no_state;
  if (!options.init_from.empty() && models::has_batch_norm(*student) &&
      !(common.resume && std::filesystem::exists(loop.state_file, no_state)))
    reestimate_batch_norm(*student, distill_data, norm, device, loop.batch);
  distill(*student, teacher, distill_data, &test, norm, loop, options.distill,
          "distill " + arch, metrics_writer(run, true));
  std::map<std::string, std::string> meta = data_metadata(common);
  meta["role"] = "student";
  meta["tau"] = format_fixed(options.distill.tau, 3);
  save_model(run.file("student.safetensors"), *student, norm.mean, norm.std, meta);
  ClassifierStats on_test = evaluate_model(*student, &teacher, test, norm, device);
  ClassifierStats on_train = evaluate_model(*student, &teacher, distill_data, norm, device);
  // The ensemble's own test metrics, so a report needs no second pass over its members.
  LogitsFn teacher_fn = [&teacher](const Tensor& x) { return teacher.forward(x); };
  ClassifierStats teacher_test = evaluate(teacher_fn, nullptr, test, norm, device);
  nlohmann::json summary = {{"command", "distill"}, {"test", stats_json(on_test, true)},
                            {"distill_data", stats_json(on_train, true)},
                            {"teacher", {{"members", members.size()},
                                         {"test", stats_json(teacher_test, false)}}},
                            {"distill_images", distill_data.n},
                       {"subset_seed", subset_seed(common)},
                            {"checkpoint", "student.safetensors"}};
  auto report = [](const std::string& who, const ClassifierStats& t, const ClassifierStats& d) {
    std::cout << who << " test accuracy " << format_percent(t.accuracy(), 2)
              << ", test agreement " << format_percent(t.agreement(), 2) << ", test KL "
              << format_fixed(t.kl(), 4) << ", train agreement " << format_percent(d.agreement(), 2)
              << "\n";
  };
  if (options.independent) {
    // The paper's baseline (Fig. 11): the same architecture, initial weights, images, epochs and
    // optimizer, trained on the labels instead of the teacher; how far its agreement falls short
    // of the distilled student's is what distillation bought. MixUp needs a teacher's labels, so
    // this one trains without it.
    auto independent = make_model_for_flag("--student-model", arch, train, common.seed);
    independent->to(device);
    LoopConfig labels_loop = loop;
    labels_loop.mixup_alpha = 0;
    labels_loop.state_file = run.file("last-independent.safetensors");
    EpochHook log_only = [&run](const EpochRecord& r) {
      if (r.evaluated)
        run.log("independent epoch " + std::to_string(r.epoch) + ": test acc " +
                format_percent(r.test.accuracy(), 2));
    };
    train_supervised(*independent, distill_data, &test, norm, labels_loop, "independent " + arch,
                     log_only);
    std::map<std::string, std::string> imeta = data_metadata(common);
    imeta["role"] = "independent student";
    save_model(run.file("independent.safetensors"), *independent, norm.mean, norm.std, imeta);
    ClassifierStats i_test = evaluate_model(*independent, &teacher, test, norm, device);
    ClassifierStats i_train = evaluate_model(*independent, &teacher, distill_data, norm, device);
    summary["independent"] = {{"test", stats_json(i_test, true)},
                              {"distill_data", stats_json(i_train, true)},
                              {"checkpoint", "independent.safetensors"}};
    report("student", on_test, on_train);
    report("independent student", i_test, i_train);
  } else {
    report("student", on_test, on_train);
  }
  run.write_summary(summary);
  std::cout << "run directory: " << run.path() << "\n";
  return 0;
}

int run_eval(const CommonOptions& common, const EvalOptions& options) {
  Device device = apply_common(common);
  KD_INPUT_CHECK(options.split == "test" || options.split == "train",
                 "--split: expected test or train, got '" << options.split << "'");
  LoadedModel loaded = load_model(options.model, options.allow_nonfinite);
  loaded.model->to(device);
  auto members = load_teachers(options.teachers, device, options.allow_nonfinite);
  // Agreement and KL compare the same classes of the same images: a teacher of another class
  // count would be read with the wrong row stride.
  for (size_t i = 0; i < members.size(); ++i)
    KD_INPUT_CHECK(same_classes_and_input(*members[i], *loaded.model),
                   "--teacher " << options.teachers[i] << ": " << describe_model(*members[i])
                                << "; --model " << options.model << ": "
                                << describe_model(*loaded.model));
  if (options.cka) {
    KD_INPUT_CHECK(!members.empty(), "--cka: give the --teacher to compare with");
    KD_INPUT_CHECK(options.cka_batch >= 2, "--cka-batch: expected at least 2, got "
                                               << options.cka_batch);
    for (const auto& m : members) check_cka_models(*loaded.model, *m, "--cka");
  }
  // The checkpoint says how its training images were padded; --pad-to overrides it.
  CommonOptions data_options = common;
  const auto padded = loaded.metadata.find("pad_to");
  if (common.pad_to == 0 && padded != loaded.metadata.end())
    data_options.pad_to = std::atoi(padded->second.c_str());
  data::Dataset ds = load_split(data_options, options.split == "train");
  check_model_fits_data("--model", options.model, *loaded.model, data_options, ds,
                        " (see --pad-to, --dataset)");
  data::Normalization norm{loaded.norm_mean, loaded.norm_std};
  std::unique_ptr<models::Ensemble> teacher;
  if (!members.empty()) teacher = std::make_unique<models::Ensemble>(members);
  ClassifierStats stats = evaluate_model(*loaded.model, teacher.get(), ds, norm, device);
  nlohmann::json j = stats_json(stats, teacher != nullptr);
  j["split"] = options.split;
  j["model"] = options.model;
  if (options.cka) {
    j["cka"] = nlohmann::json::array();
    for (size_t i = 0; i < members.size(); ++i)
      j["cka"].push_back(cka_json(measure_stage_cka(*loaded.model, *members[i], ds, norm, device,
                                                    options.cka_batch),
                                  options.cka_batch, options.teachers[i]));
  }
  std::cout << j.dump(2) << "\n";
  return 0;
}

}  // namespace apps
}  // namespace kd
