// The grid emulator's schedule setting (kernels/cuda_grid/grid.h), in a header of its own so
// that host code and tests can set it without the device language that grid.h brings along.
// Schedule::All runs each launch forward, reverse and seeded-random and requires equal bytes;
// the other values run it once in that order. KDLAB_GRID_SCHEDULE=all|forward|reverse|random and
// KDLAB_GRID_SEED=N set the default (All; Random under ThreadSanitizer).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <string>

#include "base/check.h"

namespace kd {
namespace grid {

enum class Schedule { All, Forward, Reverse, Random };

struct Settings {
#if defined(__SANITIZE_THREAD__)
  Schedule schedule = Schedule::Random;  // TSan looks for the races; one order is enough there
#else
  Schedule schedule = Schedule::All;
#endif
  uint64_t seed = 1;
};

namespace detail {
inline Settings settings_from_environment() {
  Settings s;
  if (const char* v = std::getenv("KDLAB_GRID_SCHEDULE")) {
    const std::string m = v;
    if (m == "forward") s.schedule = Schedule::Forward;
    else if (m == "reverse") s.schedule = Schedule::Reverse;
    else if (m == "random") s.schedule = Schedule::Random;
    else if (m == "all" || m.empty()) s.schedule = Schedule::All;
    else
      throw InputError("KDLAB_GRID_SCHEDULE: expected all, forward, reverse or random, got '" +
                       m + "'");
  }
  if (const char* v = std::getenv("KDLAB_GRID_SEED")) {
    char* end = nullptr;
    s.seed = std::strtoull(v, &end, 10);
    if (*v == '\0' || *end != '\0')
      throw InputError(std::string("KDLAB_GRID_SEED: expected a non-negative integer, got '") + v +
                       "'");
  }
  return s;
}
inline Settings& settings() {
  static Settings s = settings_from_environment();
  return s;
}
}  // namespace detail

inline Settings settings() { return detail::settings(); }
inline void set_settings(const Settings& s) { detail::settings() = s; }

// Sets the schedule for this scope and restores the previous one at its end.
class ScheduleScope {
 public:
  explicit ScheduleScope(Schedule s) : saved_(settings()) {
    Settings next = saved_;
    next.schedule = s;
    set_settings(next);
  }
  ~ScheduleScope() { set_settings(saved_); }
  ScheduleScope(const ScheduleScope&) = delete;
  ScheduleScope& operator=(const ScheduleScope&) = delete;

 private:
  Settings saved_;
};

}  // namespace grid
}  // namespace kd
