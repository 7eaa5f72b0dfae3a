// Study templates (see study_spec.h): ${...} substitution with arithmetic and member access,
// "for" expansion, key checking and the JSON reader.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>
#include <sstream>

#include "apps/study_spec.h"
#include "base/check.h"

namespace kd {
namespace apps {
namespace {

// ${...} arithmetic: numbers, variables holding numbers, + - * / and parentheses.
class Expression {
 public:
  Expression(const std::string& text, const Json& vars, const std::string& where)
      : s_(text), vars_(vars), where_(where) {}
  double evaluate() {
    double v = sum();
    skip_space();
    if (pos_ != s_.size()) fail("unexpected '" + s_.substr(pos_) + "'");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(where_ + ": ${" + s_ + "}: " + what);
  }
  void skip_space() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  double sum() {
    double v = product();
    for (;;) {
      skip_space();
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) {
        char op = s_[pos_++];
        double r = product();
        v = op == '+' ? v + r : v - r;
      } else {
        return v;
      }
    }
  }
  double product() {
    double v = atom();
    for (;;) {
      skip_space();
      if (pos_ < s_.size() && (s_[pos_] == '*' || s_[pos_] == '/')) {
        char op = s_[pos_++];
        double r = atom();
        if (op == '/' && r == 0) fail("division by zero");
        v = op == '*' ? v * r : v / r;
      } else {
        return v;
      }
    }
  }
  double atom() {
    skip_space();
    if (pos_ >= s_.size()) fail("expected a number or a variable at the end");
    char c = s_[pos_];
    if (c == '(') {
      ++pos_;
      double v = sum();
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != ')') fail("missing ')'");
      ++pos_;
      return v;
    }
    if (c == '-') {
      ++pos_;
      return -atom();
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      size_t used = 0;
      double v = std::stod(s_.substr(pos_), &used);
      pos_ += used;
      return v;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t start = pos_;
      while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) ||
                                  s_[pos_] == '_'))
        ++pos_;
      const std::string name = s_.substr(start, pos_ - start);
      if (!vars_.contains(name)) fail("unknown variable '" + name + "'");
      const Json& v = vars_.at(name);
      if (!v.is_number()) fail("variable '" + name + "' is " + v.dump() + ", not a number");
      return v.get<double>();
    }
    fail(std::string("unexpected '") + c + "'");
  }

  std::string s_;
  const Json& vars_;
  std::string where_;
  size_t pos_ = 0;
};

bool is_identifier_here(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

Json number_json(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15) return int64_t(v);
  return v;
}

Json evaluate_placeholder(const std::string& inner, const Json& vars, const std::string& where) {
  if (is_identifier_here(inner)) {
    if (!vars.contains(inner))
      throw InputError(where + ": ${" + inner + "}: unknown variable '" + inner + "'");
    return vars.at(inner);
  }
  // ${p.name}: a member of an object variable (e.g. one augmentation policy of a list).
  static const std::regex member_path(R"([A-Za-z_]\w*(\.[A-Za-z_]\w*)+)");
  if (std::regex_match(inner, member_path)) {
    std::stringstream parts(inner);
    std::string part, walked;
    const Json* node = &vars;
    while (std::getline(parts, part, '.')) {
      if (!node->is_object() || !node->contains(part))
        throw InputError(where + ": ${" + inner + "}: " +
                         (walked.empty() ? "unknown variable '" + part + "'"
                                         : walked + " has no member '" + part + "'"));
      node = &(*node)[part];
      walked += (walked.empty() ? "" : ".") + part;
    }
    return *node;
  }
  return number_json(Expression(inner, vars, where).evaluate());
}

Json substitute_string(const std::string& s, const Json& vars, const std::string& where) {
  // Exactly one placeholder: the value keeps its type (a list stays a list).
  if (s.size() > 3 && s.compare(0, 2, "${") == 0 && s.back() == '}' &&
      s.find("${", 2) == std::string::npos && s.find('}') == s.size() - 1)
    return evaluate_placeholder(s.substr(2, s.size() - 3), vars, where);
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t open = s.find("${", pos);
    if (open == std::string::npos) break;
    size_t close = s.find('}', open);
    if (close == std::string::npos) throw InputError(where + ": '" + s + "': '${' without '}'");
    out += s.substr(pos, open - pos);
    Json v = evaluate_placeholder(s.substr(open + 2, close - open - 2), vars, where);
    if (v.is_structured())
      throw InputError(where + ": '" + s + "': ${" + s.substr(open + 2, close - open - 2) +
                       "} is a list or object; it can only stand alone");
    out += value_text(v);
    pos = close + 1;
  }
  return out + s.substr(pos);
}

}  // namespace

bool is_variable_name(const std::string& s) { return is_identifier_here(s); }

std::string value_text(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) {
    double v = value.get<double>();
    if (v == std::floor(v) && std::fabs(v) < 9e15) return std::to_string(int64_t(v));
    std::ostringstream s;
    s.precision(15);
    s << v;
    return s.str();
  }
  return value.dump();
}

Json substitute(const Json& value, const Json& vars, const std::string& where) {
  if (value.is_string()) return substitute_string(value.get<std::string>(), vars, where);
  if (value.is_array()) {
    Json out = Json::array();
    for (size_t i = 0; i < value.size(); ++i)
      out.push_back(substitute(value[i], vars, where + "[" + std::to_string(i) + "]"));
    return out;
  }
  if (value.is_object()) {
    Json out = Json::object();
    for (auto it = value.begin(); it != value.end(); ++it)
      out[it.key()] = substitute(it.value(), vars, where + "." + it.key());
    return out;
  }
  return value;
}

std::vector<Json> expand_for(const Json& for_spec, const Json& vars, const std::string& where) {
  std::vector<Json> out = {vars};
  if (for_spec.is_null()) return out;
  if (!for_spec.is_object() || for_spec.empty())
    throw InputError(where + ": expected an object of variable: values");
  for (auto it = for_spec.begin(); it != for_spec.end(); ++it) {
    const std::string w = where + "." + it.key();
    if (!is_variable_name(it.key())) throw InputError(w + ": not a variable name");
    Json values = substitute(it.value(), vars, w);
    if (values.is_object()) {
      check_keys(values, {"range"}, w);
      if (!values.contains("range") || !values["range"].is_number_integer() ||
          values["range"].get<int64_t>() < 1 || values["range"].get<int64_t>() > 100000)
        throw InputError(w + ".range: expected an integer from 1 to 100000");
      Json list = Json::array();
      for (int64_t i = 0; i < values["range"].get<int64_t>(); ++i) list.push_back(i);
      values = list;
    }
    if (!values.is_array() || values.empty())
      throw InputError(w + ": expected a non-empty list, got " + values.dump());
    // Checked before the copies are made: two ranges of 100000 asked for 10^10 variable sets
    // (out of memory), and one planned 100000 runs, each parsed by the CLI (minutes).
    constexpr size_t kMaxCombinations = 10000;
    if (out.size() * values.size() > kMaxCombinations)
      throw InputError(where + ": more than " + std::to_string(kMaxCombinations) +
                       " combinations (" + std::to_string(out.size()) + " x " +
                       std::to_string(values.size()) + " at " + it.key() + ")");
    std::vector<Json> next;
    for (const Json& base : out)
      for (const Json& v : values) {
        Json extended = base;
        extended[it.key()] = v;
        next.push_back(extended);
      }
    out = std::move(next);
  }
  return out;
}

void check_keys(const Json& object, const std::vector<std::string>& allowed,
                const std::string& where) {
  if (!object.is_object()) throw InputError(where + ": expected an object, got " + object.dump());
  for (auto it = object.begin(); it != object.end(); ++it)
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
      std::string list;
      for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw InputError(where + "." + it.key() + ": unknown key (expected one of: " + list + ")");
    }
}

Json parse_study_text(const std::string& text, const std::string& source) {
  // Deeper nesting than any study needs is refused while parsing, before a deep value can
  // exhaust the stack of the code that walks it.
  constexpr int kMaxDepth = 64;
  auto bounded = [&](int depth, Json::parse_event_t, Json&) {
    if (depth > kMaxDepth)
      throw InputError(source + ": nests deeper than " + std::to_string(kMaxDepth) + " levels");
    return true;
  };
  try {
    return Json::parse(text, bounded, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const Json::exception& e) {
    // Syntax errors, and numbers out of range (out_of_range.406, "number overflow parsing
    // '2E2010...'"): "[json.exception.parse_error.101] parse error at ..." -> the part after "]".
    std::string what = e.what();
    size_t close = what.find("] ");
    throw InputError(source + ": not valid JSON: " +
                     (close == std::string::npos ? what : what.substr(close + 2)));
  }
}

}  // namespace apps
}  // namespace kd
