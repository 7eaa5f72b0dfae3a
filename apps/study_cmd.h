// `kdlab study FILE`, `kdlab repro PRESET` and `kdlab report STUDY_DIR`: an experiment file (or
// a preset, which is one shipped with kdlab) is planned (apps/study_spec.h), its runs are run in
// dependency order or handed to Slurm (apps/study_run.h), and its report is written from the
// runs' summaries (apps/study_report.h).
#pragma once
#include <string>
#include <vector>

namespace kd {
namespace apps {

struct StudyCommandOptions {
  std::string file;   // study: the experiment file; repro: the preset; report: the study directory
  std::string scale;  // tiny | small | paper; empty: the file's default_scale
  std::vector<std::string> sets;  // --set NAME=VALUE
  std::string out;
  bool plan = false;
  std::string slurm_dir;
  std::string run_one;
  // Passed to every run when given (empty / false: not given).
  std::string seed, device, threads, data_dir, cpu_conv, conv, bn, precision;
  bool deterministic = false, tf32 = false, cudnn_find = false;
  // repro only
  bool list = false, show = false, quick = false;
  std::string dataset;
};

int run_study_command(const StudyCommandOptions& options, bool preset);
int run_report_command(const std::string& study_dir);

}  // namespace apps
}  // namespace kd
