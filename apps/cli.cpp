// The kdlab command line (see cli.h): every subcommand's flags, declared once.
#include "apps/cli.h"

#include "apps/cka.h"
#include "apps/presets.h"
#include "base/check.h"
#include "data/datasets.h"
#include "engine/distill_losses.h"
#include "models/registry.h"

namespace kd {
namespace apps {
namespace {

// No option takes an empty value: `--out "$DIR"` with DIR unset must not silently mean the
// default (a new run under runs/), nor `--data-dir ""` the installed dataset.
const CLI::Validator kNotEmpty(
    [](std::string& value) {
      return value.empty() ? std::string("expected a value, got an empty string") : std::string();
    },
    "", "not empty");

// Seeds are unsigned 64-bit: CLI11 alone would read "-1" as 2^64 - 1.
const CLI::Validator kSeed(
    [](std::string& value) {
      const bool digits = !value.empty() && value.size() <= 20 &&
                          value.find_first_not_of("0123456789") == std::string::npos;
      return digits ? std::string()
                    : "expected an integer in 0.." + std::to_string(UINT64_MAX) + ", got '" +
                          value + "'";
    },
    "", "seed");

void refuse_empty_values(CLI::App& app) {
  for (CLI::Option* opt : app.get_options([](CLI::Option* o) { return o->get_expected_min() > 0; }))
    opt->check(kNotEmpty);
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) refuse_empty_values(*sub);
}

// Each dataset's default folder, for --data-dir's help.
std::string dataset_dirs() {
  std::string out;
  for (const kd::data::DatasetEntry& e : kd::data::dataset_registry().entries())
    out += "\n  " + e.name + ": $" + e.dir_env + (e.default_dir.empty() ? "" : " or " + e.default_dir);
  return out;
}

std::string model_help() { return "Architecture:" + kd::models::model_registry().help(); }

void add_gpu_controls(CLI::App* cmd, std::string& conv, std::string& bn, bool& deterministic,
                      bool& tf32, bool& cudnn_find) {
  cmd->add_option("--conv", conv, "GPU convolution: native (our kernels) | cudnn")
      ->capture_default_str();
  cmd->add_option("--bn", bn, "GPU batchnorm: native (our kernels) | cudnn")->capture_default_str();
  cmd->add_flag("--deterministic", deterministic,
                "GPU: deterministic algorithms only, TF32 off (bitwise-repeatable runs)");
  cmd->add_flag("--tf32", tf32,
                "GPU: TF32 tensor cores for float maths (cuBLAS, cuDNN, our convolutions)");
  cmd->add_flag("--cudnn-find", cudnn_find,
                "GPU, --conv cudnn: time every convolution algorithm once per shape and run the "
                "fastest acceptable one (PyTorch's cudnn.benchmark); with --deterministic the "
                "timed choice may differ between runs, and so may the bits");
}

void add_common(CLI::App* cmd, CommonOptions& c, bool with_out = true) {
  cmd->add_option("--seed", c.seed, "Seed for initialisation, shuffling, subsets (default 0)")
      ->check(kSeed);
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
  cmd->add_option("--test-size", c.test_size,
                  "Evaluate on the first N test images only (0 = all; for quick runs)");
  cmd->add_option("--pad-to", c.pad_to,
                  "Zero-pad every image to N x N (e.g. 32: PreResNet on 28x28 Fashion-MNIST)");
  cmd->add_option("--cpu-conv", c.cpu_conv,
                  "CPU float convolutions: auto (Winograd F(4x4,3x3) for 3x3 stride-1 ones with "
                  "channels in eights, direct for stride-1 ones with <= 16 filters) | gemm "
                  "(im2col + GEMM always)")
      ->capture_default_str();
  cmd->add_option("--precision", c.precision,
                  "fp32 | bf16 (bf16 activations, gradients and weight copies in the step; fp32 "
                  "maths inside each op, fp32 master weights, optimizer, losses and metrics)")
      ->capture_default_str();
  add_gpu_controls(cmd, c.conv, c.bn, c.deterministic, c.tf32, c.cudnn_find);
  cmd->add_option("--profile-steps", c.profile_steps,
                  "A:B: open the CUDA profiler for training steps A..B only (for Nsight: nsys "
                  "profile --capture-range=cudaProfilerApi)");
}

void add_split(CLI::App* cmd, CommonOptions& c) {
  cmd->add_option("--split", c.split,
                  "Train on a half of the training set: D0, D1 (a random partition keyed by "
                  "--split-seed) or all (= D0+D1)")
      ->capture_default_str();
  cmd->add_option("--split-seed", c.split_seed, "Seed of the D0/D1 partition (default 0)")
      ->check(kSeed);
  cmd->add_option("--subset-seed", c.subset_seed,
                  "Seed of the random subset (--subset-size, --distill-size; default: --seed), "
                  "so a teacher and its students can share the same images");
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
  cmd->add_flag("--cuda-graph", l.cuda_graph,
                "GPU: capture the training step (forward, backward, optimizer update) once as a "
                "CUDA graph and replay it, one launch per step; same results; not with dropout");
}


// What `study` and `repro` share: the scale, variables, scheduling, and the flags every run of
// the study is given (each only when set here, so the file's own values stay otherwise).
void add_study_flags(CLI::App* cmd, StudyCommandOptions& s) {
  cmd->add_option("--scale", s.scale,
                  "tiny (Fashion-MNIST, CPU, about a minute) | small | paper (the paper's recipe "
                  "for a GPU); default: the file's default_scale");
  cmd->add_option("--set", s.sets,
                  "NAME=VALUE: override one of the file's variables (VALUE as JSON, else a "
                  "string); repeatable");
  cmd->add_option("--out", s.out,
                  "Study directory (default runs/<name>-<scale>-<UTC time>); an existing one of "
                  "the same study continues where it stopped");
  cmd->add_flag("--plan", s.plan, "Print the runs, their order and their commands; run nothing");
  cmd->add_option("--slurm", s.slurm_dir,
                  "Write Slurm job-array scripts (one per dependency level, chained with "
                  "afterok) and DIR/submit.sh into DIR; run nothing");
  cmd->add_option("--run-one", s.run_one,
                  "Run only this run of the study in --out (what each Slurm task does); the runs "
                  "it needs must have finished");
  cmd->add_option("--seed", s.seed, "Sets the file's variable 'seed' (default: the file's)");
  cmd->add_option("--device", s.device, "Every run's --device (auto | cpu | cuda)");
  cmd->add_option("--threads", s.threads, "Every run's --threads");
  cmd->add_option("--data-dir", s.data_dir, "Every run's --data-dir");
  cmd->add_option("--cpu-conv", s.cpu_conv, "Every run's --cpu-conv (auto | gemm)");
  cmd->add_option("--conv", s.conv, "Every run's --conv (native | cudnn)");
  cmd->add_option("--bn", s.bn, "Every run's --bn (native | cudnn)");
  cmd->add_option("--precision", s.precision, "Every run's --precision (fp32 | bf16)");
  cmd->add_flag("--deterministic", s.deterministic, "Every run's --deterministic");
  cmd->add_flag("--tf32", s.tf32, "Every run's --tf32");
  cmd->add_flag("--cudnn-find", s.cudnn_find, "Every run's --cudnn-find");
}

void add_study_commands(Cli& c) {
  c.study_cmd = c.app.add_subcommand(
      "study", "Run an experiment file: its runs in dependency order, then its report");
  c.study_cmd->add_option("file", c.study.file, "The experiment file (JSON; see presets/)")
      ->required();
  add_study_flags(c.study_cmd, c.study);

  c.repro_cmd = c.app.add_subcommand("repro", "Run a preset: one experiment of the paper");
  c.repro_cmd->add_option("preset", c.study.file, "Preset name (see --list)");
  c.repro_cmd->add_flag("--list", c.study.list, "List the presets, one line each");
  c.repro_cmd->add_flag("--show", c.study.show,
                        "Print the preset's file (to copy, edit and run with 'kdlab study')");
  c.repro_cmd->add_flag("--quick", c.study.quick, "The same as --scale tiny");
  c.repro_cmd->add_option("--dataset", c.study.dataset,
                          "Refused unless it is the preset's dataset at this scale");
  add_study_flags(c.repro_cmd, c.study);

  c.report_cmd = c.app.add_subcommand(
      "report", "Write a study's report.md again from its run directory (runs nothing)");
  c.report_cmd->add_option("study_dir", c.study.file, "The study's directory")->required();
}

}  // namespace

std::unique_ptr<Cli> make_cli() {
  auto owned = std::make_unique<Cli>();
  Cli& c = *owned;
  c.app.require_subcommand(1);
  c.app.set_help_all_flag("--help-all", "Help for every subcommand");
  c.train.loop.optim.lr = 0.05;
  c.train_cmd = c.app.add_subcommand("train", "Train a classifier (a teacher) with cross-entropy");
  add_common(c.train_cmd, c.common);
  add_loop(c.train_cmd, c.train.loop);
  add_split(c.train_cmd, c.common);
  c.train_cmd->add_option("--model", c.train.model, model_help())->capture_default_str();
  c.train_cmd->add_option("--subset-per-class", c.train.subset_per_class,
                        "Train on a stratified subset with this many images per class");
  c.train_cmd->add_option("--subset-size", c.train.subset_size, "Train on a random subset of this size");
  c.train_cmd->add_flag("--save-init", c.train.save_init,
                      "Also save the initial weights (init.safetensors: for distill --init-from "
                      "--init-kind init)");

  // Handled by resume_arguments before parsing; declared for --help.
  const std::string resume_help =
      "Continue the interrupted run in RUN_DIR from its last.safetensors, with the flags it was "
      "started with (give no other flag); the CPU ends with the same bytes as an uninterrupted run";
  c.train_cmd->add_option("--resume", c.resume_dir, resume_help);

  c.distill.loop.optim.lr = 0.05;
  c.distill_cmd = c.app.add_subcommand("distill", "Distil a student from a teacher ensemble");
  add_common(c.distill_cmd, c.common);
  add_loop(c.distill_cmd, c.distill.loop);
  add_split(c.distill_cmd, c.common);
  c.distill_cmd->add_option("--teacher", c.distill.teachers,
                          "Teacher checkpoint (repeat for an ensemble: log of mean probabilities)")
      ->required();
  c.distill_cmd->add_option("--student-model", c.distill.student_model,
                          "Student architecture (default: the first teacher's). " + model_help());
  c.distill_cmd->add_option("--tau", c.distill.distill.tau, "Temperature, applied after ensembling")->capture_default_str();
  c.distill_cmd->add_option("--alpha", c.distill.distill.alpha, "Weight of the hard-label loss")->capture_default_str();
  c.distill_cmd->add_option("--loss", c.distill.loss,
                          "Distillation loss (p: teacher, q: student probabilities at tau):" +
                              kd::distill_loss_registry().help())
      ->capture_default_str();
  c.distill_cmd->add_option("--mixup", c.distill.loop.mixup_alpha,
                          "MixUp the distillation batches: lambda ~ Beta(a, a) per batch (paper: 1)");
  c.distill_cmd->add_option("--distill-dataset", c.distill.distill_dataset,
                          "Distil on this dataset's training images (same image shape; the "
                          "paper's OOD arm), with the teacher's labels only (--alpha 0)");
  c.distill_cmd->add_option("--distill-data-dir", c.distill.distill_data_dir,
                          "Folder of --distill-dataset's files (default: its own default)");
  c.distill_cmd->add_option("--init-from", c.distill.init_from,
                          "Start the student from lambda * this checkpoint + (1 - lambda) * its "
                          "random init (every state-dict entry; BatchNorm statistics are then "
                          "re-estimated in one pass)");
  c.distill_cmd->add_option("--init-interpolate", c.distill.init_lambda, "lambda in [0, 1] for --init-from");
  c.distill_cmd->add_option("--init-kind", c.distill.init_kind,
                          "final: --init-from is the trained teacher and the LR becomes "
                          "max(lr (1 - lambda), eta-min), as the paper's code; init: an initial "
                          "teacher (train --save-init), LR unchanged")
      ->capture_default_str();
  c.distill_cmd->add_flag("--independent", c.distill.independent,
                        "Also train the independent student (paper Fig. 11): same architecture, "
                        "seed and recipe on the labels; its agreement and KL to the teacher are "
                        "reported beside the distilled student's");
  c.distill_cmd->add_option("--distill-size", c.distill.distill_size,
                          "Distil on a random subset of the training set of this size (0 = all)");

  const std::string nonfinite_help =
      "Load checkpoints holding NaN or infinite weights or statistics (refused otherwise)";
  c.distill_cmd->add_flag("--allow-nonfinite", c.distill.allow_nonfinite, nonfinite_help);
  c.distill_cmd->add_option("--resume", c.resume_dir, resume_help);
  c.distill_cmd->add_flag("!--no-logit-cache", c.distill.loop.logit_cache,
                        "Run the teachers on every batch instead of reusing their logits (the "
                        "cache is used on the test set, and on the distillation images when they "
                        "are not augmented; results are the same bits either way)");

  c.eval_cmd = c.app.add_subcommand("eval", "Evaluate a checkpoint (and its fidelity to teachers)");
  add_common(c.eval_cmd, c.common, /*with_out=*/false);
  c.eval_cmd->add_option("--model", c.eval.model, "Checkpoint to evaluate")->required();
  c.eval_cmd->add_option("--teacher", c.eval.teachers, "Teacher checkpoint(s) for agreement and KL");
  c.eval_cmd->add_option("--split", c.eval.split, "test | train")->capture_default_str();
  c.eval_cmd->add_flag("--cka", c.eval.cka,
                     "Also report linear CKA between each --teacher's and the model's PreResNet "
                     "stage outputs (pooled over H, W), per batch in dataset order, averaged");
  c.eval_cmd->add_flag("--allow-nonfinite", c.eval.allow_nonfinite, nonfinite_help);
  c.eval.cka_batch = kDefaultCkaBatch;
  c.eval_cmd->add_option("--cka-batch", c.eval.cka_batch, "Batch size of the CKA pass (the paper's 128)")
      ->capture_default_str();

  c.import_cmd = c.app.add_subcommand(
      "import", "Turn a PyTorch state dict saved with safetensors into a kdlab checkpoint");
  c.import_cmd->add_option("input", c.import.input, "The .safetensors file PyTorch wrote")->required();
  c.import_cmd->add_option("--model", c.import.model, model_help())->required();
  c.import_cmd->add_option("--out", c.import.out, "The kdlab checkpoint to write")->required();
  c.import_cmd->add_option("--dataset", c.common.dataset,
                         "Dataset whose classes, channels and normalization the model uses:" +
                             kd::data::dataset_registry().help())
      ->capture_default_str();
  c.import_cmd->add_option("--data-dir", c.common.data_dir,
                         "Folder with the dataset's files (default:" + dataset_dirs() + ")");
  c.import_cmd->add_option("--pad-to", c.common.pad_to, "The model sees images zero-padded to N x N");
  c.import_cmd->add_option("--resize", c.common.resize, "--dataset folder: images resized to N x N");

  add_study_commands(c);

  c.bench_cmd = c.app.add_subcommand("bench", "Training-step throughput, side by side with PyTorch");
  c.bench_cmd->add_option("--model", c.bench.models, "Models to time (default lenet5 preresnet20 preresnet56)");
  c.bench_cmd->add_option("--batch", c.bench.batch, "Batch size")->capture_default_str();
  c.bench_cmd->add_option("--steps", c.bench.steps, "Timed steps per model (default 30 CPU, 200 GPU)");
  c.bench_cmd->add_option("--warmup", c.bench.warmup, "Untimed steps first (default 5 CPU, 20 GPU)");
  c.bench_cmd->add_option("--threads", c.bench.threads, "CPU threads (ours and PyTorch's)")->capture_default_str();
  c.bench_cmd->add_flag("--no-torch", c.bench.skip_torch, "Do not run the PyTorch baseline");
  c.bench_cmd->add_flag("--cost-only", c.bench.cost_only,
                        "Only the cost model of one step (FLOPs, bytes, calls, launches, ideal time); nothing timed");
  c.bench_cmd->add_flag("--breakdown", c.bench.breakdown, "Also print the cost model per kernel");
  c.bench_cmd->add_option("--device", c.bench.device, "auto | cpu | cuda (auto: cuda when usable)")
      ->capture_default_str();
  c.bench_cmd->add_option("--cpu-conv", c.bench_cpu_conv,
                          "CPU float convolutions: auto (Winograd or direct where they apply) | gemm")
      ->capture_default_str();
  c.bench_cmd->add_flag("--tf32", c.bench_tf32,
                        "GPU: TF32 tensor cores for float maths (cuBLAS, cuDNN, our convolutions)");
  c.bench_cmd->add_flag("--cudnn-find", c.bench_cudnn_find,
                        "GPU: time cuDNN's convolution algorithms once per shape (as PyTorch's "
                        "cudnn.benchmark, which its side of the table uses)");
  c.bench_cmd->add_flag("--deterministic", c.bench_deterministic, "GPU: deterministic algorithms");
  c.bench_cmd->add_option("--precision", c.bench_precision,
                          "fp32 | bf16 (ours under --precision bf16, PyTorch's forward under "
                          "autocast to bfloat16)")
      ->capture_default_str();

  refuse_empty_values(c.app);
  return owned;
}

bool command_has_flag(const std::string& command, const std::string& name) {
  auto cli = make_cli();
  CLI::App* sub = nullptr;
  for (CLI::App* s : cli->app.get_subcommands([](CLI::App*) { return true; }))
    if (s->get_name() == command) sub = s;
  return sub != nullptr && sub->get_option_no_throw("--" + name) != nullptr;
}

void check_run_arguments(const std::string& command, const std::vector<std::string>& args,
                         const std::string& where) {
  KD_INPUT_CHECK(command == "train" || command == "distill" || command == "eval",
                 where << ": command '" << command << "': expected train, distill or eval");
  auto cli = make_cli();
  std::vector<std::string> reversed = {command};
  reversed.insert(reversed.end(), args.begin(), args.end());
  std::reverse(reversed.begin(), reversed.end());  // CLI11 takes a vector in reverse order
  try {
    cli->app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    throw InputError(where + ": " + e.what() + " (see 'kdlab " + command + " --help')");
  }
  try {
    if (command == "train") validate(cli->train.loop);
    if (command == "distill") {
      validate(cli->distill.loop);
      cli->distill.distill.kind = parse_distill_kind(cli->distill.loss);
      validate(cli->distill.distill);
    }
  } catch (const InputError& e) {
    throw InputError(where + ": " + e.what());
  }
}

}  // namespace apps
}  // namespace kd
