// Running a planned study (apps/study_spec.h): its directory, each run as a child process of
// the same binary, skipping finished runs and resuming a stopped one, or Slurm job arrays that do
// the same one run per task.
//
// Layout of a study directory:
//   config.json        the study's record: file, scale, variables, the planned runs' commands
//   runs/ID/           each run's own run directory (config.json, metrics.csv, summary.json, ...)
//   logs/ID.log        each run's stdout and stderr
//   report.md, summary.json, *.png   the report (apps/study_report.h)
// A run is finished when runs/ID/summary.json exists (written last, atomically); a run directory
// with a state file (last.safetensors) is resumed; any other is started again.
#pragma once
#include <string>
#include <vector>

#include "apps/study_spec.h"
#include "base/check.h"

namespace kd {
namespace apps {

// A run of the study failed: the study exits with the run's own exit code.
struct RunFailed : Error {
  RunFailed(int exit_code, const std::string& what) : Error(what), code(exit_code) {}
  int code;
};

// Prints the runs by level with their commands (`kdlab study FILE --plan`).
void print_plan(const Study& study, const std::vector<std::string>& kdlab);

// Creates the study directory, or checks that an existing one holds this very plan (else an
// InputError naming --out and the first difference). Returns whether it was created now.
bool prepare_study_dir(const Study& study);

// Runs every unfinished run in order, then writes the report. `kdlab` is the binary's path.
// Returns the exit code (a failed run's own).
int run_study_locally(const Study& study, const std::string& kdlab, bool created_dir);

// Runs the one run `id` (its dependencies must have finished): what a Slurm task does.
int run_one(const Study& study, const std::string& id, const std::string& kdlab);

// Writes DIR/level-K.sbatch (one job array per dependency level), DIR/report.sbatch and
// DIR/submit.sh (sbatch each, chained with --dependency=afterok). `task_command` is the command
// line that runs one run, to which "--run-one ID" is appended per task.
void write_slurm_scripts(const Study& study, const std::string& dir,
                         const std::vector<std::string>& task_command,
                         const std::vector<std::string>& report_command);

// The path of the running kdlab binary.
std::string self_executable();

}  // namespace apps
}  // namespace kd
