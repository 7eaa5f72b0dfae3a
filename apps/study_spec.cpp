// Experiment files into plans (see study_spec.h): substitution, "for" expansion, flag checking
// through the CLI's parser, references between runs, and dependency levels.
#include "apps/study_spec.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "apps/cli.h"
#include "base/check.h"

namespace kd {
namespace apps {
namespace {

// ---- references between runs ----

struct Reference {
  std::string run, file;  // file empty: the run's checkpoint
};

// "@ID", "@ID/FILE" or "@ID-[a:b]" (with an optional /FILE) as references; not a reference: {}.
std::vector<Reference> parse_references(const std::string& s, const std::string& where) {
  if (s.empty() || s[0] != '@') return {};
  std::string body = s.substr(1), file;
  size_t slash = body.find('/');
  if (slash != std::string::npos) file = body.substr(slash + 1), body = body.substr(0, slash);
  static const std::regex slice(R"((.*)\[(\d+):(\d+)\])");
  std::smatch m;
  std::vector<Reference> refs;
  if (std::regex_match(body, m, slice)) {
    int a = std::stoi(m[2]), b = std::stoi(m[3]);
    if (b <= a) throw InputError(where + ": '" + s + "': an empty slice (expected [a:b], a < b)");
    for (int i = a; i < b; ++i) refs.push_back({m[1].str() + std::to_string(i), file});
  } else {
    refs.push_back({body, file});
  }
  for (const Reference& r : refs)
    if (r.run.empty()) throw InputError(where + ": '" + s + "': '@' must name a run");
  return refs;
}

const char* checkpoint_of(const std::string& command) {
  return command == "train" ? "model.safetensors" : command == "distill" ? "student.safetensors" : "";
}

// ---- flags to arguments ----

struct RawRun {
  std::string id, command, where;
  Json flags;  // substituted, defaults merged
  std::vector<std::string> after;
};

std::vector<std::string> flag_arguments(const RawRun& run, const Json& flags,
                                        const std::map<std::string, const RawRun*>& by_id,
                                        const std::string& dir, std::vector<std::string>& needs) {
  std::vector<std::string> args;
  auto path_of = [&](const Reference& r, const std::string& where) {
    auto it = by_id.find(r.run);
    if (it == by_id.end())
      throw InputError(where + ": '@" + r.run + "': no run has this id");
    const std::string file = r.file.empty() ? checkpoint_of(it->second->command) : r.file;
    if (file.empty())
      throw InputError(where + ": '@" + r.run + "': an eval run has no checkpoint (name a file: "
                       "@ID/FILE)");
    needs.push_back(r.run);
    return dir + "/runs/" + r.run + "/" + file;
  };
  for (auto it = flags.begin(); it != flags.end(); ++it) {
    const std::string& key = it.key();
    const std::string where = run.where + ".flags." + key;
    if (key == "out" || key == "resume")
      throw InputError(where + ": the study sets --" + key + " itself");
    if (!command_has_flag(run.command, key))
      throw InputError(where + ": 'kdlab " + run.command + "' has no flag --" + key +
                       " (see 'kdlab " + run.command + " --help')");
    const Json& v = it.value();
    if (v.is_boolean()) {
      if (v.get<bool>())
        args.push_back("--" + key);
      else if (command_has_flag(run.command, "no-" + key))
        args.push_back("--no-" + key);
      continue;
    }
    std::vector<Json> values;
    if (v.is_array())
      values.assign(v.begin(), v.end());
    else
      values.push_back(v);
    if (values.empty()) throw InputError(where + ": an empty list");
    for (const Json& one : values) {
      if (one.is_structured() || one.is_null() || one.is_boolean())
        throw InputError(where + ": expected a number, a string or a list of them, got " +
                         one.dump());
      const std::string text = value_text(one);
      std::vector<Reference> refs = parse_references(text, where);
      if (refs.empty()) {
        args.push_back("--" + key);
        args.push_back(text);
      }
      for (const Reference& r : refs) {
        args.push_back("--" + key);
        args.push_back(path_of(r, where));
      }
    }
  }
  return args;
}

Json merged(const Json& base, const Json& over) {
  Json out = base.is_object() ? base : Json::object();
  for (auto it = over.begin(); it != over.end(); ++it) out[it.key()] = it.value();
  return out;
}

Json parse_set_value(const std::string& text) {
  try {
    return Json::parse(text);
  } catch (const std::exception&) {
    return text;
  }
}

}  // namespace

const PlannedRun* Study::find(const std::string& id) const {
  for (const PlannedRun& r : runs)
    if (r.id == id) return &r;
  return nullptr;
}

Study plan_study(const Json& doc, const std::string& source, const std::string& scale,
                 const std::vector<std::string>& sets, const std::string& dir,
                 const std::vector<std::string>& run_flags) {
  Study st;
  st.source = source;
  st.doc = doc;
  st.dir = dir;
  check_keys(doc, {"kdlab_study", "name", "title", "paper", "question", "dataset",
                   "default_scale", "vars", "scales", "defaults", "runs", "table",
                   "paper_numbers", "paper_source", "findings", "plots", "slurm", "unsupported",
                   "notes"},
             source);
  if (!doc.contains("kdlab_study") || doc["kdlab_study"] != 1)
    throw InputError(source + ": kdlab_study: expected 1 (the file format's version)");
  auto text_field = [&](const char* key, bool required) {
    if (!doc.contains(key)) {
      if (required) throw InputError(source + ": " + key + ": missing");
      return std::string();
    }
    if (!doc[key].is_string() || doc[key].get<std::string>().empty())
      throw InputError(source + ": " + key + ": expected a non-empty string");
    return doc[key].get<std::string>();
  };
  st.name = text_field("name", true);
  st.title = text_field("title", true);
  st.paper = text_field("paper", false);
  st.question = text_field("question", false);
  static const std::regex name_re("[a-z0-9][a-z0-9-]*");
  if (!std::regex_match(st.name, name_re))
    throw InputError(source + ": name: '" + st.name + "': expected lower-case letters, digits, '-'");
  if (doc.contains("unsupported"))
    throw InputError(source + ": " + st.name + " cannot run: " +
                     doc["unsupported"].get<std::string>());

  // Variables: the file's, then the scale's, then --set.
  st.vars = doc.value("vars", Json::object());
  if (!st.vars.is_object()) throw InputError(source + ": vars: expected an object");
  for (auto it = st.vars.begin(); it != st.vars.end(); ++it)
    if (!is_variable_name(it.key()))
      throw InputError(source + ": vars." + it.key() + ": not a variable name");
  if (!doc.contains("scales") || !doc["scales"].is_object() || doc["scales"].empty())
    throw InputError(source + ": scales: expected an object with tiny, small and paper");
  st.scale = scale.empty() ? doc.value("default_scale", std::string("small")) : scale;
  if (!doc["scales"].contains(st.scale)) {
    std::string have;
    for (auto it = doc["scales"].begin(); it != doc["scales"].end(); ++it)
      have += (have.empty() ? "" : ", ") + it.key();
    throw InputError("--scale " + st.scale + ": " + source + " has the scales " + have);
  }
  for (auto it = doc["scales"].begin(); it != doc["scales"].end(); ++it) {
    const std::string w = source + ": scales." + it.key();
    check_keys(it.value(), {"note", "vars"}, w);
    const Json scale_vars = it.value().value("vars", Json::object());
    if (!scale_vars.is_object()) throw InputError(w + ".vars: expected an object");
    for (auto v = scale_vars.begin(); v != scale_vars.end(); ++v)
      if (!st.vars.contains(v.key()))
        throw InputError(w + ".vars." + v.key() + ": not one of the file's vars (declare it in "
                         "\"vars\" with its default)");
  }
  const Json& chosen = doc["scales"][st.scale];
  st.scale_note = chosen.value("note", std::string());
  st.vars = merged(st.vars, chosen.value("vars", Json::object()));
  for (const std::string& set : sets) {
    size_t eq = set.find('=');
    const std::string name = set.substr(0, eq);
    if (eq == std::string::npos || !is_variable_name(name))
      throw InputError("--set " + set + ": expected NAME=VALUE");
    if (!st.vars.contains(name)) {
      std::string have;
      for (auto it = st.vars.begin(); it != st.vars.end(); ++it)
        have += (have.empty() ? "" : ", ") + it.key();
      throw InputError("--set " + set + ": " + source + " has no variable '" + name +
                       "' (it has: " + have + ")");
    }
    st.vars[name] = parse_set_value(set.substr(eq + 1));
  }
  st.vars["scale"] = st.scale;
  // Variables may use earlier ones ("members": "${m_max}").
  st.vars = substitute(st.vars, st.vars, source + ": vars");

  const Json defaults = doc.value("defaults", Json::object());
  check_keys(defaults, {"train", "distill", "eval"}, source + ": defaults");
  st.slurm = doc.value("slurm", Json::object());
  check_keys(st.slurm, {"gpus", "cpus", "time", "mem", "partition"}, source + ": slurm");
  st.slurm = substitute(st.slurm, st.vars, source + ": slurm");

  // Runs, expanded.
  if (!doc.contains("runs") || !doc["runs"].is_array() || doc["runs"].empty())
    throw InputError(source + ": runs: expected a non-empty list");
  std::vector<RawRun> raw;
  for (size_t i = 0; i < doc["runs"].size(); ++i) {
    const Json& spec = doc["runs"][i];
    const std::string w = source + ": runs[" + std::to_string(i) + "]";
    check_keys(spec, {"id", "command", "for", "flags", "more_flags", "after"}, w);
    if (!spec.contains("id") || !spec["id"].is_string())
      throw InputError(w + ".id: expected a string");
    if (!spec.contains("command") || !spec["command"].is_string())
      throw InputError(w + ".command: expected train, distill or eval");
    const std::string command = spec["command"].get<std::string>();
    if (command != "train" && command != "distill" && command != "eval")
      throw InputError(w + ".command: '" + command + "': expected train, distill or eval");
    for (const Json& vars : expand_for(spec.value("for", Json()), st.vars, w + ".for")) {
      RawRun r;
      r.command = command;
      r.id = value_text(substitute(spec["id"], vars, w + ".id"));
      static const std::regex id_re("[A-Za-z0-9][A-Za-z0-9._-]*");
      if (!std::regex_match(r.id, id_re))
        throw InputError(w + ".id: '" + r.id + "': expected letters, digits, '.', '_', '-'");
      r.where = source + ": runs[" + std::to_string(i) + "] (" + r.id + ")";
      Json flags = merged(defaults.value(command, Json::object()), spec.value("flags", Json::object()));
      if (!flags.is_object()) throw InputError(r.where + ".flags: expected an object");
      r.flags = substitute(flags, vars, r.where + ".flags");
      // "more_flags": "${p.flags}": an object variable's flags, over the run's own.
      if (spec.contains("more_flags")) {
        Json more = substitute(spec["more_flags"], vars, r.where + ".more_flags");
        if (!more.is_object())
          throw InputError(r.where + ".more_flags: expected an object of flags, got " + more.dump());
        r.flags = merged(r.flags, more);
      }
      Json after = substitute(spec.value("after", Json::array()), vars, r.where + ".after");
      if (!after.is_array()) throw InputError(r.where + ".after: expected a list of run ids");
      for (const Json& a : after) {
        std::vector<Reference> refs = parse_references("@" + value_text(a), r.where + ".after");
        for (const Reference& ref : refs) r.after.push_back(ref.run);
      }
      raw.push_back(std::move(r));
    }
  }
  std::map<std::string, const RawRun*> by_id;
  for (const RawRun& r : raw)
    if (!by_id.emplace(r.id, &r).second)
      throw InputError(r.where + ".id: '" + r.id + "' is the id of an earlier run too");

  std::vector<PlannedRun> planned;
  for (const RawRun& r : raw) {
    PlannedRun p;
    p.id = r.id;
    p.command = r.command;
    std::vector<std::string> needs = r.after;
    p.args = flag_arguments(r, r.flags, by_id, dir, needs);
    for (const std::string& a : r.after)
      if (!by_id.count(a)) throw InputError(r.where + ".after: '" + a + "': no run has this id");
    std::vector<std::string> flags = run_flags;
    for (size_t k = 0; k < flags.size(); k += 2) {
      // A study-wide flag replaces the file's value, not adds a second one.
      auto pos = std::find(p.args.begin(), p.args.end(), flags[k]);
      if (pos != p.args.end() && pos + 1 != p.args.end() && flags[k + 1] != "")
        p.args.erase(pos, pos + 2);
      else if (pos != p.args.end())
        p.args.erase(pos);
    }
    for (size_t k = 0; k < flags.size(); k += 2) {
      p.args.push_back(flags[k]);
      if (!flags[k + 1].empty()) p.args.push_back(flags[k + 1]);
    }
    check_run_arguments(r.command, p.args, r.where + ".flags");
    std::sort(needs.begin(), needs.end());
    needs.erase(std::unique(needs.begin(), needs.end()), needs.end());
    if (std::find(needs.begin(), needs.end(), r.id) != needs.end())
      throw InputError(r.where + ": the run needs itself");
    p.after = needs;
    planned.push_back(std::move(p));
  }

  // Levels: repeated relaxation; more rounds than runs means a cycle.
  std::map<std::string, int> level;
  for (const PlannedRun& p : planned) level[p.id] = 0;
  for (size_t round = 0;; ++round) {
    bool changed = false;
    for (const PlannedRun& p : planned)
      for (const std::string& a : p.after)
        if (level[p.id] < level[a] + 1) level[p.id] = level[a] + 1, changed = true;
    if (!changed) break;
    if (round > planned.size()) {
      std::string cycle;
      for (const PlannedRun& p : planned)
        if (level[p.id] > int(planned.size())) cycle += (cycle.empty() ? "" : ", ") + p.id;
      throw InputError(source + ": runs: the dependencies form a cycle (through " + cycle + ")");
    }
  }
  for (PlannedRun& p : planned) p.level = level[p.id], st.levels = std::max(st.levels, p.level + 1);
  std::stable_sort(planned.begin(), planned.end(),
                   [](const PlannedRun& a, const PlannedRun& b) { return a.level < b.level; });
  st.runs = std::move(planned);
  return st;
}

}  // namespace apps
}  // namespace kd
