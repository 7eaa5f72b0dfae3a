// Profiling hooks for Nsight: NVTX ranges in the "kdlab" domain (data, forward, backward,
// optimizer, per block and per op, teacher forward) and the profiler window of
// `--profile-steps A:B`, which brackets training steps A..B (1-based, inclusive, counted across
// the whole process) with cudaProfilerStart/Stop so `nsys profile --capture-range=cudaProfilerApi`
// records only those. All of it costs a few nanoseconds when no tool is attached, and nothing
// in a build without CUDA.
#pragma once
#include <cstdint>
#include <string>

namespace kd {
namespace profile {

class Range {
 public:
  explicit Range(const char* name);
  Range(const std::string& name) : Range(name.c_str()) {}
  ~Range();
  Range(const Range&) = delete;
  Range& operator=(const Range&) = delete;
};

struct StepWindow {
  int64_t first = 0, last = 0;  // 0 = no window
  bool active() const { return first > 0; }
};
StepWindow parse_step_window(const std::string& spec);  // "A:B" with 1 <= A <= B; InputError
// The window in effect is RuntimeConfig::profile_window (engine/runtime_config.h).

// Called by the training loops around every optimisation step. Opens the profiler before step
// `first` and closes it after step `last`; steps are counted process-wide.
void step_begin();
void step_end();
int64_t steps_done();
bool window_open();  // between cudaProfilerStart and Stop

}  // namespace profile
}  // namespace kd
