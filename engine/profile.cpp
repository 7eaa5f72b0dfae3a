// Profiling hooks (see profile.h): thin wrappers over the GPU backend's NVTX and profiler calls.
// They never open the GPU backend: without one there is nothing to mark.
#include "engine/profile.h"

#include <cstdlib>

#include "engine/runtime_config.h"
#include "base/check.h"
#include "kernels/backend.h"

namespace kd {
namespace profile {

namespace {
int64_t g_steps = 0;
bool g_open = false;
}  // namespace

Range::Range(const char* name) {
  if (const Backend* gpu = gpu_backend_if_loaded()) gpu->range_push(name);
}
Range::~Range() {
  if (const Backend* gpu = gpu_backend_if_loaded()) gpu->range_pop();
}

StepWindow parse_step_window(const std::string& spec) {
  StepWindow w;
  const size_t colon = spec.find(':');
  char* end = nullptr;
  bool ok = colon != std::string::npos && colon > 0 && colon + 1 < spec.size();
  if (ok) {
    w.first = std::strtoll(spec.c_str(), &end, 10);
    ok = end == spec.c_str() + colon;
  }
  if (ok) {
    w.last = std::strtoll(spec.c_str() + colon + 1, &end, 10);
    ok = *end == '\0';
  }
  KD_INPUT_CHECK(ok && w.first >= 1 && w.last >= w.first,
                 "--profile-steps: expected A:B with 1 <= A <= B (training steps), got '" << spec
                                                                                       << "'");
  return w;
}

void step_begin() {
  const StepWindow& window = runtime_config().profile_window;
  if (window.active() && !g_open && g_steps + 1 == window.first) {
    if (const Backend* gpu = gpu_backend_if_loaded()) gpu->profiler_start();
    g_open = true;
  }
}

void step_end() {
  ++g_steps;
  if (g_open && g_steps == runtime_config().profile_window.last) {
    if (const Backend* gpu = gpu_backend_if_loaded()) {
      gpu->synchronize();  // the window's kernels finish inside it
      gpu->profiler_stop();
    }
    g_open = false;
  }
}

int64_t steps_done() { return g_steps; }
bool window_open() { return g_open; }

}  // namespace profile
}  // namespace kd
