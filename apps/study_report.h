// A study's report, computed from its runs' summary.json files (so `kdlab report DIR` can write it
// again at any time, and a Slurm study's last job writes it the same way):
//   - the table: one row per setting, the file's columns, and the paper's number for the same
//     setting beside each column that has one;
//   - plots (PNG via gnuplot), the teacher as a dashed reference line where the file gives one;
//   - one sentence per finding: whether our numbers agree with the paper's finding, decided by the
//     check the file names (above, below, greater, less, close, rises, falls, best, lowest,
//     best_matches_lowest) on the measured values;
//   - summary.json with every value and verdict.
// Unfinished runs leave "-" cells and "not measured" findings; the report says how many ran.
#pragma once
#include <string>

#include "apps/study_spec.h"

namespace kd {
namespace apps {

// Writes report.md, summary.json and the plots into study.dir; returns the table as text.
std::string write_study_report(const Study& study);

// The file's table, findings and plots parts are checked without any run (InputError naming
// the key); plan_study's caller calls this so a typo fails before hours of runs.
void check_report_spec(const Study& study);

}  // namespace apps
}  // namespace kd
