// A study's findings: each a claim of the paper and a check (above, below, greater, less,
// close, rises, falls, best, lowest, best_matches_lowest) on measured values, whose verdict and
// evidence are computed, never written in advance (format: presets/README.md).
#pragma once
#include <string>
#include <vector>

#include "apps/study_values.h"

namespace kd {
namespace apps {

struct Finding {
  std::string claim;
  std::string verdict;   // agrees | does not agree | not measured
  std::string evidence;  // the values that decided it, or why there are none
};

// The file's findings, evaluated (check_only: only checked, without any run).
std::vector<Finding> build_findings(const Study& study, Values& values, bool check_only);

}  // namespace apps
}  // namespace kd
