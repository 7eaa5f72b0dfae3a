// The cost model's side of `kdlab bench`: one training step run under a CostRecorder
// (engine/cost_model.h), and the columns and per-kernel table it prints. The recorded step is
// never a timed one, so the wrappers' few nanoseconds per call stay out of the timings.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "apps/report.h"
#include "engine/cost_model.h"

namespace kd {
namespace apps {

struct StepCost {
  CostTotals totals;
  std::map<std::string, CostTotals> by_kernel;
  PeakRates peaks;
  int64_t launches_total = 0;  // the backend's counter across the whole step (GPU only)
};

// Runs `step` once on `device` with every kernel call, zeroing and copy recorded.
StepCost measure_step_cost(Device device, const std::function<void()>& step);

// The line under a table with cost columns: what "ideal" means, at which peaks.
std::string cost_model_footnote(bool tensor_cores);
// Column titles and cells: GFLOP, MB moved, calls (and launches on a GPU), ideal time.
std::vector<std::string> cost_header(bool gpu);
std::vector<std::string> cost_cells(const StepCost& cost, bool gpu);
// One row per kernel name, the heaviest (by ideal time) first.
Table cost_breakdown(const StepCost& cost, bool gpu);

}  // namespace apps
}  // namespace kd
