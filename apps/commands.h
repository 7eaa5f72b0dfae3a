// The kdlab subcommands behind the CLI (main.cpp parses flags into these option structs).
#pragma once
#include <string>
#include <vector>

#include "apps/experiment.h"

namespace kd {
namespace apps {

struct CommonOptions {
  uint64_t seed = 0;
  std::string device = "auto";
  std::string out;  // run directory; empty = runs/<command>-<UTC timestamp>
  int threads = 0;  // 0 = all cores
  std::string dataset = "fmnist";  // a name in data/datasets.h
  std::string data_dir;
  int resize = 0;  // --resize N: image-folder images to N x N (0 = off)
  int pad_to = 0;  // --pad-to N: zero-pad every image to N x N (0 = off)
  int64_t test_size = 0;     // --test-size N: evaluate on the first N test images (0 = all)
  std::string split = "all";  // --split: which half of the training set (data/sampling.h)
  uint64_t split_seed = 0;    // --split-seed: the halves' random partition
  int64_t subset_seed = -1;   // --subset-seed: which random subset (-1: --seed's), so runs
                              // with different seeds can share their images
  std::string cpu_conv = "auto";  // auto (Winograd where it applies) | gemm
  std::string precision = "fp32";  // fp32 | bf16 (activations and weight copies in the step)
  // GPU kernel controls (ignored on the CPU)
  std::string conv = "native";  // native | cudnn
  std::string bn = "native";    // native | cudnn
  bool deterministic = false;   // deterministic algorithms, no float atomics, TF32 off
  bool tf32 = false;            // TF32 tensor cores for cuBLAS/cuDNN float maths
  bool cudnn_find = false;      // time cuDNN's convolution algorithms (MathMode::find)
  std::string profile_steps;    // "A:B": cudaProfilerStart/Stop around training steps A..B
  // train/distill --resume: `out` is an existing run directory whose command this is, replayed
  // with its own arguments; its loops continue from their state files.
  bool resume = false;
};

struct TrainOptions {
  std::string model = "lenet5";
  bool save_init = false;  // also write the initial weights (init.safetensors) for --init-from
  LoopConfig loop;
  int subset_per_class = 0;  // stratified subset (0 = whole training set)
  int64_t subset_size = 0;   // random subset (0 = whole training set)
};

struct DistillOptions {
  std::vector<std::string> teachers;  // checkpoint files; the ensemble's members
  std::string student_model;          // default: the first teacher's architecture
  LoopConfig loop;
  DistillConfig distill;
  std::string loss = "fwd-ce";
  int64_t distill_size = 0;  // random subset of the training set (0 = all)
  std::string distill_dataset;   // distil on this dataset's training images (empty: --dataset's)
  std::string distill_data_dir;  // its folder (empty: its default)
  // Interpolated initialisation (paper-notes §5): theta = lambda * checkpoint + (1 - lambda) * random.
  std::string init_from;         // checkpoint (a trained teacher, or one saved with --save-init)
  double init_lambda = -1;       // --init-interpolate; -1 = not given
  std::string init_kind = "final";  // final: scale the LR by (1 - lambda); init: leave it
  bool independent = false;  // also train the independent student (Fig. 11): labels, same recipe
  bool allow_nonfinite = false;  // load checkpoints holding NaN or infinity (refused otherwise)
};

struct EvalOptions {
  std::string model;                  // checkpoint
  std::vector<std::string> teachers;  // optional: fidelity against this ensemble
  std::string split = "test";         // test | train
  bool cka = false;                   // also stage CKA teacher vs model, per teacher (apps/cka.h)
  int cka_batch = 128;                // the CKA pass's batch size (reported with the values)
  bool allow_nonfinite = false;       // load checkpoints holding NaN or infinity
};

// Resolves the common options (threads, device) and the run directory path.
std::string resolve_out(const CommonOptions& common, const std::string& command);
Device apply_common(const CommonOptions& common);

int run_train(const CommonOptions& common, const TrainOptions& options);
int run_distill(const CommonOptions& common, DistillOptions options);
int run_eval(const CommonOptions& common, const EvalOptions& options);

}  // namespace apps
}  // namespace kd
