// `kdlab study`, `kdlab repro` and `kdlab report` (see study_cmd.h).
#include "apps/study_cmd.h"

#include <filesystem>
#include <iostream>

#include "apps/presets.h"
#include "apps/run_dir.h"
#include "apps/study_report.h"
#include "apps/study_run.h"
#include "base/check.h"
#include "base/input_file.h"

namespace fs = std::filesystem;

namespace kd {
namespace apps {
namespace {

std::string absolute_path(const std::string& path) {
  std::string out = fs::absolute(path).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();  // "DIR/." -> "DIR"
  return out;
}

void list_presets() {
  size_t width = 0;
  for (const Preset& p : presets()) width = std::max(width, p.name.size());
  for (const Preset& p : presets()) {
    Json doc = parse_study_text(p.text, "preset " + p.name);
    std::string line = doc.value("title", std::string());
    if (doc.contains("paper")) line = doc["paper"].get<std::string>() + ": " + line;
    if (doc.contains("unsupported")) line += " [not supported: " + doc["unsupported"].get<std::string>() + "]";
    std::cout << p.name << std::string(width + 2 - p.name.size(), ' ') << line << "\n";
  }
}

// The flags every run gets from the study's command line, as (flag, value) pairs ("" = none).
std::vector<std::string> run_flags(const StudyCommandOptions& o) {
  std::vector<std::string> flags;
  auto add = [&](const char* flag, const std::string& value) {
    if (!value.empty()) flags.insert(flags.end(), {flag, value});
  };
  add("--device", o.device);
  add("--threads", o.threads);
  add("--data-dir", o.data_dir.empty() ? "" : absolute_path(o.data_dir));
  add("--cpu-conv", o.cpu_conv);
  add("--conv", o.conv);
  add("--bn", o.bn);
  add("--precision", o.precision);
  if (o.deterministic) flags.insert(flags.end(), {"--deterministic", ""});
  if (o.tf32) flags.insert(flags.end(), {"--tf32", ""});
  if (o.cudnn_find) flags.insert(flags.end(), {"--cudnn-find", ""});
  return flags;
}

}  // namespace

int run_study_command(const StudyCommandOptions& o, bool preset) {
  std::string text, source, file_arg;
  if (preset) {
    if (o.list) {
      list_presets();
      return 0;
    }
    KD_INPUT_CHECK(!o.file.empty(), "repro: name a preset (see 'kdlab repro --list')");
    const Preset& p = find_preset(o.file);
    if (o.show) {
      std::cout << p.text;
      return 0;
    }
    text = p.text;
    source = "preset " + p.name;
    file_arg = p.name;
  } else {
    try {
      text = read_input_text(o.file);
    } catch (const InputError& e) {
      throw InputError(std::string(e.what()) + " (expected the experiment file)");
    }
    source = o.file;
    file_arg = absolute_path(o.file);
  }
  Json doc = parse_study_text(text, source);
  KD_INPUT_CHECK(!(o.quick && !o.scale.empty() && o.scale != "tiny"),
                 "--quick is --scale tiny; it cannot go with --scale " << o.scale);
  const std::string scale = o.quick ? "tiny" : o.scale;
  std::vector<std::string> sets = o.sets;
  if (!o.seed.empty()) sets.push_back("seed=" + o.seed);
  const std::string name = doc.is_object() && doc.contains("name") && doc["name"].is_string()
                               ? doc["name"].get<std::string>() : "study";
  const std::string shown_scale =
      !scale.empty() ? scale : doc.is_object() ? doc.value("default_scale", std::string("small")) : "";
  const std::string dir = absolute_path(
      o.out.empty() ? "runs/" + name + "-" + shown_scale + "-" + utc_timestamp("%Y%m%d-%H%M%S")
                    : o.out);
  const std::vector<std::string> flags = run_flags(o);
  Study st = plan_study(doc, source, scale, sets, dir, flags);
  check_report_spec(st);
  if (!o.dataset.empty()) {
    const std::string dataset = st.vars.contains("dataset") ? value_text(st.vars["dataset"]) : "";
    KD_INPUT_CHECK(o.dataset == dataset, "--dataset " << o.dataset << ": preset " << st.name
                                                      << " runs on " << dataset << " at scale "
                                                      << st.scale);
  }
  const std::string kdlab = self_executable();
  if (o.plan) {
    print_plan(st, {kdlab});
    return 0;
  }
  // What a Slurm task runs: this very study, one run of it.
  std::vector<std::string> task = {kdlab, preset ? "repro" : "study", file_arg, "--scale", st.scale};
  for (const std::string& s : sets) task.insert(task.end(), {"--set", s});
  for (size_t k = 0; k < flags.size(); k += 2) {
    task.push_back(flags[k]);
    if (!flags[k + 1].empty()) task.push_back(flags[k + 1]);
  }
  task.insert(task.end(), {"--out", dir});
  if (!o.slurm_dir.empty()) {
    prepare_study_dir(st);
    write_slurm_scripts(st, o.slurm_dir, task, {kdlab, "report", dir});
    std::cout << st.name << " (scale " << st.scale << "): " << st.runs.size() << " runs in "
              << st.levels << " Slurm job arrays, written to " << absolute_path(o.slurm_dir)
              << "\nsubmit with: " << shell_quote(absolute_path(o.slurm_dir) + "/submit.sh")
              << "\nthe study's directory: " << dir << "\n";
    return 0;
  }
  if (!o.run_one.empty()) {
    KD_INPUT_CHECK(!o.out.empty(), "--run-one " << o.run_one << ": give the study's --out");
    prepare_study_dir(st);
    return run_one(st, o.run_one, kdlab);
  }
  bool created = prepare_study_dir(st);
  return run_study_locally(st, kdlab, created);
}

int run_report_command(const std::string& study_dir) {
  const std::string dir = absolute_path(study_dir);
  KD_INPUT_CHECK(fs::exists(dir + "/config.json"),
                 study_dir << ": no config.json; not a study's directory");
  Json config = parse_study_text(read_input_text(dir + "/config.json"), study_dir + "/config.json");
  KD_INPUT_CHECK(config.value("command", "") == "study" && config.contains("file_text"),
                 study_dir << ": its config.json is not a study's (command "
                           << config.value("command", "?") << ")");
  // The study as it was planned: the same file, scale and variables.
  std::vector<std::string> sets;
  for (auto it = config["vars"].begin(); it != config["vars"].end(); ++it)
    if (it.key() != "scale") sets.push_back(it.key() + "=" + it.value().dump());
  const std::string source = config.value("source", study_dir);
  Study st = plan_study(parse_study_text(config["file_text"].get<std::string>(), source), source,
                        config.value("scale", ""), sets, dir, {});
  std::string table = write_study_report(st);
  std::cout << st.name << " (" << st.scale << ")\n" << table << "report: " << dir << "/report.md\n";
  return 0;
}

}  // namespace apps
}  // namespace kd
