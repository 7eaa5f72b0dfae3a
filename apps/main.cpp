// kdlab command line: train, distill, eval, import, study, repro, report, bench. Parses argv with
// the parser of cli.h and dispatches; every error becomes one line
// "kdlab: error: ..." and a non-zero exit (2 for bad input, 1 otherwise).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "apps/interrupt.h"
#include "apps/run_dir.h"
#include "apps/study_run.h"
#include "base/check.h"
#include "engine/runtime_config.h"

namespace {

using namespace kd::apps;

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

// OpenMP threads that wait for work spin for a while before they sleep (libgomp: 300,000 spins).
// On a machine shared with another busy process those spins take the cores our working threads
// need, and every region's barrier waits for a thread that lost its core: PreResNet-20's CPU step
// went from 340 ms idle to 1,190 ms beside one busy process (3.5x). With 1,000 spins it takes
// 330 ms idle and 700 ms busy (2.1x). libgomp reads the setting once, when it loads, before
// main; so when the user has chosen none, set it and start this program again, once.
void exec_with_short_openmp_spins(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", "1000", 1) != 0) return;
  execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
}

int main(int argc, char** argv) {
  exec_with_short_openmp_spins(argv);
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
  std::unique_ptr<Cli> cli = make_cli();
  CLI::App& app = cli->app;
  CommonOptions& common = cli->common;
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
  // Training stops cleanly on SIGINT/SIGTERM (apps/interrupt.h); a study waits for its run to.
  if (cli->train_cmd->parsed() || cli->distill_cmd->parsed() || cli->study_cmd->parsed() ||
      cli->repro_cmd->parsed())
    install_interrupt_handlers();
  try {
    if (cli->train_cmd->parsed()) return run_train(common, cli->train);
    if (cli->distill_cmd->parsed()) return run_distill(common, cli->distill);
    if (cli->eval_cmd->parsed()) return run_eval(common, cli->eval);
    if (cli->import_cmd->parsed()) return run_import(common, cli->import);
    if (cli->study_cmd->parsed()) return run_study_command(cli->study, /*preset=*/false);
    if (cli->repro_cmd->parsed()) return run_study_command(cli->study, /*preset=*/true);
    if (cli->report_cmd->parsed()) return run_report_command(cli->study.file);
    if (cli->bench_cmd->parsed()) {
      BenchOptions& bench = cli->bench;
      bench.models_given = cli->bench_cmd->count("--model") > 0;
      kd::RuntimeConfig config;
      config.threads = bench.threads;
      config.cpu_conv = kd::parse_cpu_conv("--cpu-conv", cli->bench_cpu_conv);
      config.math = {cli->bench_deterministic, cli->bench_tf32, cli->bench_cudnn_find};
      config.precision = kd::parse_precision("--precision", cli->bench_precision);
      kd::set_runtime_config(config);
      return run_bench(bench);
    }
  } catch (const Interrupted& e) {
    const std::string command = cli->train_cmd->parsed() ? "train" : "distill";
    std::cerr << "kdlab: " << e.what()
              << (e.run_dir.empty() ? std::string()
                                    : "; continue with: kdlab " + command + " --resume " + e.run_dir)
              << "\n";
    return 128 + e.signal;
  } catch (const RunFailed& e) {
    std::cerr << "kdlab: error: " << e.what() << "\n";
    return e.code;
  } catch (const kd::InputError& e) {
    std::cerr << "kdlab: error: " << e.what() << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    // Allocations sized by an input name it themselves (a kd::Error); this is any other one.
    std::cerr << "kdlab: error: out of memory (an allocation failed: std::bad_alloc)\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "kdlab: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
