// Experiment files: what a study is, and how one becomes a plan of runs.
//
// A study is a JSON document (presets/*.json are examples; docs in presets/README.md). Its
// runs are kdlab commands (train, distill, eval) whose flags are the CLI's own; values may use
// variables, `${name}` or `${expression}` (+ - * / and parentheses over numbers), and "@ID"
// names the checkpoint of run ID ("@ID/FILE" a file of its directory, "@ID-[a:b]" the runs
// ID-a .. ID-(b-1), as a list). A run that names another run, or lists it in "after", runs after
// it. "for" repeats a run (a table row, a series) over every combination of its variables.
// Scales (tiny, small, paper) override variables; --set overrides them last.
//
// Every mistake is an InputError "<file>: <key path>: <what was expected>", raised before any run
// starts: unknown keys, bad values, unknown flags (checked by the CLI's own parser), cycles.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kd {
namespace apps {

using Json = nlohmann::ordered_json;

struct PlannedRun {
  std::string id;
  std::string command;              // train | distill | eval
  std::vector<std::string> args;    // the command's flags; references resolved; no --out
  std::vector<std::string> after;   // the runs that must finish first
  int level = 0;                    // 0: needs nothing; else 1 + the highest level it needs
};

struct Study {
  std::string source;  // the file's path, or "preset NAME"
  Json doc;            // the file as read
  std::string name, title, paper, question;
  std::string scale, scale_note;
  std::string dir;                  // the study directory the runs' paths point into
  Json vars;                        // every variable: the file's, the scale's, then --set
  std::vector<PlannedRun> runs;     // by level, then in file order
  int levels = 0;
  Json slurm;                       // resources per task: gpus, cpus, time, partition, mem
  const PlannedRun* find(const std::string& id) const;
};

// The document in `text`, or an InputError naming `source` and the line of a syntax error.
Json parse_study_text(const std::string& text, const std::string& source);

// Plans the study at `scale` ("" = the file's default_scale) with `sets` ("NAME=VALUE") applied,
// for the study directory `dir`. `run_flags` are added to every run (e.g. "--device", "cpu").
Study plan_study(const Json& doc, const std::string& source, const std::string& scale,
                 const std::vector<std::string>& sets, const std::string& dir,
                 const std::vector<std::string>& run_flags);

// The template machinery, shared with the report.
// `value` with every ${...} in its strings replaced (a string that is exactly one ${...} takes the
// value's own type); an unknown variable or a bad expression is an InputError naming `where`.
Json substitute(const Json& value, const Json& vars, const std::string& where);
// The variable sets a "for" object makes: `vars` extended by each combination of its keys' values
// (each a list, a ${...} naming one, or {"range": N} for 0..N-1), the first key slowest.
std::vector<Json> expand_for(const Json& for_spec, const Json& vars, const std::string& where);
// An object whose keys are all in `allowed`, or an InputError naming the first that is not.
void check_keys(const Json& object, const std::vector<std::string>& allowed,
                const std::string& where);
// A variable value as text ("3", "0.05", "lenet5").
std::string value_text(const Json& value);
bool is_variable_name(const std::string& s);  // letters, digits, '_'; not starting with a digit
// (The template functions live in study_template.cpp.)

}  // namespace apps
}  // namespace kd
