// Study values (see study_values.h).
#include "apps/study_values.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "apps/report.h"
#include "base/check.h"

namespace kd {
namespace apps {

// `ref` (and the row's `run`) under `vars`, or their mean over the "mean_over" combinations
// (trials: {"trial": "${trials}"}), with the standard deviation.
Item measure(Values& values, const std::string& ref, const std::string& run, const Json& vars,
             const Json& mean_over, const std::string& where, bool check_only) {
  std::vector<Json> sets = mean_over.is_null() ? std::vector<Json>{vars}
                                               : expand_for(mean_over, vars, where + ".mean_over");
  std::vector<double> xs;
  Item out;
  for (const Json& v : sets) {
    const std::string r = run.empty() ? "" : value_text(substitute(Json(run), v, where));
    Item one = values.lookup(value_text(substitute(Json(ref), v, where)), r, where, check_only);
    if (!one.value) {
      if (out.missing.empty()) out.missing = one.missing;
      continue;
    }
    xs.push_back(*one.value);
  }
  if (check_only || xs.size() != sets.size() || xs.empty()) return out;
  double mean = 0, ss = 0;
  for (double x : xs) mean += x / double(xs.size());
  for (double x : xs) ss += (x - mean) * (x - mean);
  out.value = mean;
  out.n = int(xs.size());
  out.sd = xs.size() > 1 ? std::sqrt(ss / double(xs.size() - 1)) : 0.0;
  out.missing.clear();
  return out;
}

std::string format_value(double v, const std::string& format) {
  if (format == "percent") return format_percent(v, 2);
  if (format == "int") return std::to_string(int64_t(std::llround(v)));
  if (format == "fixed1") return format_fixed(v, 1);
  if (format == "fixed2") return format_fixed(v, 2);
  if (format == "fixed3") return format_fixed(v, 3);
  return format_fixed(v, 4);
}

void check_format(const Json& spec, const std::string& where) {
  const std::string f = spec.value("format", std::string("fixed4"));
  static const char* known[] = {"percent", "int", "fixed1", "fixed2", "fixed3", "fixed4"};
  if (std::find(std::begin(known), std::end(known), f) == std::end(known))
    throw InputError(where + ".format: '" + f +
                     "': expected percent, int, fixed1, fixed2, fixed3 or fixed4");
}

std::string text_of(const Json& spec, const char* key, const std::string& where) {
  if (!spec.contains(key) || !spec[key].is_string())
    throw InputError(where + "." + key + ": expected a string");
  return spec[key].get<std::string>();
}

// A paper number as written: numbers in a percent column are percentages.
std::string paper_text(const Json& v, const std::string& format) {
  if (v.is_string()) return v.get<std::string>();
  return value_text(v) + (format == "percent" ? "%" : "");
}

}  // namespace apps
}  // namespace kd
