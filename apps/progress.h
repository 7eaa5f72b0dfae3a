// Progress of a long loop on stderr. On a terminal: one bar redrawn in place (label, bar,
// done/total, rate, ETA, status) at most 10 times a second. Elsewhere (logs, Slurm output): plain
// lines "label: done/total (pct%) status" at most every 10% and at least every 30 s, so log files
// stay short. KDLAB_PROGRESS=plain|bar|off overrides the choice.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace kd {
namespace apps {

class Progress {
 public:
  enum class Mode { Off, Plain, Bar };

  Progress(std::string label, int64_t total);  // total <= 0: unknown (no bar, no ETA)
  ~Progress();  // ends an unfinished bar's line so later output starts on a fresh line
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(int64_t done, const std::string& status = "");
  void finish(const std::string& status = "");  // reports total (or the last done when unknown)

  Mode mode() const { return mode_; }
  static Mode mode_from_environment();  // KDLAB_PROGRESS, else bar on a terminal, else plain

 private:
  double elapsed_seconds() const;
  std::string bar_line(int64_t done, const std::string& status) const;
  std::string plain_line(int64_t done, const std::string& status) const;
  void draw_bar(const std::string& line);

  std::string label_;
  int64_t total_;
  Mode mode_;
  std::chrono::steady_clock::time_point start_;
  double last_draw_ = -1;  // elapsed seconds at the last output
  int last_decile_ = 0;    // plain mode: the last 10% step printed (0% is never printed)
  int64_t last_done_ = 0;
  size_t drawn_width_ = 0;  // bar mode: characters on the current line
  bool finished_ = false;
};

// "42s", "3m07s", "1h02m": short durations for ETAs and logs.
std::string format_duration(double seconds);

}  // namespace apps
}  // namespace kd
