// A run directory (runs/<name>/): everything one kdlab command leaves behind, written so a crash
// never leaves a half-written file: config.json (fully resolved, with the command line and git
// revision), metrics.csv (one row per evaluation), summary.json, log.txt, plus checkpoints and
// plots named through file().
#pragma once
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace kd {
namespace apps {

class RunDir {
 public:
  // Creates `path` (and parents). An existing non-empty directory is refused (kd::InputError
  // "--out <path>: directory exists and is not empty") unless allow_existing.
  // One run directory, one writer: the object holds an exclusive lock on path/.lock (flock, so
  // it ends with the process however it ends), and a second process that wants the same
  // directory, a resumed run included, is refused at once, naming the first one's pid. Once
  // locked, an existing directory's stale temporary files (a killed writer's .NAME.tmp.*) are
  // removed.
  explicit RunDir(const std::string& path, bool allow_existing = false);
  // Whether another process holds `path`'s lock now.
  static bool locked_by_another(const std::string& path);

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const;  // path/name

  // Recorded into every config.json; main calls it once with its own arguments.
  static void set_command_line(int argc, const char* const* argv);
  static const std::string& command_line();

  // Writes config.json after adding "command_line", "arguments" (argv after the program name),
  // "working_directory", "git_revision" (+ "git_dirty" when known),
  // "started_at" (UTC ISO 8601, when this RunDir was made), "host" and "kdlab_version"; a key the
  // caller already set is kept.
  void write_config(nlohmann::json config) const;

  // metrics.csv: the first row's keys are the header; every later row must have the same keys in
  // the same order (else kd::Error). The file is rewritten atomically per row, so readers never
  // see half a row. It holds the rows appended through this object (an older file is replaced).
  void append_metrics(const std::vector<std::pair<std::string, std::string>>& row);
  // A resumed command: keep the header and the first `rows` rows of the existing metrics.csv
  // (those of the epochs its state file counts), drop any later ones, and append after them.
  // Fewer rows than that on disk is a kd::InputError naming the file.
  void keep_metrics_rows(int rows);

  void write_summary(const nlohmann::json& summary) const;  // summary.json, atomically

  double seconds() const;  // since construction
  // Appends "[<seconds since construction> s] line" to log.txt, flushed at once.
  void log(const std::string& line) const;

 private:
  std::string path_;
  std::shared_ptr<const int> lock_;  // the lock file's descriptor, closed with the last copy
  std::chrono::steady_clock::time_point started_;
  std::string started_at_;
  std::vector<std::string> metric_keys_;
  std::string metrics_text_;  // the whole CSV so far
};

// What `kdlab <command> --resume RUN_DIR` replays: the arguments the run was started with
// (config.json "arguments", the subcommand first, any --out dropped) and the folder it ran in.
// A run directory of another command, or one without these keys, is a kd::InputError.
struct RecordedCommand {
  std::vector<std::string> arguments;
  std::string working_directory;
};
RecordedCommand recorded_command(const std::string& run_dir, const std::string& command);

// Helpers shared with reports: the source tree's git revision ("unknown" when not a git checkout
// or git is missing) and the current UTC time as ISO 8601 ("2024-05-01T12:34:56Z").
std::string git_revision();
bool git_tree_dirty();  // tracked files differ from the revision
std::string utc_timestamp(const char* format = "%Y-%m-%dT%H:%M:%SZ");  // now, in UTC
// A word quoted for a POSIX shell only when it needs it (so a printed command can be pasted).
std::string shell_quote(const std::string& word);
// One CSV field, quoted only when it holds a comma, quote or line break.
std::string csv_field(const std::string& value);

}  // namespace apps
}  // namespace kd
