// What a study's report reads: values from the runs' summary.json files by reference
// ("@RUN:key.key", or a key of a row's run), optionally averaged over trials, and how they are
// formatted. Shared by the table, the findings and the plots (apps/study_report.h).
#pragma once
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include "apps/study_spec.h"
#include "base/check.h"

namespace kd {
namespace apps {

// One measured value and what to call it in a sentence.
struct Item {
  std::string label;
  std::optional<double> value;  // the mean, when averaged over trials
  std::string missing;          // why there is no value
  double sd = 0;                // sample standard deviation over the trials
  int n = 1;                    // trials averaged
};

class Values {
 public:
  explicit Values(const Study& st) : st_(st) {}

  // "@RUN:a.b.c", or "a.b.c" of `row_run`. With check_only, only the syntax and the run are
  // checked (no run need have finished).
  Item lookup(const std::string& ref, const std::string& row_run, const std::string& where,
              bool check_only) {
    std::string run = row_run, path = ref;
    if (!ref.empty() && ref[0] == '@') {
      size_t colon = ref.find(':');
      if (colon == std::string::npos)
        throw InputError(where + ": '" + ref + "': expected @RUN:key.key");
      run = ref.substr(1, colon - 1);
      path = ref.substr(colon + 1);
    }
    if (run.empty())
      throw InputError(where + ": '" + ref + "': name the run (@RUN:key) or give the row a run");
    if (st_.find(run) == nullptr)
      throw InputError(where + ": '" + ref + "': no run has the id '" + run + "'");
    if (path.empty()) throw InputError(where + ": '" + ref + "': no key after the run");
    Item item;
    if (check_only) return item;
    const Json* node = summary(run);
    if (node == nullptr) {
      item.missing = "run " + run + " has not finished";
      return item;
    }
    std::stringstream keys(path);
    std::string key;
    while (std::getline(keys, key, '.')) {
      if (node->is_array() && !key.empty() &&
          key.find_first_not_of("0123456789") == std::string::npos &&
          std::stoul(key) < node->size()) {
        node = &(*node)[std::stoul(key)];  // "cka.0.per_stage.2"
        continue;
      }
      if (!node->is_object() || !node->contains(key)) {
        item.missing = "runs/" + run + "/summary.json has no " + path;
        return item;
      }
      node = &(*node)[key];
    }
    if (node->is_number()) item.value = node->get<double>();
    else item.missing = "runs/" + run + "/summary.json: " + path + " is not a number";
    return item;
  }

  bool finished(const std::string& run) { return summary(run) != nullptr; }

 private:
  const Json* summary(const std::string& run) {
    auto it = cache_.find(run);
    if (it == cache_.end()) {
      std::optional<Json> j;
      const std::string path = st_.dir + "/runs/" + run + "/summary.json";
      std::ifstream in(path);
      if (in) {
        try {
          j = Json::parse(in);
        } catch (const std::exception& e) {
          throw InputError(path + ": not JSON: " + e.what());
        }
        // The study's timing.json, as "timing.seconds".
        std::ifstream timing(st_.dir + "/runs/" + run + "/timing.json");
        if (timing) {
          try {
            (*j)["timing"] = Json::parse(timing);
          } catch (const std::exception&) {
          }
        }
      }
      it = cache_.emplace(run, j).first;
    }
    return it->second ? &*it->second : nullptr;
  }
  const Study& st_;
  std::map<std::string, std::optional<Json>> cache_;
};

// `ref` (and the row's `run`) under `vars`, or their mean over the "mean_over" combinations
// (trials: {"trial": "${trials}"}), with the standard deviation.
Item measure(Values& values, const std::string& ref, const std::string& run, const Json& vars,
             const Json& mean_over, const std::string& where, bool check_only);
// percent | int | fixed1..fixed4
std::string format_value(double v, const std::string& format);
void check_format(const Json& spec, const std::string& where);  // its "format" key
std::string text_of(const Json& spec, const char* key, const std::string& where);  // a string key
// A paper number as written: numbers in a percent column are percentages.
std::string paper_text(const Json& v, const std::string& format);

}  // namespace apps
}  // namespace kd
