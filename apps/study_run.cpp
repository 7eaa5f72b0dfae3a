// Study execution (see study_run.h). Each run is a child process of this binary with its output
// in logs/ID.log, so a run's failure, its flags and its files are exactly those of the same
// command typed by hand, and a Slurm task runs the same code path as a local study.
#include "apps/study_run.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "apps/interrupt.h"
#include "apps/report.h"
#include "apps/run_dir.h"
#include "apps/study_report.h"
#include "base/check.h"
#include "engine/atomic_file.h"

namespace fs = std::filesystem;

namespace kd {
namespace apps {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string run_dir_of(const Study& st, const std::string& id) { return st.dir + "/runs/" + id; }
bool finished(const Study& st, const std::string& id) {
  return fs::exists(run_dir_of(st, id) + "/summary.json");
}

Json plan_json(const Study& st) {
  Json runs = Json::array();
  for (const PlannedRun& r : st.runs)
    runs.push_back({{"id", r.id}, {"command", r.command}, {"args", r.args}, {"after", r.after},
                    {"level", r.level}});
  return runs;
}

std::string command_text(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "" : " ") + shell_quote(w);
  return out;
}

// The last "kdlab: error: ..." line of a run's log, without the prefix (or its last line).
std::string error_line(const std::string& log_path) {
  std::istringstream lines(read_text(log_path));
  std::string line, last, error;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    last = line;
    if (line.rfind("kdlab: error: ", 0) == 0) error = line.substr(14);
  }
  return error.empty() ? last : error;
}

// fork + exec `argv` (argv[0] names the binary; it is this process's own) with stdout to `out_path` (appended) and stderr to `err_path` (appended);
// the child's exit status, 128 + signal when killed.
int run_child(const std::vector<std::string>& argv, const std::string& out_path,
              const std::string& err_path) {
  std::cout.flush();
  std::cerr.flush();
  pid_t pid = fork();
  KD_CHECK(pid >= 0, "fork failed: " << std::strerror(errno));
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err = out_path == err_path ? out : open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || err < 0) _exit(126);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    // This very binary, even if a rebuild has replaced the file since the study started.
    execv("/proc/self/exe", args.data());
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// One line on what a finished run measured, for the progress output.
std::string result_line(const Json& summary) {
  auto pct = [](const Json& j, const char* k) {
    return j.contains(k) ? format_percent(j[k].get<double>(), 2) : std::string("?");
  };
  std::string out;
  if (summary.contains("test") && summary["test"].is_object()) {
    out = "test acc " + pct(summary["test"], "accuracy");
    if (summary["test"].contains("agreement"))
      out += ", test agree " + pct(summary["test"], "agreement");
  }
  return out;
}

struct Outcome {
  int code = 0;
  double seconds = 0;
};

Outcome execute(const Study& st, const PlannedRun& run, const std::string& kdlab) {
  const std::string dir = run_dir_of(st, run.id);
  const std::string log = st.dir + "/logs/" + run.id + ".log";
  fs::create_directories(st.dir + "/logs");
  std::vector<std::string> argv = {kdlab, run.command};
  KD_INPUT_CHECK(!RunDir::locked_by_another(dir),
                 "run " << run.id << ": another kdlab process is writing " << dir);
  const bool resumable = fs::exists(dir + "/last.safetensors");
  if (run.command != "eval" && resumable) {
    argv.insert(argv.end(), {"--resume", dir});
  } else {
    // Started and stopped before its first state file: nothing in it is worth keeping.
    std::error_code ec;
    fs::remove_all(dir, ec);
    argv.insert(argv.end(), run.args.begin(), run.args.end());
    if (run.command != "eval") argv.insert(argv.end(), {"--out", dir});
  }
  {
    std::ofstream header(log, std::ios::app);
    header << "$ " << command_text(argv) << "\n";
  }
  auto t0 = std::chrono::steady_clock::now();
  Outcome o;
  if (run.command == "eval") {
    // eval prints its JSON; the study keeps it as the run's summary.
    fs::create_directories(dir);
    const std::string tmp = dir + "/.eval-output";
    std::remove(tmp.c_str());
    o.code = run_child(argv, tmp, log);
    o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.code == 0) {
      Json j;
      try {
        j = Json::parse(read_text(tmp));
      } catch (const std::exception& e) {
        throw Error("run " + run.id + ": eval printed no JSON (" + tmp + "): " + e.what());
      }
      j["command"] = "eval";
      j["arguments"] = argv;
      write_file_atomic(dir + "/summary.json", j.dump(2) + "\n");
    }
    std::remove(tmp.c_str());
  } else {
    o.code = run_child(argv, log, log);
    o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  // The study's own record of the run's wall time, over every attempt (a resumed run's summary
  // must be the bytes an uninterrupted run writes, so the time is kept beside it).
  if (o.code == 0 || fs::exists(dir)) {
    const std::string path = dir + "/timing.json";
    Json timing = {{"seconds", 0.0}, {"attempts", 0}};
    std::ifstream in(path);
    if (in) {
      try {
        timing = Json::parse(in);
      } catch (const std::exception&) {
      }
    }
    timing["seconds"] = timing.value("seconds", 0.0) + o.seconds;
    timing["attempts"] = timing.value("attempts", 0) + 1;
    timing["finished"] = o.code == 0;
    fs::create_directories(dir);
    write_file_atomic(path, timing.dump(2) + "\n");
  }
  return o;
}

bool any_run_started(const Study& st) {
  std::error_code ec;
  return fs::exists(st.dir + "/runs", ec) && !fs::is_empty(st.dir + "/runs", ec);
}

}  // namespace

std::string self_executable() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  KD_CHECK(!ec, "cannot find this program's path (/proc/self/exe): " << ec.message());
  std::string path = p.string();
  const std::string deleted = " (deleted)";  // rebuilt since it started: name the new file
  if (path.size() > deleted.size() && path.compare(path.size() - deleted.size(), deleted.size(), deleted) == 0)
    path.resize(path.size() - deleted.size());
  return path;
}

void print_plan(const Study& st, const std::vector<std::string>& kdlab) {
  std::cout << st.name << " (scale " << st.scale << "): " << st.runs.size() << " runs in "
            << st.levels << " level" << (st.levels == 1 ? "" : "s") << ", into " << st.dir << "\n";
  int level = -1;
  for (const PlannedRun& r : st.runs) {
    if (r.level != level) std::cout << "level " << (level = r.level) << ":\n";
    std::string after;
    for (const std::string& a : r.after) after += (after.empty() ? "" : " ") + a;
    std::vector<std::string> words = kdlab;
    words.push_back(r.command);
    words.insert(words.end(), r.args.begin(), r.args.end());
    if (r.command != "eval") words.insert(words.end(), {"--out", run_dir_of(st, r.id)});
    std::cout << "  " << r.id << (after.empty() ? "" : "  (after " + after + ")") << "\n    "
              << command_text(words) << "\n";
  }
}

bool prepare_study_dir(const Study& st) {
  const std::string config_path = st.dir + "/config.json";
  const Json plan = plan_json(st);
  std::error_code ec;
  if (fs::exists(config_path)) {
    Json old;
    try {
      old = Json::parse(read_text(config_path));
    } catch (const std::exception&) {
      throw InputError("--out " + st.dir + ": config.json is not JSON; not a study directory");
    }
    if (old.value("command", "") != "study")
      throw InputError("--out " + st.dir + ": directory exists and is not empty (and is not a "
                       "study's directory)");
    KD_INPUT_CHECK(old.value("study", "") == st.name && old.value("scale", "") == st.scale,
                   "--out " << st.dir << ": holds the study " << old.value("study", "?")
                            << " at scale " << old.value("scale", "?") << ", not " << st.name
                            << " at scale " << st.scale << "; use another --out");
    const Json& old_runs = old["runs"];
    for (size_t i = 0; i < std::max(old_runs.size(), plan.size()); ++i) {
      // config.json went through nlohmann::json, which sorts keys: compare unordered.
      if (i < old_runs.size() && i < plan.size() &&
          nlohmann::json::parse(old_runs[i].dump()) == nlohmann::json::parse(plan[i].dump()))
        continue;
      const std::string id = i < plan.size() ? plan[i]["id"].get<std::string>()
                                             : old_runs[i]["id"].get<std::string>();
      throw InputError("--out " + st.dir + ": its run '" + id +
                       "' was planned with other settings (changed file or --set); use another "
                       "--out to run this plan");
    }
    return false;
  }
  if (fs::exists(st.dir, ec) && !(fs::is_directory(st.dir, ec) && fs::is_empty(st.dir, ec)))
    throw InputError("--out " + st.dir + ": directory exists and is not empty");
  RunDir dir(st.dir, /*allow_existing=*/true);
  dir.write_config(Json{{"command", "study"},
                        {"study", st.name},
                        {"source", st.source},
                        {"scale", st.scale},
                        {"vars", st.vars},
                        {"runs", plan},
                        // As text: config.json's JSON sorts keys, and a file's key order matters
                        // (the order of "for" loops, of flags).
                        {"file_text", st.doc.dump(2)}});
  return true;
}

int run_study_locally(const Study& st, const std::string& kdlab, bool created_dir) {
  auto t0 = std::chrono::steady_clock::now();
  size_t done = 0;
  for (const PlannedRun& r : st.runs) done += finished(st, r.id);
  if (done > 0)
    std::cout << st.name << ": continuing in " << st.dir << ": " << done << " of "
              << st.runs.size() << " runs finished\n";
  size_t index = 0;
  for (const PlannedRun& r : st.runs) {
    ++index;
    if (finished(st, r.id)) continue;
    if (int sig = pending_interrupt())
      throw RunFailed(128 + sig, "stopped by " + signal_name(sig) + " before run " + r.id +
                                     "; run the same command again to continue");
    const bool resuming = fs::exists(run_dir_of(st, r.id) + "/last.safetensors");
    // A terminal sees the run start; a pipe or file gets one line per finished run only, so a
    // study that fails before anything finished prints nothing but its one error line.
    const std::string head = "[" + std::to_string(index) + "/" + std::to_string(st.runs.size()) +
                             "] " + r.command + " " + r.id + (resuming ? " (resumed)" : "");
    const bool tty = isatty(STDOUT_FILENO);
    if (tty) std::cout << head << " ..." << std::flush;
    Outcome o = execute(st, r, kdlab);
    if (o.code != 0) {
      if (tty) std::cout << " failed\n";
      const std::string log = st.dir + "/logs/" + r.id + ".log";
      std::string why = error_line(log);
      if (o.code == 130 || o.code == 143) why += "; run the same command again to continue";
      if (created_dir && !any_run_started(st)) {
        // Nothing ran (bad data, a bad flag value): leave no study directory behind.
        std::error_code ec;
        fs::remove_all(st.dir, ec);
        throw RunFailed(o.code, "run " + r.id + ": " + why);
      }
      throw RunFailed(o.code, "run " + r.id + ": " + why + " (log: " + log + ")");
    }
    Json summary = Json::parse(read_text(run_dir_of(st, r.id) + "/summary.json"));
    std::cout << (tty ? "" : head + ":") << " " << format_fixed(o.seconds, 1)
              << " s: " << result_line(summary) << "\n";
  }
  std::string table = write_study_report(st);
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "\n" << st.name << " (" << st.scale << "): " << format_fixed(total, 1) << " s\n"
            << table << "report: " << st.dir << "/report.md\nrun directory: " << st.dir << "\n";
  return 0;
}

int run_one(const Study& st, const std::string& id, const std::string& kdlab) {
  const PlannedRun* run = st.find(id);
  KD_INPUT_CHECK(run != nullptr, "--run-one " << id << ": the study " << st.name
                                              << " has no run with this id (see --plan)");
  for (const std::string& a : run->after)
    KD_INPUT_CHECK(finished(st, a), "--run-one " << id << ": it needs run '" << a
                                                 << "', which has not finished");
  if (finished(st, id)) {
    std::cout << id << ": finished already\n";
    return 0;
  }
  Outcome o = execute(st, *run, kdlab);
  const std::string log = st.dir + "/logs/" + id + ".log";
  if (o.code != 0) throw RunFailed(o.code, "run " + id + ": " + error_line(log) + " (log: " + log + ")");
  std::cout << id << ": " << format_fixed(o.seconds, 1) << " s\n";
  return 0;
}

void write_slurm_scripts(const Study& st, const std::string& dir,
                         const std::vector<std::string>& task_command,
                         const std::vector<std::string>& report_command) {
  fs::create_directories(dir + "/logs");
  const std::string abs = fs::absolute(dir).lexically_normal().string();
  auto header = [&](const std::string& job, const std::string& array, bool resources) {
    std::ostringstream s;
    s << "#!/bin/bash\n"
      << "# Written by kdlab study --slurm for " << st.name << " (scale " << st.scale << ").\n"
      << "#SBATCH --job-name=" << job << "\n";
    if (!array.empty()) s << "#SBATCH --array=" << array << "\n";
    s << "#SBATCH --output=" << abs << "/logs/" << job << (array.empty() ? "" : "-%a")
      << ".out\n";
    if (resources) {
      if (st.slurm.contains("cpus")) s << "#SBATCH --cpus-per-task=" << value_text(st.slurm["cpus"]) << "\n";
      if (st.slurm.contains("gpus") && value_text(st.slurm["gpus"]) != "0")
        s << "#SBATCH --gres=gpu:" << value_text(st.slurm["gpus"]) << "\n";
      if (st.slurm.contains("time")) s << "#SBATCH --time=" << value_text(st.slurm["time"]) << "\n";
      if (st.slurm.contains("mem")) s << "#SBATCH --mem=" << value_text(st.slurm["mem"]) << "\n";
    }
    if (st.slurm.contains("partition"))
      s << "#SBATCH --partition=" << value_text(st.slurm["partition"]) << "\n";
    s << "set -euo pipefail\n";
    return s.str();
  };
  std::ostringstream submit;
  submit << "#!/bin/bash\n"
         << "# Submits " << st.name << " (scale " << st.scale << "): " << st.runs.size()
         << " runs in " << st.levels << " job arrays, each after the previous one succeeded,\n"
         << "# then the report. Prints one job id per line.\n"
         << "set -euo pipefail\n"
         << "cd " << shell_quote(abs) << "\n"
         << "previous=\n";
  for (int level = 0; level < st.levels; ++level) {
    std::vector<std::string> ids;
    for (const PlannedRun& r : st.runs)
      if (r.level == level) ids.push_back(r.id);
    const std::string name = "level-" + std::to_string(level);
    std::ostringstream s;
    s << header("kdlab-" + st.name + "-" + name, "0-" + std::to_string(ids.size() - 1), true)
      << "runs=(";
    for (const std::string& id : ids) s << " " << shell_quote(id);
    s << " )\n"
      << "exec " << command_text(task_command) << " --run-one \"${runs[$SLURM_ARRAY_TASK_ID]}\"\n";
    write_file_atomic(dir + "/" + name + ".sbatch", s.str());
    submit << "job=$(sbatch --parsable ${previous:+--dependency=afterok:$previous} " << name
           << ".sbatch)\nprevious=${job%%;*}\necho \"$previous\"\n";
  }
  write_file_atomic(dir + "/report.sbatch",
                    header("kdlab-" + st.name + "-report", "", false) + "exec " +
                        command_text(report_command) + "\n");
  submit << "job=$(sbatch --parsable --dependency=afterok:$previous report.sbatch)\n"
         << "echo \"${job%%;*}\"\n";
  write_file_atomic(dir + "/submit.sh", submit.str());
  fs::permissions(dir + "/submit.sh", fs::perms::owner_exec | fs::perms::group_exec,
                  fs::perm_options::add);
}

}  // namespace apps
}  // namespace kd
