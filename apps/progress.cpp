// Progress (see progress.h). Output goes through one fwrite per line so concurrent stderr writes
// from other code interleave by whole lines.
#include "apps/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kd {
namespace apps {
namespace {

constexpr double kBarInterval = 0.1;     // seconds between redraws on a terminal
constexpr double kPlainInterval = 30.0;  // longest silence in plain mode
constexpr int kBarCells = 24;

size_t terminal_width() {
  struct winsize ws {};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
  return 100;
}

void emit(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  char buf[32];
  long s = std::lround(seconds);
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%lds", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  return buf;
}

Progress::Mode Progress::mode_from_environment() {
  if (const char* env = std::getenv("KDLAB_PROGRESS")) {
    if (std::strcmp(env, "off") == 0) return Mode::Off;
    if (std::strcmp(env, "plain") == 0) return Mode::Plain;
    if (std::strcmp(env, "bar") == 0) return Mode::Bar;
  }
  return isatty(STDERR_FILENO) ? Mode::Bar : Mode::Plain;
}

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)),
      total_(total),
      mode_(mode_from_environment()),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() {
  if (mode_ == Mode::Bar && !finished_ && drawn_width_ > 0) emit("\n");
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::plain_line(int64_t done, const std::string& status) const {
  char buf[96];
  if (total_ > 0)
    std::snprintf(buf, sizeof buf, ": %lld/%lld (%.0f%%)", static_cast<long long>(done),
                  static_cast<long long>(total_), 100.0 * double(done) / double(total_));
  else
    std::snprintf(buf, sizeof buf, ": %lld", static_cast<long long>(done));
  std::string line = label_ + buf;
  if (!status.empty()) line += " " + status;
  return line;
}

std::string Progress::bar_line(int64_t done, const std::string& status) const {
  double elapsed = elapsed_seconds();
  double rate = elapsed > 0 ? double(done) / elapsed : 0.0;
  std::string line = label_ + " ";
  char buf[96];
  if (total_ > 0) {
    double fraction = std::clamp(double(done) / double(total_), 0.0, 1.0);
    int filled = static_cast<int>(fraction * kBarCells);
    line += "[" + std::string(filled, '#') + std::string(kBarCells - filled, '.') + "] ";
    std::snprintf(buf, sizeof buf, "%lld/%lld", static_cast<long long>(done),
                  static_cast<long long>(total_));
  } else {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(done));
  }
  line += buf;
  // Slow loops (an epoch per step) read better as seconds per step.
  if (rate >= 1 || rate <= 0)
    std::snprintf(buf, sizeof buf, rate >= 100 ? "  %.0f/s" : "  %.1f/s", rate);
  else
    std::snprintf(buf, sizeof buf, "  %.1fs/step", 1.0 / rate);
  line += buf;
  if (total_ > 0 && done < total_)
    line += "  ETA " + (rate > 0 ? format_duration(double(total_ - done) / rate) : "?");
  else
    line += "  " + format_duration(elapsed);
  if (!status.empty()) line += "  " + status;
  return line;
}

void Progress::draw_bar(const std::string& line) {
  // A line wider than the terminal wraps and '\r' can no longer erase it, so cut it.
  size_t width = terminal_width() - 1;
  std::string shown = line.size() > width ? line.substr(0, width) : line;
  std::string out = "\r" + shown;
  if (shown.size() < drawn_width_) out += std::string(drawn_width_ - shown.size(), ' ');
  emit(out);
  drawn_width_ = shown.size();
}

void Progress::update(int64_t done, const std::string& status) {
  if (mode_ == Mode::Off || finished_) return;
  last_done_ = done;
  double now = elapsed_seconds();
  if (mode_ == Mode::Bar) {
    if (last_draw_ >= 0 && now - last_draw_ < kBarInterval) return;
    draw_bar(bar_line(done, status));
    last_draw_ = now;
    return;
  }
  // 100% is left to finish(), which prints the final line anyway.
  int decile = total_ > 0
                   ? static_cast<int>(10 * std::clamp(double(done) / double(total_), 0.0, 0.999))
                   : -1;
  bool new_step = decile > last_decile_;
  // The first call in plain mode anchors the 30 s clock without printing 0%.
  if (last_draw_ < 0 && !new_step) {
    last_draw_ = now;
    return;
  }
  if (new_step || now - last_draw_ >= kPlainInterval) {
    emit(plain_line(done, status) + "\n");
    last_draw_ = now;
    last_decile_ = std::max(last_decile_, decile);
  }
}

void Progress::finish(const std::string& status) {
  if (mode_ == Mode::Off || finished_) return;
  finished_ = true;
  int64_t done = total_ > 0 ? total_ : last_done_;
  if (mode_ == Mode::Bar) {
    draw_bar(bar_line(done, status));
    emit("\n");
    return;
  }
  emit(plain_line(done, status) + " [" + format_duration(elapsed_seconds()) + "]\n");
}

}  // namespace apps
}  // namespace kd
