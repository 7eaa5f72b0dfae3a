// Study findings (see study_findings.h).
#include "apps/study_findings.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "base/check.h"

namespace kd {
namespace apps {
namespace {



Item single(const Json& spec, const Json& vars, Values& values, const std::string& where,
            bool check_only) {
  std::string ref, label;
  Json mean_over;
  if (spec.is_object()) {
    check_keys(spec, {"value", "label", "mean_over"}, where);
    ref = text_of(spec, "value", where);
    label = spec.contains("label") ? value_text(substitute(spec["label"], vars, where)) : ref;
    mean_over = spec.value("mean_over", Json());
  } else if (spec.is_string()) {
    ref = spec.get<std::string>();
    label = value_text(substitute(spec, vars, where));
  } else {
    throw InputError(where + ": expected \"@RUN:key\" or {\"value\": ..., \"label\": ...}");
  }
  Item item = measure(values, ref, "", vars, mean_over, where, check_only);
  item.label = label;
  return item;
}

std::vector<Item> series(const Json& spec, const Json& vars, Values& values,
                         const std::string& where, bool check_only) {
  check_keys(spec, {"for", "value", "label", "mean_over"}, where);
  std::vector<Item> out;
  for (const Json& v : expand_for(spec.value("for", Json()), vars, where + ".for")) {
    Item item = measure(values, text_of(spec, "value", where), "", v,
                        spec.value("mean_over", Json()), where, check_only);
    item.label = spec.contains("label") ? value_text(substitute(spec["label"], v, where)) : "";
    out.push_back(item);
  }
  return out;
}

Finding evaluate_finding(const Study& st, const Json& spec, Values& values,
                         const std::string& w, bool check_only) {
  check_keys(spec, {"claim", "check", "what", "format", "value", "threshold", "a", "b",
                    "tolerance", "margin", "series", "against", "against_what", "expect"},
             w);
  Finding f;
  f.claim = text_of(spec, "claim", w);
  const std::string check = text_of(spec, "check", w);
  const std::string what = spec.value("what", std::string("value"));
  check_format(spec, w);
  const std::string format = spec.value("format", std::string("fixed4"));
  auto fmt = [&](double v) { return format_value(v, format); };
  auto need = [&](const char* key) -> const Json& {
    if (!spec.contains(key)) throw InputError(w + "." + key + ": missing (check '" + check + "')");
    return spec[key];
  };
  auto number = [&](const char* key) {
    const Json& v = need(key);
    if (!v.is_number()) throw InputError(w + "." + key + ": expected a number");
    return v.get<double>();
  };
  std::vector<Item> items;
  bool ok = false;
  std::ostringstream ev;
  auto describe = [&](const Item& i) { return (i.label.empty() ? "" : i.label + " ") + fmt(*i.value); };
  if (check == "above" || check == "below") {
    Item v = single(need("value"), st.vars, values, w + ".value", check_only);
    double t = number("threshold");
    items = {v};
    if (!check_only && v.value) {
      ok = check == "above" ? *v.value > t : *v.value < t;
      ev << what << " " << describe(v) << " (" << (check == "above" ? "above " : "below ")
         << fmt(t) << " needed)";
    }
  } else if (check == "greater" || check == "less" || check == "close") {
    Item a = single(need("a"), st.vars, values, w + ".a", check_only);
    Item b = single(need("b"), st.vars, values, w + ".b", check_only);
    double margin = spec.value("margin", 0.0);
    double tolerance = check == "close" ? number("tolerance") : 0.0;
    items = {a, b};
    if (!check_only && a.value && b.value) {
      double d = *a.value - *b.value;
      ok = check == "greater" ? d > margin : check == "less" ? d < -margin : std::fabs(d) <= tolerance;
      ev << what << ": " << describe(a) << " against " << describe(b);
      if (check == "close") ev << " (a difference of " << fmt(std::fabs(d)) << "; within "
                               << fmt(tolerance) << " needed)";
      else if (margin > 0) ev << " (by more than " << fmt(margin) << " needed)";
    }
  } else if (check == "rises" || check == "falls" || check == "best" || check == "lowest" ||
             check == "best_matches_lowest") {
    items = series(need("series"), st.vars, values, w + ".series", check_only);
    std::vector<Item> against;
    if (check == "best_matches_lowest")
      against = series(need("against"), st.vars, values, w + ".against", check_only);
    if ((check == "best" || check == "lowest") && !need("expect").is_string())
      throw InputError(w + ".expect: expected the label of the series point that should win");
    if (items.size() < 2) throw InputError(w + ".series: needs at least two points");
    items.insert(items.end(), against.begin(), against.end());
    if (!check_only && std::all_of(items.begin(), items.end(), [](const Item& i) { return bool(i.value); })) {
      std::vector<Item> s(items.begin(), items.end() - against.size());
      auto arg = [](const std::vector<Item>& v, bool max) {
        size_t k = 0;
        for (size_t i = 1; i < v.size(); ++i)
          if (max ? *v[i].value > *v[k].value : *v[i].value < *v[k].value) k = i;
        return k;
      };
      ev << what << " ";
      for (size_t i = 0; i < s.size(); ++i)
        ev << (i ? (check == "rises" || check == "falls" ? " -> " : ", ") : "") << fmt(*s[i].value)
           << (s[i].label.empty() ? "" : " (" + s[i].label + ")");
      if (check == "rises") ok = *s.back().value > *s.front().value;
      if (check == "falls") ok = *s.back().value < *s.front().value;
      if (check == "best" || check == "lowest") {
        const Item& win = s[arg(s, check == "best")];
        ok = win.label == spec["expect"].get<std::string>();
        ev << "; " << (check == "best" ? "highest" : "lowest") << ": " << win.label;
      }
      if (check == "best_matches_lowest") {
        const Item& win = s[arg(s, true)];
        const Item& low = against[arg(against, false)];
        ok = win.label == low.label;
        ev << "; highest: " << win.label << "; lowest "
           << spec.value("against_what", std::string("of the second measure")) << ": " << low.label;
      }
    }
  } else {
    throw InputError(w + ".check: '" + check + "': expected above, below, greater, less, close, "
                     "rises, falls, best, lowest or best_matches_lowest");
  }
  if (check_only) return f;
  for (const Item& i : items)
    if (!i.value) {
      f.verdict = "not measured";
      f.evidence = i.missing;
      return f;
    }
  f.verdict = ok ? "agrees" : "does not agree";
  f.evidence = ev.str();
  return f;
}

}  // namespace

std::vector<Finding> build_findings(const Study& st, Values& values, bool check_only) {
  std::vector<Finding> out;
  const Json& specs = st.doc.value("findings", Json::array());
  if (!specs.is_array()) throw InputError(st.source + ": findings: expected a list");
  for (size_t i = 0; i < specs.size(); ++i)
    out.push_back(evaluate_finding(st, specs[i], values,
                                   st.source + ": findings[" + std::to_string(i) + "]", check_only));
  return out;
}

}  // namespace apps
}  // namespace kd
