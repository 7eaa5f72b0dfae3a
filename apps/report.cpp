// Table formatting and number formatting (see report.h); plots are in plot.cpp.
#include "apps/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "base/check.h"

namespace kd {
namespace apps {
namespace {

// "0.93", "-1e-3", "12.5%", "nan": cells that read as numbers line up on the right.
bool looks_numeric(const std::string& cell) {
  if (cell.empty()) return false;
  std::string s = cell;
  if (s.back() == '%') s.pop_back();
  if (s == "nan" || s == "inf" || s == "-inf" || s == "-") return !s.empty();
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

// Display width in characters: UTF-8 continuation bytes take no column (for "±", "λ", "τ").
size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

struct Layout {
  size_t columns = 0;
  std::vector<size_t> widths;
  std::vector<bool> right_aligned;
};

Layout layout_of(const Table& t) {
  Layout l;
  l.columns = t.header.size();
  for (const auto& row : t.rows) {
    KD_CHECK(row.size() <= l.columns || l.columns == 0,
             "table row has " << row.size() << " cells for " << l.columns << " columns");
    l.columns = std::max(l.columns, row.size());
  }
  l.widths.assign(l.columns, 0);
  l.right_aligned.assign(l.columns, true);
  std::vector<bool> any_value(l.columns, false);
  for (size_t c = 0; c < t.header.size(); ++c) l.widths[c] = display_width(t.header[c]);
  for (const auto& row : t.rows)
    for (size_t c = 0; c < row.size(); ++c) {
      l.widths[c] = std::max(l.widths[c], display_width(row[c]));
      if (!row[c].empty()) {
        any_value[c] = true;
        if (!looks_numeric(row[c])) l.right_aligned[c] = false;
      }
    }
  for (size_t c = 0; c < l.columns; ++c)
    if (!any_value[c]) l.right_aligned[c] = false;
  return l;
}

const std::string& cell_at(const std::vector<std::string>& row, size_t c) {
  static const std::string empty;
  return c < row.size() ? row[c] : empty;
}

std::string pad(const std::string& s, size_t width, bool right) {
  size_t w = display_width(s);
  std::string fill = w < width ? std::string(width - w, ' ') : std::string();
  return right ? fill + s : s + fill;
}

std::string text_row(const std::vector<std::string>& row, const Layout& l) {
  std::string line;
  for (size_t c = 0; c < l.columns; ++c) {
    if (c) line += "  ";
    line += pad(cell_at(row, c), l.widths[c], l.right_aligned[c]);
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line + "\n";
}

std::string markdown_cell(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '|')
      out += "\\|";
    else if (ch == '\n')
      out += ' ';
    else
      out += ch;
  }
  return out;
}

}  // namespace

std::string Table::to_text() const {
  Layout l = layout_of(*this);
  std::string out;
  if (!header.empty()) {
    out += text_row(header, l);
    std::vector<std::string> rule;
    for (size_t w : l.widths) rule.push_back(std::string(w, '-'));
    out += text_row(rule, l);
  }
  for (const auto& row : rows) out += text_row(row, l);
  return out;
}

std::string Table::to_markdown() const {
  Layout l = layout_of(*this);
  auto md_row = [&](const std::vector<std::string>& row) {
    std::string line = "|";
    for (size_t c = 0; c < l.columns; ++c) line += " " + markdown_cell(cell_at(row, c)) + " |";
    return line + "\n";
  };
  std::string out = md_row(header);
  out += "|";
  for (size_t c = 0; c < l.columns; ++c) out += l.right_aligned[c] ? " ---: |" : " --- |";
  out += "\n";
  for (const auto& row : rows) out += md_row(row);
  return out;
}

std::string format_fixed(double v, int digits) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", std::clamp(digits, 0, 17), v);
  std::string s = buf;
  // "-0.000" reads as a sign that is not there.
  if (s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);
  return s;
}

std::string format_percent(double fraction, int digits) {
  if (!std::isfinite(fraction)) return format_fixed(fraction, digits);
  return format_fixed(100.0 * fraction, digits) + "%";
}

}  // namespace apps
}  // namespace kd
