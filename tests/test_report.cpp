// Report helpers: table layout (text and markdown), number formatting, and plot_png producing a
// real PNG atomically, or a kd::Error carrying gnuplot's message.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "apps/report.h"
#include "base/check.h"

namespace fs = std::filesystem;
using namespace kd::apps;

namespace {

std::string make_temp_dir() {
  std::string templ = (fs::temp_directory_path() / "kdlab-report-XXXXXX").string();
  EXPECT_NE(mkdtemp(templ.data()), nullptr);
  return templ;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

PlotSpec loss_panel() {
  PlotSpec p;
  p.title = "Test loss (it's a title)";
  p.xlabel = "epoch";
  p.ylabel = "NLL";
  Series a{"student_τ=4", {1, 2, 3, 4, 5, 6}, {2.3, 1.7, 1.2, std::nan(""), 0.9, 0.85}};
  Series b{"teacher", {1, 2, 3, 4, 5, 6}, {2.1, 1.4, 1.0, 0.8, 0.7, 0.65}};
  Series empty{"no points", {}, {}};
  p.series = {a, b, empty};
  return p;
}

PlotSpec agreement_panel() {
  PlotSpec p;
  p.title = "Agreement vs. ensemble size";
  p.xlabel = "teachers";
  p.ylabel = "top-1 agreement";
  p.log_x = true;
  p.series = {{"cifar100", {0, 1, 2, 4, 8}, {0.5, 0.85, 0.86, 0.87, 0.875}},
              {"fmnist", {1, 2, 4, 8}, {0.97, 0.975, 0.978, 0.979}}};
  return p;
}

}  // namespace

TEST(Table, TextAlignsColumnsAndRightAlignsNumbers) {
  Table t;
  t.header = {"model", "acc", "notes"};
  t.rows = {{"lenet5", "91.2%", "ok"}, {"preresnet20", "7.5%", ""}, {"x", "nan"}};
  std::string expected =
      "model          acc  notes\n"
      "-----------  -----  -----\n"
      "lenet5       91.2%  ok\n"
      "preresnet20   7.5%\n"
      "x              nan\n";
  EXPECT_EQ(t.to_text(), expected);
}

TEST(Table, TextCountsUtf8CharactersNotBytes) {
  Table t;
  t.header = {"τ", "λ"};
  t.rows = {{"α=1", "0.5"}};
  EXPECT_EQ(t.to_text(), "τ      λ\n---  ---\nα=1  0.5\n");
}

TEST(Table, MarkdownEscapesPipesAndMarksNumericColumns) {
  Table t;
  t.header = {"run", "kl"};
  t.rows = {{"a|b", "0.125"}, {"c"}};
  EXPECT_EQ(t.to_markdown(), "| run | kl |\n| --- | ---: |\n| a\\|b | 0.125 |\n| c |  |\n");
}

TEST(Table, RowWiderThanHeaderIsAnError) {
  Table t;
  t.header = {"a"};
  t.rows = {{"1", "2"}};
  EXPECT_THROW(t.to_text(), kd::Error);
}

TEST(Format, FixedAndPercent) {
  EXPECT_EQ(format_fixed(0.12345, 4), "0.1235");
  EXPECT_EQ(format_fixed(2.0, 0), "2");
  EXPECT_EQ(format_fixed(-0.00001, 3), "0.000");
  EXPECT_EQ(format_fixed(-1.5, 2), "-1.50");
  EXPECT_EQ(format_fixed(std::nan(""), 2), "nan");
  EXPECT_EQ(format_fixed(-std::numeric_limits<double>::infinity(), 2), "-inf");
  EXPECT_EQ(format_percent(0.1234, 1), "12.3%");
  EXPECT_EQ(format_percent(1.0, 0), "100%");
  EXPECT_EQ(format_percent(std::nan(""), 1), "nan");
}

TEST(Plot, WritesAValidPngAtomically) {
  if (!gnuplot_available()) GTEST_SKIP() << "gnuplot not installed";
  std::string dir = make_temp_dir();
  std::string png = dir + "/curves.png";
  plot_png(png, {loss_panel(), agreement_panel()});
  std::string bytes = read_all(png);
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // IHDR holds the size big-endian at bytes 16..23.
  auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(bytes[at])) << 24) | (uint32_t(uint8_t(bytes[at + 1])) << 16) |
           (uint32_t(uint8_t(bytes[at + 2])) << 8) | uint32_t(uint8_t(bytes[at + 3]));
  };
  EXPECT_EQ(be32(16), 1100u);
  EXPECT_EQ(be32(20), 450u);
  // Nothing but the plot is left behind (no temp files).
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  // A second plot replaces the first in place.
  plot_png(png, {agreement_panel()}, 500, 300);
  bytes = read_all(png);
  EXPECT_EQ(be32(16), 500u);
  fs::remove_all(dir);
}

TEST(Plot, PanelWithoutDataStillRenders) {
  if (!gnuplot_available()) GTEST_SKIP() << "gnuplot not installed";
  std::string dir = make_temp_dir();
  PlotSpec empty;
  empty.title = "nothing yet";
  empty.series = {{"a", {1, 2}, {std::nan(""), std::nan("")}}};
  plot_png(dir + "/e.png", {empty}, 300, 200);
  EXPECT_TRUE(fs::exists(dir + "/e.png"));
  fs::remove_all(dir);
}

TEST(Plot, FailuresCarryGnuplotsMessage) {
  if (!gnuplot_available()) GTEST_SKIP() << "gnuplot not installed";
  std::string dir = make_temp_dir();
  try {
    plot_png(dir + "/no/such/dir/x.png", {agreement_panel()});
    FAIL() << "expected kd::Error";
  } catch (const kd::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("x.png"), std::string::npos) << msg;
    EXPECT_NE(msg.find("gnuplot"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;
  }
  Series bad{"bad", {1, 2}, {1}};
  PlotSpec spec;
  spec.series = {bad};
  EXPECT_THROW(plot_png(dir + "/bad.png", {spec}), kd::Error);
  fs::remove_all(dir);
}

TEST(Plot, MissingGnuplotIsAnError) {
  setenv("KDLAB_GNUPLOT", "/nonexistent/gnuplot", 1);
  std::string dir = make_temp_dir();
  EXPECT_THROW(plot_png(dir + "/x.png", {agreement_panel()}), kd::Error);
  unsetenv("KDLAB_GNUPLOT");
  EXPECT_FALSE(fs::exists(dir + "/x.png"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 0);
  fs::remove_all(dir);
}
