// plot_png (declared in report.h): writes a gnuplot script with the data inline, runs gnuplot on
// it, and renames the finished PNG into place. gnuplot runs on a script file rather than a stdin
// pipe so a gnuplot that dies early cannot SIGPIPE this process, and its messages are captured.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/report.h"
#include "apps/run_dir.h"
#include "base/check.h"

namespace fs = std::filesystem;

namespace kd {
namespace apps {
namespace {

// Colour-blind-safe palette (Okabe-Ito), in the order series are drawn.
const char* const kColours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                "#E69F00", "#56B4E9", "#000000", "#F0E442"};
constexpr int kNumColours = 8;

// gnuplot single-quoted string: '' is a quote, and there are no escapes to misinterpret.
std::string gp_string(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "''";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out + "'";
}

std::string gnuplot_path() {
  if (const char* env = std::getenv("KDLAB_GNUPLOT")) return env;
  if (access("/usr/bin/gnuplot", X_OK) == 0) return "/usr/bin/gnuplot";
  if (const char* path = std::getenv("PATH")) {
    std::stringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':'))
      if (!dir.empty() && access((dir + "/gnuplot").c_str(), X_OK) == 0) return dir + "/gnuplot";
  }
  return "";
}

bool plottable(const PlotSpec& panel, double x, double y) {
  return std::isfinite(x) && std::isfinite(y) && !(panel.log_x && x <= 0);
}

// The inside corner whose region holds the fewest points, so the key hides as little as possible
// (losses fall to the bottom right, accuracies rise to the top right).
std::string key_position(const PlotSpec& panel) {
  std::vector<std::pair<double, double>> pts;
  for (const Series& s : panel.series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (plottable(panel, s.x[i], s.y[i]))
        pts.emplace_back(panel.log_x ? std::log(s.x[i]) : s.x[i], s.y[i]);
  if (pts.empty()) return "top right";
  double x0 = pts[0].first, x1 = x0, y0 = pts[0].second, y1 = y0;
  for (auto& p : pts) {
    x0 = std::min(x0, p.first), x1 = std::max(x1, p.first);
    y0 = std::min(y0, p.second), y1 = std::max(y1, p.second);
  }
  // The key's share of the height grows with the number of entries.
  double h = std::min(0.5, 0.05 + 0.07 * double(panel.series.size()));
  const char* names[6] = {"top right",   "top left",     "bottom right",
                          "bottom left", "center right", "center left"};
  int best = 0;
  size_t best_count = SIZE_MAX;
  for (int place = 0; place < 6; ++place) {
    bool right = place % 2 == 0;
    size_t count = 0;
    for (auto& p : pts) {
      double fx = x1 > x0 ? (p.first - x0) / (x1 - x0) : 0.5;
      double fy = y1 > y0 ? (p.second - y0) / (y1 - y0) : 0.5;
      bool in_x = right ? fx > 0.55 : fx < 0.45;
      bool in_y = place < 2 ? fy > 1 - h : place < 4 ? fy < h : std::fabs(fy - 0.5) < h / 2;
      count += in_x && in_y;
    }
    if (count < best_count) best = place, best_count = count;
  }
  return names[best];
}

// Data blocks for one panel; returns the plot command (or an empty-panel stand-in).
std::string panel_script(const PlotSpec& panel, size_t p, std::ostringstream& data) {
  std::string plot;
  for (size_t s = 0; s < panel.series.size(); ++s) {
    const Series& series = panel.series[s];
    KD_CHECK(series.x.size() == series.y.size(), "plot series '" << series.name << "' has "
                                                                 << series.x.size() << " x and "
                                                                 << series.y.size() << " y values");
    std::string block = "$d" + std::to_string(p) + "_" + std::to_string(s);
    std::ostringstream rows;
    rows.precision(17);
    size_t points = 0;
    bool gap = false;
    for (size_t i = 0; i < series.x.size(); ++i) {
      if (!plottable(panel, series.x[i], series.y[i])) {
        gap = points > 0;  // one blank line breaks the line at a missing value
        continue;
      }
      if (gap) rows << "\n";
      gap = false;
      rows << series.x[i] << " " << series.y[i] << "\n";
      ++points;
    }
    if (points == 0) continue;
    data << block << " << EOD\n" << rows.str() << "EOD\n";
    plot += (plot.empty() ? "plot " : ", \\\n     ") + block + " using 1:2 with " +
            (series.reference ? "lines" : "linespoints") + " ls " +
            std::to_string(s % kNumColours + 1) + (series.reference ? " dt 2 lw 1.5" : "") +
            " title " + gp_string(series.name);
  }
  if (plot.empty())
    return "set xrange [0:1]\nset yrange [0:1]\nunset tics\n"
           "set label 1 'no data' at graph 0.5, graph 0.5 center\nplot NaN notitle\n";
  return plot + "\n";
}

// The x values of the data series (not the reference levels), sorted, without repeats.
std::vector<double> distinct_x(const PlotSpec& panel) {
  std::vector<double> xs;
  for (const Series& s : panel.series)
    if (!s.reference)
      for (double x : s.x)
        if (std::isfinite(x)) xs.push_back(x);
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
  return xs;
}

// Integer ticks for a counting axis; named ticks (and a margin) for named settings.
std::string x_axis_script(const PlotSpec& panel) {
  std::ostringstream out;
  out << "set xtics autofreq norotate\n";  // a previous panel's named ticks do not carry over
  if (!panel.x_labels.empty()) {
    out << "set xtics (";
    for (size_t i = 0; i < panel.x_labels.size(); ++i)
      out << (i ? ", " : "") << gp_string(panel.x_labels[i]) << " " << i;
    out << ") rotate by -30\nset xrange [-0.5:" << double(panel.x_labels.size()) - 0.5 << "]\n";
  } else if (std::vector<double> xs = distinct_x(panel); !xs.empty() && xs.size() <= 8) {
    // Few settings along x (sizes, ensemble sizes, temperatures): a tick at each, no others.
    out << "set xtics (";
    for (size_t i = 0; i < xs.size(); ++i) {
      std::ostringstream label;
      label << xs[i];
      out << (i ? ", " : "") << gp_string(label.str()) << " " << xs[i];
    }
    out << ")\n";
  } else if (panel.integer_x) {
    out << "set format x '%.0f'\n";
    double lo = INFINITY, hi = -INFINITY;
    for (const Series& s : panel.series)
      for (double x : s.x) lo = std::min(lo, x), hi = std::max(hi, x);
    if (!panel.log_x && std::isfinite(lo) && hi - lo <= 20) out << "set xtics 1\n";
  } else {
    out << "set format x '% h'\n";
  }
  return out.str();
}

std::string make_script(const std::string& out_png, const std::vector<PlotSpec>& panels, int width,
                        int height) {
  std::ostringstream data, body;
  for (size_t p = 0; p < panels.size(); ++p) {
    const PlotSpec& panel = panels[p];
    body << "unset label\nset tics\nset autoscale\nset xtics nomirror\nset ytics nomirror\n"
         << "set title " << gp_string(panel.title) << "\n"
         << "set xlabel " << gp_string(panel.xlabel) << "\n"
         << "set ylabel " << gp_string(panel.ylabel) << "\n"
         << "set key inside " << key_position(panel)
         << "\n"
         // A log axis would otherwise widen to whole decades and squeeze the data into a corner.
         << (panel.log_x
                 ? "set logscale x\nset autoscale xfix\nset offsets graph 0.03, graph 0.03, 0, 0\n"
                 : "unset logscale x\nset offsets 0, 0, 0, 0\n")
         << x_axis_script(panel) << panel_script(panel, p, data);
  }
  std::ostringstream script;
  script << "size = '" << width << "," << height << "'\n"
         << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
         << "  set terminal pngcairo size @size noenhanced font 'sans,10' linewidth 1.2\n"
         << "} else {\n"
         << "  set terminal png size @size noenhanced\n"
         << "}\n"
         << "set encoding utf8\n"
         << "set output " << gp_string(out_png) << "\n";
  for (int i = 0; i < kNumColours; ++i)
    script << "set linetype " << i + 1 << " lc rgb '" << kColours[i]
           << "' lw 2 pt 7 ps 0.7 dt solid\n";
  script << "set linetype cycle " << kNumColours << "\n"
         << "set border 3 lc rgb '#444444'\n"
         << "set grid xtics ytics lt 1 lw 1 lc rgb '#e5e5e5'\n"
         << "set key opaque samplen 2.5 spacing 1.1 width 1\n"
         << "set datafile separator whitespace\n"
         << data.str() << "set multiplot layout 1," << panels.size() << "\n"
         << body.str() << "unset multiplot\nunset output\n";
  return script.str();
}

bool has_png_signature(const std::string& path) {
  static const unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::ifstream in(path, std::ios::binary);
  unsigned char head[8] = {0};
  in.read(reinterpret_cast<char*>(head), 8);
  return in.gcount() == 8 && std::equal(head, head + 8, kSignature);
}

}  // namespace

bool gnuplot_available() { return !gnuplot_path().empty(); }

void plot_png(const std::string& png_path, const std::vector<PlotSpec>& panels, int width,
              int height) {
  KD_CHECK(!panels.empty(), "plot_png " << png_path << ": no panels");
  KD_CHECK(width > 0 && height > 0,
           "plot_png " << png_path << ": bad size " << width << "x" << height);
  std::string gnuplot = gnuplot_path();
  if (gnuplot.empty())
    throw Error("plot_png " + png_path + ": gnuplot not found (install gnuplot-nox)");

  fs::path target(png_path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmp_png =
      (dir / ("." + target.filename().string() + ".tmp" + std::to_string(getpid()) + ".png"))
          .string();
  std::string script = make_script(tmp_png, panels, width, height);
  std::string script_path = (fs::temp_directory_path() / "kdlab-plot-XXXXXX").string();
  int fd = mkstemp(script_path.data());
  KD_CHECK(fd >= 0, "plot_png " << png_path << ": cannot create a temporary script file");
  bool written = write(fd, script.data(), script.size()) == ssize_t(script.size());
  close(fd);

  std::string output;
  int status = -1;
  if (written) {
    FILE* pipe =
        popen((shell_quote(gnuplot) + " " + shell_quote(script_path) + " 2>&1").c_str(), "r");
    if (pipe) {
      char buf[512];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
      status = pclose(pipe);
    }
  }
  std::remove(script_path.c_str());
  bool ok = written && status == 0 && has_png_signature(tmp_png);
  std::error_code ec;
  if (ok) {
    fs::rename(tmp_png, target, ec);
    if (!ec) return;
    std::error_code ignored;
    fs::remove(tmp_png, ignored);
    throw Error("plot_png " + png_path +
                ": cannot rename the finished plot into place: " + ec.message());
  }
  fs::remove(tmp_png, ec);
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  if (output.empty()) output = written ? "no PNG was produced" : "cannot write the script";
  throw Error("plot_png " + png_path + ": gnuplot (" + gnuplot + ") failed: " + output);
}

}  // namespace apps
}  // namespace kd
