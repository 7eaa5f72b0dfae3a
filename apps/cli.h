// The kdlab command line as one object: every subcommand, its flags (CLI11) and the option
// structs they fill. main.cpp parses argv with it and dispatches; a study (apps/study_spec.h)
// parses each of its runs' flags with a fresh one, so a study file is checked by the very
// parser its runs will meet, before anything runs.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "apps/bench.h"
#include "apps/commands.h"
#include "apps/import_cmd.h"
#include "apps/study_cmd.h"

namespace kd {
namespace apps {

struct Cli {
  CLI::App app{"kdlab: knowledge-distillation lab. Train teachers, distil students, and measure "
               "fidelity (agreement, KL) and generalization (accuracy, NLL, ECE)."};
  CommonOptions common;
  TrainOptions train;
  DistillOptions distill;
  EvalOptions eval;
  ImportOptions import;
  StudyCommandOptions study;  // study, repro and report
  BenchOptions bench;
  bool bench_tf32 = false, bench_deterministic = false, bench_cudnn_find = false;
  std::string bench_cpu_conv = "auto";
  std::string bench_precision = "fp32";
  std::string resume_dir;  // declared for --help; resume_arguments handles --resume
  CLI::App *train_cmd = nullptr, *distill_cmd = nullptr, *eval_cmd = nullptr,
           *import_cmd = nullptr, *study_cmd = nullptr, *repro_cmd = nullptr,
           *report_cmd = nullptr, *bench_cmd = nullptr;
};

// A new parser (the object refers to its own members, so it is never copied or moved).
std::unique_ptr<Cli> make_cli();

// The study's check of one run: parses `kdlab <command> <args>` with a fresh parser and runs the
// checks the command makes before it reads data (the loop's and the loss's settings). A flag the
// command does not have, or a bad value, is an InputError that starts with `where`.
void check_run_arguments(const std::string& command, const std::vector<std::string>& args,
                         const std::string& where);
// Whether `command` has the flag --<name> (train, distill or eval).
bool command_has_flag(const std::string& command, const std::string& name);

}  // namespace apps
}  // namespace kd
