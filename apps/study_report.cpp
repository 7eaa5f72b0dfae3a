// Study reports (see study_report.h).
#include "apps/study_report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "apps/report.h"
#include "apps/study_findings.h"
#include "apps/study_values.h"
#include "apps/run_dir.h"
#include "base/check.h"
#include "engine/atomic_file.h"

namespace fs = std::filesystem;

namespace kd {
namespace apps {
namespace {

// ---- the table ----

struct Column {
  std::string name, value, format;
  bool has_paper = false;
};

struct TableResult {
  Table table;
  Json rows = Json::array();
};

TableResult build_table(const Study& st, Values& values, bool check_only) {
  const std::string w = st.source + ": table";
  TableResult out;
  if (!st.doc.contains("table")) return out;
  const Json& spec = st.doc["table"];
  check_keys(spec, {"label", "columns", "rows"}, w);
  std::vector<Column> columns;
  const Json& cols = spec.value("columns", Json::array());
  if (!cols.is_array() || cols.empty()) throw InputError(w + ".columns: expected a non-empty list");
  for (size_t i = 0; i < cols.size(); ++i) {
    const std::string cw = w + ".columns[" + std::to_string(i) + "]";
    check_keys(cols[i], {"name", "value", "format"}, cw);
    check_format(cols[i], cw);
    columns.push_back({text_of(cols[i], "name", cw), text_of(cols[i], "value", cw),
                       cols[i].value("format", std::string("fixed4"))});
  }
  if (st.doc.contains("paper_numbers") && !st.doc["paper_numbers"].is_object())
    throw InputError(st.source + ": paper_numbers: expected {\"row label\": {\"column\": value}}");
  // Rows.
  struct Row {
    std::string label, run;  // run: a template when the row averages over trials
    Json vars, mean_over;
  };
  std::vector<Row> rows;
  const Json& row_specs = spec.value("rows", Json::array());
  if (!row_specs.is_array() || row_specs.empty())
    throw InputError(w + ".rows: expected a non-empty list");
  for (size_t i = 0; i < row_specs.size(); ++i) {
    const std::string rw = w + ".rows[" + std::to_string(i) + "]";
    check_keys(row_specs[i], {"label", "run", "for", "mean_over"}, rw);
    for (const Json& vars : expand_for(row_specs[i].value("for", Json()), st.vars, rw + ".for")) {
      Row r;
      r.label = value_text(substitute(Json(text_of(row_specs[i], "label", rw)), vars, rw + ".label"));
      r.mean_over = row_specs[i].value("mean_over", Json());
      if (row_specs[i].contains("run")) {
        if (!row_specs[i]["run"].is_string()) throw InputError(rw + ".run: expected a run id");
        r.run = row_specs[i]["run"].get<std::string>();
        for (const Json& v : r.mean_over.is_null() ? std::vector<Json>{vars}
                                                   : expand_for(r.mean_over, vars, rw + ".mean_over")) {
          const std::string id = value_text(substitute(Json(r.run), v, rw + ".run"));
          if (st.find(id) == nullptr)
            throw InputError(rw + ".run: '" + id + "': no run has this id");
        }
      }
      r.vars = vars;
      rows.push_back(r);
    }
  }
  for (Column& c : columns)
    for (const Row& r : rows)
      c.has_paper = c.has_paper || (st.doc.contains("paper_numbers") &&
                                    st.doc["paper_numbers"].contains(r.label) &&
                                    st.doc["paper_numbers"][r.label].contains(c.name));
  out.table.header = {spec.value("label", std::string("setting"))};
  for (const Column& c : columns) {
    out.table.header.push_back(c.name);
    if (c.has_paper) out.table.header.push_back("paper");
  }
  for (const Row& r : rows) {
    std::vector<std::string> cells = {r.label};
    Json row = {{"setting", r.label}, {"run", r.run}, {"values", Json::object()},
                {"paper", Json::object()}};
    if (!r.mean_over.is_null()) row["mean_over"] = substitute(r.mean_over, r.vars, w);
    const Json no_paper = Json::object();
    const Json& p = st.doc.contains("paper_numbers") && st.doc["paper_numbers"].contains(r.label)
                        ? st.doc["paper_numbers"][r.label]
                        : no_paper;
    for (const Column& c : columns) {
      const std::string cw = w + ".columns(" + c.name + ") for row " + r.label;
      Item item = measure(values, c.value, r.run, r.vars, r.mean_over, cw, check_only);
      cells.push_back(!item.value ? "-"
                      : item.n > 1 ? format_value(*item.value, c.format) + " ± " +
                                         format_value(item.sd, c.format)
                                   : format_value(*item.value, c.format));
      row["values"][c.name] = item.value ? Json(*item.value) : Json();
      if (item.n > 1) row["sd"][c.name] = item.sd;
      if (c.has_paper) {
        cells.push_back(p.contains(c.name) ? paper_text(p[c.name], c.format) : "");
        if (p.contains(c.name)) row["paper"][c.name] = p[c.name];
      }
    }
    out.table.rows.push_back(cells);
    out.rows.push_back(row);
  }
  return out;
}

// ---- plots ----

std::map<std::string, std::vector<PlotSpec>> build_plots(const Study& st, Values& values,
                                                         bool check_only) {
  std::map<std::string, std::vector<PlotSpec>> files;
  const Json& specs = st.doc.value("plots", Json::array());
  if (!specs.is_array()) throw InputError(st.source + ": plots: expected a list");
  for (size_t i = 0; i < specs.size(); ++i) {
    const Json& p = specs[i];
    const std::string w = st.source + ": plots[" + std::to_string(i) + "]";
    check_keys(p, {"file", "title", "x_label", "y_label", "log_x", "integer_x", "series",
                   "reference"},
               w);
    PlotSpec panel;
    panel.title = value_text(substitute(Json(text_of(p, "title", w)), st.vars, w + ".title"));
    panel.xlabel = text_of(p, "x_label", w);
    panel.ylabel = text_of(p, "y_label", w);
    panel.log_x = p.value("log_x", false);
    panel.integer_x = p.value("integer_x", false);
    const std::string file = p.value("file", std::string("plot.png"));
    if (file.find('/') != std::string::npos || file.size() < 5 ||
        file.substr(file.size() - 4) != ".png")
      throw InputError(w + ".file: '" + file + "': expected a NAME.png in the study directory");
    const Json& ss = p.value("series", Json::array());
    if (!ss.is_array() || ss.empty()) throw InputError(w + ".series: expected a non-empty list");
    std::vector<std::string> categories;
    for (size_t k = 0; k < ss.size(); ++k) {
      const std::string sw = w + ".series[" + std::to_string(k) + "]";
      check_keys(ss[k], {"name", "each", "for", "x", "y", "scale", "mean_over"}, sw);
      // "each": one series per combination (one line per ensemble size), named from it.
      for (const Json& each : expand_for(ss[k].value("each", Json()), st.vars, sw + ".each")) {
      Series s;
      s.name = value_text(substitute(Json(text_of(ss[k], "name", sw)), each, sw + ".name"));
      double scale = ss[k].value("scale", 1.0);
      if (!ss[k].contains("x")) throw InputError(sw + ".x: missing");
      for (const Json& v : expand_for(ss[k].value("for", Json()), each, sw + ".for")) {
        Json x = substitute(ss[k]["x"], v, sw + ".x");
        Item y = measure(values, text_of(ss[k], "y", sw), "", v, ss[k].value("mean_over", Json()),
                         sw + ".y", check_only);
        if (x.is_number()) {
          s.x.push_back(x.get<double>());
        } else {
          // A named setting (an augmentation policy): one tick per name, in order of appearance.
          const std::string name = value_text(x);
          auto it = std::find(categories.begin(), categories.end(), name);
          if (it == categories.end()) it = categories.insert(categories.end(), name);
          s.x.push_back(double(it - categories.begin()));
        }
        s.y.push_back(y.value ? *y.value * scale : NAN);
      }
      panel.series.push_back(s);
      }
    }
    panel.x_labels = categories;
    const Json& refs = p.value("reference", Json::array());
    for (size_t k = 0; k < refs.size(); ++k) {
      const std::string rw = w + ".reference[" + std::to_string(k) + "]";
      check_keys(refs[k], {"name", "y", "scale"}, rw);
      Item y = values.lookup(value_text(substitute(Json(text_of(refs[k], "y", rw)), st.vars, rw)),
                             "", rw + ".y", check_only);
      Series s;
      s.name = text_of(refs[k], "name", rw);
      s.reference = true;
      double lo = INFINITY, hi = -INFINITY;
      for (const Series& other : panel.series)
        for (double x : other.x) lo = std::min(lo, x), hi = std::max(hi, x);
      if (y.value && lo <= hi) {
        double v = *y.value * refs[k].value("scale", 1.0);
        s.x = {lo, hi};
        s.y = {v, v};
      }
      panel.series.push_back(s);
    }
    files[file].push_back(panel);
  }
  return files;
}

}  // namespace

void check_report_spec(const Study& st) {
  Values values(st);
  build_table(st, values, true);
  build_findings(st, values, true);
  build_plots(st, values, true);
}

std::string write_study_report(const Study& st) {
  Values values(st);
  TableResult table = build_table(st, values, false);
  std::vector<Finding> findings = build_findings(st, values, false);
  size_t done = 0;
  for (const PlannedRun& r : st.runs) done += values.finished(r.id);

  std::ostringstream md;
  md << "# " << st.title << "\n\n"
     << "Study `" << st.name << "` at scale **" << st.scale << "**"
     << (st.scale_note.empty() ? "" : " (" + st.scale_note + ")") << ". "
     << (st.paper.empty() ? "" : "Paper: " + st.paper + ". ")
     << (st.question.empty() ? "" : "Question: " + st.question) << "\n\n"
     << done << " of " << st.runs.size() << " runs finished"
     << (done < st.runs.size() ? " (the rest show as -; this report is partial)" : "")
     << ". Every number below was measured by these runs and read from their summary.json; "
        "report written " << utc_timestamp() << " at revision " << git_revision() << ".\n\n";
  if (!table.table.rows.empty()) {
    md << "## Results\n\n" << table.table.to_markdown() << "\n";
    if (st.doc.contains("paper_source"))
      md << "Paper columns: " << st.doc["paper_source"].get<std::string>() << "\n\n";
  }
  Json findings_json = Json::array();
  if (!findings.empty()) {
    md << "## Findings\n\n";
    if (st.scale != "paper")
      md << "Checked on this scale's numbers; the paper's findings are about its own (paper) "
            "scale.\n\n";
    for (const Finding& f : findings) {
      std::string verdict = f.verdict;
      verdict[0] = char(std::toupper(static_cast<unsigned char>(verdict[0])));
      md << "- **" << verdict << ".** " << f.claim << " Ours: " << f.evidence << ".\n";
      findings_json.push_back({{"claim", f.claim}, {"verdict", f.verdict}, {"evidence", f.evidence}});
    }
    md << "\n";
  }
  auto plots = build_plots(st, values, false);
  if (!plots.empty()) md << "## Plots\n\n";
  for (const auto& [file, panels] : plots) {
    try {
      plot_png(st.dir + "/" + file, panels, 80 + 520 * int(panels.size()), 450);
      md << "![" << file << "](" << file << ")\n\n";
    } catch (const Error& e) {
      md << "(" << file << " not drawn: " << e.what() << ")\n\n";
    }
  }
  if (st.doc.contains("notes")) md << "## Notes\n\n" << st.doc["notes"].get<std::string>() << "\n\n";
  md << "## Runs\n\nEach run's directory is `runs/ID` (its config.json has the exact command); "
        "its output is in `logs/ID.log`.\n\n";
  Table runs;
  runs.header = {"run", "command", "after", "seconds"};
  for (const PlannedRun& r : st.runs) {
    Item s = values.lookup("timing.seconds", r.id, "runs", false);
    std::string after;
    for (const std::string& a : r.after) after += (after.empty() ? "" : " ") + a;
    runs.rows.push_back({r.id, r.command, after, s.value ? format_fixed(*s.value, 1) : "-"});
  }
  md << runs.to_markdown() << "\n";
  write_file_atomic(st.dir + "/report.md", md.str());
  write_file_atomic(st.dir + "/summary.json",
                    Json{{"study", st.name}, {"title", st.title}, {"paper", st.paper},
                         {"scale", st.scale}, {"runs", st.runs.size()}, {"runs_finished", done},
                         {"table", {{"header", table.table.header}, {"rows", table.rows}}},
                         {"findings", findings_json}}
                            .dump(2) + "\n");
  std::ostringstream text;
  if (!table.table.rows.empty()) text << table.table.to_text();
  for (const Finding& f : findings) text << "- " << f.verdict << ": " << f.claim << " Ours: " << f.evidence << ".\n";
  return text.str();
}

}  // namespace apps
}  // namespace kd
