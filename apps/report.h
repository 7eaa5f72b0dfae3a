// Reports: tables for the terminal and for report.md, number formatting, and PNG plots drawn by
// gnuplot (an external program, so a missing or failing gnuplot is a clear error, not a crash).
#pragma once
#include <string>
#include <vector>

namespace kd {
namespace apps {

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;  // a short row is padded with empty cells
  // Aligned columns; numeric-looking columns are right-aligned.
  std::string to_text() const;
  // GitHub-flavoured markdown; '|' in a cell is escaped.
  std::string to_markdown() const;
};

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; NaN or inf y values are gaps
  bool reference = false;    // a reference level (a teacher's): drawn dashed, without points
};

struct PlotSpec {
  std::string title, xlabel, ylabel;
  std::vector<Series> series;
  bool log_x = false;  // points with x <= 0 are dropped on a log axis
  bool integer_x = false;  // the x axis counts something: integer ticks only
  // Named settings along x (x = 0, 1, ...): one tick per name instead of numbers.
  std::vector<std::string> x_labels;
};

// Draws `panels` side by side into one PNG (width x height pixels in total). The file is replaced
// atomically. Throws kd::Error with gnuplot's own message when gnuplot is missing or fails.
void plot_png(const std::string& png_path, const std::vector<PlotSpec>& panels, int width = 1100,
              int height = 450);
bool gnuplot_available();

// "0.1235" for (0.12345, 4); "nan"/"inf"/"-inf" for non-finite values.
std::string format_fixed(double v, int digits);
// "12.3%" for (0.1234, 1).
std::string format_percent(double fraction, int digits);

}  // namespace apps
}  // namespace kd
