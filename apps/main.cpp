// kdlab command line: train, distill, eval, import, repro <preset>, bench. Parses flags (CLI11)
// into the option structs of commands.h / presets.h / bench.h; every error becomes one line
// "kdlab: error: ..." and a non-zero exit (2 for bad input, 1 otherwise).
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "apps/bench.h"
#include "apps/cka.h"
#include "apps/commands.h"
#include "apps/import_cmd.h"
#include "apps/presets.h"
#include "apps/run_dir.h"
#include "base/check.h"
#include "data/datasets.h"
#include "engine/distill_losses.h"
#include "engine/runtime_config.h"
#include "models/registry.h"

namespace {

using namespace kd::apps;

// Each dataset's default folder, for --data-dir's help.
std::string dataset_dirs() {
  std::string out;
  for (const kd::data::DatasetEntry& e : kd::data::dataset_registry().entries())
    out += "\n  " + e.name + ": $" + e.dir_env + (e.default_dir.empty() ? "" : " or " + e.default_dir);
  return out;
}

std::string model_help() { return "Architecture:" + kd::models::model_registry().help(); }

void add_gpu_controls(CLI::App* cmd, std::string& conv, std::string& bn, bool& deterministic,
                      bool& tf32) {
  cmd->add_option("--conv", conv, "GPU convolution: native (our kernels) | cudnn")
      ->capture_default_str();
  cmd->add_option("--bn", bn, "GPU batchnorm: native (our kernels) | cudnn")->capture_default_str();
  cmd->add_flag("--deterministic", deterministic,
                "GPU: deterministic algorithms only, TF32 off (bitwise-repeatable runs)");
  cmd->add_flag("--tf32", tf32, "GPU: allow TF32 tensor cores in cuBLAS/cuDNN float maths");
}

void add_common(CLI::App* cmd, CommonOptions& c, bool with_out = true) {
  cmd->add_option("--seed", c.seed, "Seed for initialisation, shuffling, subsets (default 0)");
  cmd->add_option("--device", c.device, "auto | cpu | cuda (auto: cuda when usable)")
      ->capture_default_str();
  if (with_out)
    cmd->add_option("--out", c.out, "Run directory (default runs/<command>-<UTC time>)");
  cmd->add_option("--threads", c.threads, "CPU threads for kernels and BLAS (0 = all cores)")
      ->capture_default_str();
  cmd->add_option("--dataset", c.dataset, "Dataset:" + kd::data::dataset_registry().help())
      ->capture_default_str();
  cmd->add_option("--data-dir", c.data_dir, "Folder with the dataset's files (default:" +
                                                dataset_dirs() + ")");
  cmd->add_option("--resize", c.resize, "--dataset folder: resize every image to N x N (0 = off)");
  cmd->add_option("--pad-to", c.pad_to,
                  "Zero-pad every image to N x N (e.g. 32: PreResNet on 28x28 Fashion-MNIST)");
  add_gpu_controls(cmd, c.conv, c.bn, c.deterministic, c.tf32);
  cmd->add_option("--profile-steps", c.profile_steps,
                  "A:B: open the CUDA profiler for training steps A..B only (for Nsight: nsys "
                  "profile --capture-range=cudaProfilerApi)");
}

void add_split(CLI::App* cmd, CommonOptions& c) {
  cmd->add_option("--split", c.split,
                  "Train on a half of the training set: D0, D1 (a random partition keyed by "
                  "--split-seed) or all (= D0+D1)")
      ->capture_default_str();
  cmd->add_option("--split-seed", c.split_seed, "Seed of the D0/D1 partition (default 0)");
}

void add_loop(CLI::App* cmd, LoopConfig& l) {
  cmd->add_option("--epochs", l.epochs, "Epochs (passes over the training data)")->capture_default_str();
  cmd->add_option("--batch", l.batch, "Batch size")->capture_default_str();
  cmd->add_option("--lr", l.optim.lr, "Initial learning rate (cosine-annealed per epoch)")->capture_default_str();
  cmd->add_option("--eta-min", l.optim.eta_min, "Cosine schedule floor")->capture_default_str();
  cmd->add_option("--optimizer", l.optim.name, "sgd | adam")->capture_default_str();
  cmd->add_option("--momentum", l.optim.momentum, "SGD momentum")->capture_default_str();
  cmd->add_flag("--nesterov,!--no-nesterov", l.optim.nesterov, "Nesterov momentum (default on)");
  cmd->add_option("--weight-decay", l.optim.weight_decay, "L2 weight decay, as PyTorch")->capture_default_str();
  cmd->add_option("--crop-pad", l.augment.crop_pad, "Random crop with this zero padding (0 = off)")->capture_default_str();
  cmd->add_flag("--hflip", l.augment.hflip, "Random horizontal flips");
  cmd->add_flag("--vflip", l.augment.vflip, "Random vertical flips");
  cmd->add_option("--rotation", l.augment.rotation_degrees,
                  "RandomRotation: angle uniform in [-deg, deg] (paper: 20; 0 = off)");
  cmd->add_option("--brightness", l.augment.brightness, "ColorJitter brightness (paper: 0.2)");
  cmd->add_option("--contrast", l.augment.contrast, "ColorJitter contrast (paper: 0.2)");
  cmd->add_option("--saturation", l.augment.saturation, "ColorJitter saturation (paper: 0.2)");
  cmd->add_option("--hue", l.augment.hue, "ColorJitter hue (paper: 0.2)");
  cmd->add_option("--noise", l.augment.noise_p,
                  "Replace each image by uniform noise with this probability (paper: 0.2)");
  cmd->add_option("--eval-every", l.eval_every, "Evaluate on the test set every N epochs (0 = at the end)")->capture_default_str();
  cmd->add_option("--checkpoint-every", l.checkpoint_every,
                  "Also save the run's state (last.safetensors, for --resume) every N steps; it "
                  "is always saved after each epoch");
}

// `kdlab train|distill --resume RUN_DIR`: the arguments the run was started with, its --out set
// to RUN_DIR, and the working directory it ran in (made current, so its relative paths mean what
// they meant). Empty when the command line is not a --resume one.
std::vector<std::string> resume_arguments(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  if (argc < 3 || (args[1] != "train" && args[1] != "distill")) return {};
  std::string run_dir;
  bool resume = false;
  for (int i = 2; i < argc; ++i)
    resume = resume || args[i] == "--resume" || args[i].rfind("--resume=", 0) == 0;
  if (!resume) return {};
  if (argc == 4 && args[2] == "--resume") run_dir = args[3];
  else if (argc == 3 && args[2].rfind("--resume=", 0) == 0) run_dir = args[2].substr(9);
  KD_INPUT_CHECK(!run_dir.empty(),
                 "--resume: expected 'kdlab " << args[1]
                     << " --resume RUN_DIR' and no other flags (the run continues with the "
                        "flags it was started with, from RUN_DIR/config.json)");
  std::error_code ec;
  const std::string absolute = std::filesystem::absolute(run_dir, ec).string();
  RecordedCommand recorded = recorded_command(run_dir, args[1]);
  std::filesystem::current_path(recorded.working_directory, ec);
  KD_INPUT_CHECK(!ec, "--resume " << run_dir << ": cannot enter the run's working directory "
                                  << recorded.working_directory << ": " << ec.message());
  std::vector<std::string> out = {args[0]};
  out.insert(out.end(), recorded.arguments.begin(), recorded.arguments.end());
  out.push_back("--out");
  out.push_back(absolute);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  RunDir::set_command_line(argc, argv);
  std::vector<std::string> replayed;
  try {
    replayed = resume_arguments(argc, argv);
  } catch (const kd::InputError& e) {
    std::cerr << "kdlab: error: " << e.what() << "\n";
    return 2;
  }
  std::vector<char*> replayed_argv;
  for (std::string& a : replayed) replayed_argv.push_back(a.data());
  if (!replayed.empty()) {
    argc = int(replayed_argv.size());
    argv = replayed_argv.data();
  }
  CLI::App app{"kdlab: knowledge-distillation lab. Train teachers, distil students, and measure "
               "fidelity (agreement, KL) and generalization (accuracy, NLL, ECE)."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Help for every subcommand");

  CommonOptions common;
  TrainOptions train;
  train.loop.optim.lr = 0.05;
  auto* train_cmd = app.add_subcommand("train", "Train a classifier (a teacher) with cross-entropy");
  add_common(train_cmd, common);
  add_loop(train_cmd, train.loop);
  add_split(train_cmd, common);
  train_cmd->add_option("--model", train.model, model_help())->capture_default_str();
  train_cmd->add_option("--subset-per-class", train.subset_per_class,
                        "Train on a stratified subset with this many images per class");
  train_cmd->add_option("--subset-size", train.subset_size, "Train on a random subset of this size");
  train_cmd->add_flag("--save-init", train.save_init,
                      "Also save the initial weights (init.safetensors: for distill --init-from "
                      "--init-kind init)");

  // Handled by resume_arguments before parsing; declared for --help.
  std::string resume_dir;
  const std::string resume_help =
      "Continue the interrupted run in RUN_DIR from its last.safetensors, with the flags it was "
      "started with (give no other flag); the CPU ends with the same bytes as an uninterrupted run";
  train_cmd->add_option("--resume", resume_dir, resume_help);

  DistillOptions dist;
  dist.loop.optim.lr = 0.05;
  auto* distill_cmd = app.add_subcommand("distill", "Distil a student from a teacher ensemble");
  add_common(distill_cmd, common);
  add_loop(distill_cmd, dist.loop);
  add_split(distill_cmd, common);
  distill_cmd->add_option("--teacher", dist.teachers,
                          "Teacher checkpoint (repeat for an ensemble: log of mean probabilities)")
      ->required();
  distill_cmd->add_option("--student-model", dist.student_model,
                          "Student architecture (default: the first teacher's). " + model_help());
  distill_cmd->add_option("--tau", dist.distill.tau, "Temperature, applied after ensembling")->capture_default_str();
  distill_cmd->add_option("--alpha", dist.distill.alpha, "Weight of the hard-label loss")->capture_default_str();
  distill_cmd->add_option("--loss", dist.loss,
                          "Distillation loss (p: teacher, q: student probabilities at tau):" +
                              kd::distill_loss_registry().help())
      ->capture_default_str();
  distill_cmd->add_option("--mixup", dist.loop.mixup_alpha,
                          "MixUp the distillation batches: lambda ~ Beta(a, a) per batch (paper: 1)");
  distill_cmd->add_option("--distill-dataset", dist.distill_dataset,
                          "Distil on this dataset's training images (same image shape; the "
                          "paper's OOD arm), with the teacher's labels only (--alpha 0)");
  distill_cmd->add_option("--distill-data-dir", dist.distill_data_dir,
                          "Folder of --distill-dataset's files (default: its own default)");
  distill_cmd->add_option("--init-from", dist.init_from,
                          "Start the student from lambda * this checkpoint + (1 - lambda) * its "
                          "random init (every state-dict entry; BatchNorm statistics are then "
                          "re-estimated in one pass)");
  distill_cmd->add_option("--init-interpolate", dist.init_lambda, "lambda in [0, 1] for --init-from");
  distill_cmd->add_option("--init-kind", dist.init_kind,
                          "final: --init-from is the trained teacher and the LR becomes "
                          "max(lr (1 - lambda), eta-min), as the paper's code; init: an initial "
                          "teacher (train --save-init), LR unchanged")
      ->capture_default_str();
  distill_cmd->add_flag("--independent", dist.independent,
                        "Also train the independent student (paper Fig. 11): same architecture, "
                        "seed and recipe on the labels; its agreement and KL to the teacher are "
                        "reported beside the distilled student's");
  distill_cmd->add_option("--distill-size", dist.distill_size,
                          "Distil on a random subset of the training set of this size (0 = all)");

  distill_cmd->add_option("--resume", resume_dir, resume_help);
  distill_cmd->add_flag("!--no-logit-cache", dist.loop.logit_cache,
                        "Run the teachers on every batch instead of reusing their logits (the "
                        "cache is used on the test set, and on the distillation images when they "
                        "are not augmented; results are the same bits either way)");

  EvalOptions ev;
  auto* eval_cmd = app.add_subcommand("eval", "Evaluate a checkpoint (and its fidelity to teachers)");
  add_common(eval_cmd, common, /*with_out=*/false);
  eval_cmd->add_option("--model", ev.model, "Checkpoint to evaluate")->required();
  eval_cmd->add_option("--teacher", ev.teachers, "Teacher checkpoint(s) for agreement and KL");
  eval_cmd->add_option("--split", ev.split, "test | train")->capture_default_str();
  eval_cmd->add_flag("--cka", ev.cka,
                     "Also report linear CKA between each --teacher's and the model's PreResNet "
                     "stage outputs (pooled over H, W), per batch in dataset order, averaged");
  ev.cka_batch = kDefaultCkaBatch;
  eval_cmd->add_option("--cka-batch", ev.cka_batch, "Batch size of the CKA pass (the paper's 128)")
      ->capture_default_str();

  ImportOptions import;
  auto* import_cmd = app.add_subcommand(
      "import", "Turn a PyTorch state dict saved with safetensors into a kdlab checkpoint");
  import_cmd->add_option("input", import.input, "The .safetensors file PyTorch wrote")->required();
  import_cmd->add_option("--model", import.model, model_help())->required();
  import_cmd->add_option("--out", import.out, "The kdlab checkpoint to write")->required();
  import_cmd->add_option("--dataset", common.dataset,
                         "Dataset whose classes, channels and normalization the model uses:" +
                             kd::data::dataset_registry().help())
      ->capture_default_str();
  import_cmd->add_option("--data-dir", common.data_dir,
                         "Folder with the dataset's files (default:" + dataset_dirs() + ")");
  import_cmd->add_option("--pad-to", common.pad_to, "The model sees images zero-padded to N x N");
  import_cmd->add_option("--resize", common.resize, "--dataset folder: images resized to N x N");

  std::string preset;
  StudyOptions study;
  auto* repro_cmd = app.add_subcommand("repro", "Run an experiment preset of the paper");
  add_common(repro_cmd, common);
  repro_cmd->add_option("preset", preset, "Preset:" + preset_registry().help())->required();
  repro_cmd->add_flag("--quick", study.quick, "A seconds-long version with tiny epochs (for tests)");

  BenchOptions bench;
  auto* bench_cmd = app.add_subcommand("bench", "Training-step throughput, side by side with PyTorch");
  bench_cmd->add_option("--model", bench.models, "Models to time (default lenet5 preresnet20 preresnet56)");
  bench_cmd->add_option("--batch", bench.batch, "Batch size")->capture_default_str();
  bench_cmd->add_option("--steps", bench.steps, "Timed steps per model (default 30 CPU, 200 GPU)");
  bench_cmd->add_option("--warmup", bench.warmup, "Untimed steps first (default 5 CPU, 20 GPU)");
  bench_cmd->add_option("--threads", bench.threads, "CPU threads (ours and PyTorch's)")->capture_default_str();
  bench_cmd->add_flag("--no-torch", bench.skip_torch, "Do not run the PyTorch baseline");
  bench_cmd->add_option("--device", bench.device, "auto | cpu | cuda (auto: cuda when usable)")
      ->capture_default_str();
  bool bench_tf32 = false, bench_deterministic = false;
  bench_cmd->add_flag("--tf32", bench_tf32, "GPU: allow TF32 in cuBLAS/cuDNN float maths");
  bench_cmd->add_flag("--deterministic", bench_deterministic, "GPU: deterministic algorithms");

  // CLI11 reports a mistyped subcommand only as "A subcommand is required"; name it instead.
  if (argc >= 2 && argv[1][0] != '-') {
    std::string known;
    bool found = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      found = found || sub->get_name() == argv[1];
      known += (known.empty() ? "" : ", ") + sub->get_name();
    }
    if (!found) {
      std::cerr << "kdlab: error: unknown subcommand '" << argv[1] << "' (expected one of: " << known
                << "; see 'kdlab --help')\n";
      return 2;
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string where = app.get_subcommands().empty() ? "kdlab" : "kdlab " + app.get_subcommands().front()->get_name();
    std::cerr << "kdlab: error: " << e.what() << " (see '" << where << " --help')\n";
    return 2;
  }

  common.resume = !replayed.empty();
  try {
    if (train_cmd->parsed()) return run_train(common, train);
    if (distill_cmd->parsed()) return run_distill(common, dist);
    if (eval_cmd->parsed()) return run_eval(common, ev);
    if (import_cmd->parsed()) return run_import(common, import);
    if (repro_cmd->parsed()) {
      const PresetEntry& entry = preset_registry().find(preset, "repro");
      KD_INPUT_CHECK(repro_cmd->count("--dataset") == 0 || common.dataset == entry.dataset,
                     "--dataset " << common.dataset << ": preset " << entry.name << " runs on "
                                  << entry.dataset);
      study.seed = common.seed;
      study.data_dir = common.data_dir;
      study.device = apply_common(common);
      study.out = resolve_out(common, preset);
      return entry.run(study);
    }
    if (bench_cmd->parsed()) {
      bench.models_given = bench_cmd->count("--model") > 0;
      kd::RuntimeConfig config;
      config.threads = bench.threads;
      config.math = {bench_deterministic, bench_tf32};
      kd::set_runtime_config(config);
      return run_bench(bench);
    }
  } catch (const kd::InputError& e) {
    std::cerr << "kdlab: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "kdlab: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
