// The cost model's rows for `kdlab bench` (see bench_cost.h).
#include "apps/bench_cost.h"

#include <algorithm>

#include "engine/runtime_config.h"

namespace kd {
namespace apps {

StepCost measure_step_cost(Device device, const std::function<void()>& step) {
  const Backend& backend = backend_of(device);
  if (device.is_cuda()) backend.synchronize();
  const uint64_t launches_before = backend.launch_count ? backend.launch_count() : 0;
  StepCost out;
  {
    PeakRates peaks;
    peaks.tensor_cores = device.is_cuda() && runtime_config().math.tf32;
    CostRecorder recorder(device, peaks);
    step();
    out.totals = recorder.totals();
    out.by_kernel = recorder.by_kernel();
    out.peaks = recorder.peaks();
  }
  if (device.is_cuda()) backend.synchronize();
  if (backend.launch_count) out.launches_total = int64_t(backend.launch_count() - launches_before);
  return out;
}

std::string cost_model_footnote(bool tensor_cores) {
  const PeakRates peaks;
  std::string text =
      "cost model (kernels/kernel_cost.h): FLOPs and bytes each kernel call, zeroing and copy of "
      "one step must move; ideal = each call at the " + std::string(peaks.name) +
      "'s peak FP32 compute (" + format_fixed(peaks.flops_per_s / 1e12, 0) +
      " TFLOP/s) or bandwidth (" + format_fixed(peaks.bytes_per_s / 1e12, 1) +
      " TB/s), whichever is slower, summed";
  if (tensor_cores)
    text += "; under --tf32 convolutions and matrix products at its dense TF32 tensor-core peak (" +
            format_fixed(peaks.tensor_flops_per_s / 1e12, 0) + " TFLOP/s)";
  return text + "\n";
}

std::vector<std::string> cost_header(bool gpu) {
  std::vector<std::string> h = {"GFLOP/step", "MB/step", "calls/step"};
  if (gpu) h.push_back("launches/step");
  h.push_back("ideal H200 ms");
  return h;
}

std::vector<std::string> cost_cells(const StepCost& c, bool gpu) {
  std::vector<std::string> cells = {format_fixed(c.totals.flops / 1e9, 2),
                                    format_fixed(c.totals.bytes() / 1e6, 1),
                                    std::to_string(c.totals.calls)};
  if (gpu) cells.push_back(std::to_string(c.launches_total));
  cells.push_back(format_fixed(c.totals.ideal_seconds * 1e3, 3));
  return cells;
}

Table cost_breakdown(const StepCost& c, bool gpu) {
  std::vector<std::pair<std::string, CostTotals>> rows(c.by_kernel.begin(), c.by_kernel.end());
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return a.second.ideal_seconds > b.second.ideal_seconds;
  });
  Table t;
  t.header = {"kernel", "calls", "GFLOP", "MB read", "MB written"};
  if (gpu) t.header.push_back("launches");
  t.header.push_back("ideal ms");
  t.header.push_back("share");
  if (!gpu) t.header.push_back("CPU ms");  // the recorded step's own time in the kernel
  for (const auto& [name, k] : rows) {
    std::vector<std::string> row = {name, std::to_string(k.calls), format_fixed(k.flops / 1e9, 3),
                                    format_fixed(k.bytes_read / 1e6, 1),
                                    format_fixed(k.bytes_written / 1e6, 1)};
    if (gpu) row.push_back(std::to_string(k.launches));
    row.push_back(format_fixed(k.ideal_seconds * 1e3, 4));
    row.push_back(format_fixed(100.0 * k.ideal_seconds / std::max(c.totals.ideal_seconds, 1e-30), 1) +
                  "%");
    if (!gpu) row.push_back(format_fixed(k.host_seconds * 1e3, 2));
    t.rows.push_back(std::move(row));
  }
  return t;
}

}  // namespace apps
}  // namespace kd
