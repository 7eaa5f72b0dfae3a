// RunDir (see run_dir.h). All whole-file writes go through kd::write_file_atomic.
#include "apps/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "engine/atomic_file.h"
#include "base/check.h"
#include "base/input_file.h"

#ifndef KDLAB_SOURCE_DIR
#define KDLAB_SOURCE_DIR ""
#endif
#ifndef KDLAB_VERSION
#define KDLAB_VERSION "0.1.0"
#endif

namespace fs = std::filesystem;

namespace kd {
namespace apps {
namespace {

std::string& stored_command_line() {
  static std::string line;
  return line;
}

std::vector<std::string>& stored_arguments() {
  static std::vector<std::string> arguments;
  return arguments;
}

}  // namespace

std::string shell_quote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789-_./=:,+@%") == std::string::npos)
    return word;
  std::string out = "'";
  for (char c : word) out += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

namespace {

std::string run_and_capture(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return out;
  char buf[256];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  if (pclose(pipe) != 0) return std::string();
  return out;
}

// Invalid UTF-8 (a byte-garbled argument or path) is replaced rather than failing the whole run.
std::string pretty_json(const nlohmann::json& value) {
  return value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

}  // namespace

namespace {
struct GitState {
  std::string revision = "unknown";
  bool dirty = false;
};

const GitState& git_state() {
  static const GitState state = [] {
    GitState out;
    std::string dir = KDLAB_SOURCE_DIR;
    if (dir.empty()) return out;
    std::string base = "git -C " + shell_quote(dir) + " ";
    std::string rev = run_and_capture(base + "rev-parse HEAD 2>/dev/null");
    while (!rev.empty() && (rev.back() == '\n' || rev.back() == '\r')) rev.pop_back();
    if (rev.size() != 40) return out;
    out.revision = rev;
    out.dirty =
        !run_and_capture(base + "status --porcelain --untracked-files=no 2>/dev/null").empty();
    return out;
  }();
  return state;
}
}  // namespace

std::string git_revision() { return git_state().revision; }
bool git_tree_dirty() { return git_state().dirty; }

std::string utc_timestamp(const char* format) {
  std::time_t now = std::time(nullptr);
  std::tm tm_utc{};
  gmtime_r(&now, &tm_utc);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm_utc);
  return buf;
}

std::string csv_field(const std::string& value) {
  if (value.find_first_of(",\"\r\n") == std::string::npos) return value;
  std::string out = "\"";
  for (char c : value) out += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

RunDir::RunDir(const std::string& path, bool allow_existing)
    : path_(path), started_(std::chrono::steady_clock::now()), started_at_(utc_timestamp()) {
  KD_INPUT_CHECK(!path.empty(), "--out: empty directory name");
  std::error_code ec;
  if (fs::exists(path, ec)) {
    KD_INPUT_CHECK(fs::is_directory(path, ec),
                   "--out " << path << ": exists and is not a directory");
    // A directory holding only a lock file is one whose writer died before writing anything.
    bool empty = true;
    for (const auto& entry : fs::directory_iterator(path, ec))
      empty = empty && entry.path().filename() == ".lock";
    KD_INPUT_CHECK(allow_existing || empty,
                   "--out " << path << ": directory exists and is not empty");
  } else {
    fs::create_directories(path, ec);
    KD_INPUT_CHECK(!ec, "--out " << path << ": cannot create directory: " << ec.message());
  }
  const std::string lock_path = file(".lock");
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  KD_INPUT_CHECK(fd >= 0, "--out " << path << ": cannot create " << lock_path << ": "
                                   << std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {0};
    const ssize_t got = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    std::string holder = got > 0 ? std::string(pid, size_t(got)) : "?";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    throw InputError("--out " + path + ": another kdlab process (pid " + holder +
                     ") is writing to this run directory");
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) != ssize_t(me.size())) {
    // The pid is only for the message a second process prints; the lock itself holds.
  }
  lock_ = std::shared_ptr<const int>(new int(fd), [](const int* p) {
    ::close(*p);
    delete p;
  });
  // A killed writer's temporaries (.NAME.tmp.XXXXXX, engine/atomic_file.cpp): nobody else can be
  // writing here now, so they are garbage.
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 1 && name[0] == '.' && name.find(".tmp.") != std::string::npos)
      fs::remove(entry.path(), ec);
  }
}

bool RunDir::locked_by_another(const std::string& path) {
  int fd = ::open((fs::path(path) / ".lock").c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  const bool locked = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
  ::close(fd);  // releases the lock this probe may have taken
  return locked;
}

std::string RunDir::file(const std::string& name) const {
  return (fs::path(path_) / name).string();
}

void RunDir::set_command_line(int argc, const char* const* argv) {
  std::string line;
  for (int i = 0; i < argc; ++i) line += (i ? " " : "") + shell_quote(argv[i] ? argv[i] : "");
  stored_command_line() = line;
  stored_arguments().assign(argv + std::min(argc, 1), argv + argc);
}

const std::string& RunDir::command_line() { return stored_command_line(); }

void RunDir::write_config(nlohmann::json config) const {
  KD_CHECK(config.is_object() || config.is_null(), "RunDir::write_config: config is not an object");
  auto add = [&](const char* key, const nlohmann::json& value) {
    if (!config.contains(key)) config[key] = value;
  };
  add("command_line", command_line());
  add("arguments", stored_arguments());
  std::error_code ec;
  add("working_directory", fs::current_path(ec).string());
  add("git_revision", git_revision());
  // A build from a modified tree is not reproducible from the revision alone: say so.
  if (git_revision() != "unknown") add("git_dirty", git_tree_dirty());
  add("started_at", started_at_);
  add("host", host_name());
  add("kdlab_version", KDLAB_VERSION);
  write_file_atomic(file("config.json"), pretty_json(config));
}

void RunDir::append_metrics(const std::vector<std::pair<std::string, std::string>>& row) {
  KD_CHECK(!row.empty(), "metrics row for " << file("metrics.csv") << " is empty");
  std::string line;
  if (metric_keys_.empty()) {
    for (size_t i = 0; i < row.size(); ++i) line += (i ? "," : "") + csv_field(row[i].first);
    std::vector<std::string> keys;
    for (const auto& kv : row) keys.push_back(kv.first);
    metric_keys_ = keys;
    metrics_text_ = line + "\n";
    line.clear();
  } else {
    bool same = row.size() == metric_keys_.size();
    for (size_t i = 0; same && i < row.size(); ++i) same = row[i].first == metric_keys_[i];
    if (!same) {
      std::string got, want;
      for (size_t i = 0; i < row.size(); ++i) got += (i ? "," : "") + row[i].first;
      for (size_t i = 0; i < metric_keys_.size(); ++i) want += (i ? "," : "") + metric_keys_[i];
      KD_CHECK(false, file("metrics.csv")
                          << ": row has columns [" << got << "], the header is [" << want << "]");
    }
  }
  for (size_t i = 0; i < row.size(); ++i) line += (i ? "," : "") + csv_field(row[i].second);
  std::string text = metrics_text_ + line + "\n";
  write_file_atomic(file("metrics.csv"), text);
  metrics_text_ = std::move(text);  // only after the write succeeded
}

void RunDir::keep_metrics_rows(int rows) {
  const std::string path = file("metrics.csv");
  metric_keys_.clear();
  metrics_text_.clear();
  std::error_code ec;
  if (rows == 0 && !fs::exists(path, ec)) return;
  std::ifstream in(path, std::ios::binary);
  KD_INPUT_CHECK(in, path << ": cannot read it to resume (the state file counts " << rows
                          << " finished epochs)");
  std::string header, line, kept;
  std::getline(in, header);
  int have = 0;
  while (have < rows && std::getline(in, line)) kept += line + "\n", ++have;
  KD_INPUT_CHECK(have == rows && !header.empty(),
                 path << ": has " << have << " rows, the state file counts " << rows
                      << " finished epochs");
  if (rows == 0) {  // the next append writes the header again
    fs::remove(path, ec);
    KD_INPUT_CHECK(!ec, path << ": cannot remove it to resume: " << ec.message());
    return;
  }
  // Our own header: plain column names, so a comma split is exact.
  size_t begin = 0;
  while (begin <= header.size()) {
    size_t comma = header.find(',', begin);
    if (comma == std::string::npos) comma = header.size();
    metric_keys_.push_back(header.substr(begin, comma - begin));
    begin = comma + 1;
  }
  metrics_text_ = header + "\n" + kept;
  write_file_atomic(path, metrics_text_);
}

RecordedCommand recorded_command(const std::string& run_dir, const std::string& command) {
  const std::string path = (fs::path(run_dir) / "config.json").string();
  std::error_code ec;
  KD_INPUT_CHECK(fs::exists(path, ec), "--resume " << run_dir << ": no " << path
                                                   << " (not a run directory?)");
  nlohmann::json config =
      nlohmann::json::parse(read_input_text(path), nullptr, /*allow_exceptions=*/false);
  KD_INPUT_CHECK(config.is_object() && config.contains("arguments") &&
                     config["arguments"].is_array() && !config["arguments"].empty() &&
                     config.contains("working_directory") &&
                     config["working_directory"].is_string(),
                 path << ": expected a JSON object with 'arguments' and 'working_directory' "
                         "(an older kdlab did not record them)");
  RecordedCommand out;
  const nlohmann::json& args = config["arguments"];
  for (const auto& a : args)
    KD_INPUT_CHECK(a.is_string(), path << ": 'arguments' holds a non-string");
  KD_INPUT_CHECK(args[0].get<std::string>() == command,
                 "--resume " << run_dir << ": a '" << args[0].get<std::string>()
                             << "' run, not a '" << command << "' run");
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string a = args[i].get<std::string>();
    if (a == "--out") {
      ++i;  // and its value
      continue;
    }
    if (a.rfind("--out=", 0) == 0) continue;
    out.arguments.push_back(a);
  }
  out.working_directory = config["working_directory"].get<std::string>();
  return out;
}

void RunDir::write_summary(const nlohmann::json& summary) const {
  write_file_atomic(file("summary.json"), pretty_json(summary));
}

double RunDir::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}

void RunDir::log(const std::string& line) const {
  double elapsed = seconds();
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "[%.1f s] ", elapsed);
  const std::string path = file("log.txt"), text = stamp + line + "\n";
  // One write(2) per line; when it fails or is short (a full disk), the file is cut back to its
  // previous length, so log.txt only ever holds whole lines, and the error says why.
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot append to '" + path + "': " + std::strerror(errno));
  const off_t before = ::lseek(fd, 0, SEEK_END);
  const ssize_t written = ::write(fd, text.data(), text.size());
  const int err = written < 0 ? errno : ENOSPC;
  if (written != static_cast<ssize_t>(text.size())) {
    if (before >= 0 && ::ftruncate(fd, before) == 0 && before == 0) ::unlink(path.c_str());
    ::close(fd);
    throw Error("cannot append to '" + path + "': " + std::strerror(err));
  }
  ::close(fd);
}

}  // namespace apps
}  // namespace kd
