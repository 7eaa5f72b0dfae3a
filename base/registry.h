// A named set of choices: the datasets, models, distillation losses and presets kdlab knows. Each
// entry carries the help text the CLI shows, so `--help` and the "unknown X (known: ...)" errors
// are generated from the same list that does the work; nothing is listed twice by hand. It sits
// beside check.h, below every layer, because data, models, engine and apps all keep one.
//
// An entry is any struct deriving from RegistryEntry. A plain entry matches its name; an entry
// for a family of names ("preresnet<depth>") sets `matches`.
#pragma once
#include <algorithm>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "base/check.h"

namespace kd {

struct RegistryEntry {
  std::string name;  // the name a user types, or the family's pattern ("preresnet<depth>")
  std::string help;  // one line
  std::function<bool(const std::string&)> matches;  // empty: exactly `name`

  bool accepts(const std::string& candidate) const {
    return matches ? matches(candidate) : candidate == name;
  }
};

template <class Entry>
class Registry {
 public:
  // `what` names the kind of choice in errors ("model", "dataset").
  Registry(std::string what, std::vector<Entry> entries)
      : what_(std::move(what)), entries_(std::move(entries)) {
    std::set<std::string> seen;
    for (const Entry& e : entries_)
      KD_CHECK(seen.insert(e.name).second, what_ << " registry: '" << e.name << "' twice");
  }

  // The first entry that accepts `name`; otherwise an InputError listing the known names,
  // prefixed by `flag` (the CLI flag that took the name) when one is given.
  const Entry& find(const std::string& name, const std::string& flag = "") const {
    for (const Entry& e : entries_)
      if (e.accepts(name)) return e;
    throw InputError((flag.empty() ? "" : flag + ": ") + "unknown " + what_ + " '" + name +
                     "' (known: " + choices(", ") + ")");
  }
  bool contains(const std::string& name) const {
    for (const Entry& e : entries_)
      if (e.accepts(name)) return true;
    return false;
  }

  const std::vector<Entry>& entries() const { return entries_; }

  std::string choices(const std::string& separator = " | ") const {
    std::string out;
    for (const Entry& e : entries_) out += (out.empty() ? "" : separator) + e.name;
    return out;
  }

  // One "  name  help" line per entry, names padded to one column: for a flag's description.
  std::string help() const {
    size_t width = 0;
    for (const Entry& e : entries_) width = std::max(width, e.name.size());
    std::string out;
    for (const Entry& e : entries_)
      out += "\n  " + e.name + std::string(width - e.name.size() + 2, ' ') + e.help;
    return out;
  }

 private:
  std::string what_;
  std::vector<Entry> entries_;
};

}  // namespace kd
