// Run directories and progress output: RunDir refuses to mix runs, writes metrics.csv/config.json/
// summary.json/log.txt in their documented shapes; Progress prints the documented plain lines,
// throttles the terminal bar, and stays silent when turned off.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "apps/progress.h"
#include "apps/run_dir.h"
#include "base/check.h"

namespace fs = std::filesystem;
using kd::apps::Progress;
using kd::apps::RunDir;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    path = (fs::temp_directory_path() / "kdlab-rundir-XXXXXX").string();
    EXPECT_NE(mkdtemp(path.data()), nullptr);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int count_of(const std::string& s, char c) { return int(std::count(s.begin(), s.end(), c)); }

}  // namespace

TEST(RunDir, CreatesParentsAndRefusesANonEmptyDirectory) {
  TempDir tmp;
  std::string path = tmp.path + "/runs/a/b";
  {
    RunDir run(path);
    EXPECT_TRUE(fs::is_directory(path));
    EXPECT_EQ(run.path(), path);
    EXPECT_EQ(run.file("model.safetensors"), path + "/model.safetensors");
    // While a writer holds it, even a resume (allow_existing) is a second writer.
    try {
      RunDir second(path, /*allow_existing=*/true);
      FAIL() << "expected InputError";
    } catch (const kd::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("another kdlab process (pid "), std::string::npos)
          << e.what();
    }
  }
  {
    RunDir again_while_empty(path);  // holding only its lock file, it is empty: fine to reuse
    again_while_empty.log("first");
  }
  try {
    RunDir clash(path);
    FAIL() << "expected InputError";
  } catch (const kd::InputError& e) {
    EXPECT_EQ(std::string(e.what()), "--out " + path + ": directory exists and is not empty");
  }
  EXPECT_NO_THROW(RunDir(path, /*allow_existing=*/true));
  std::ofstream(tmp.path + "/plain_file") << "x";
  EXPECT_THROW(RunDir(tmp.path + "/plain_file", true), kd::InputError);
}

TEST(RunDir, MetricsCsvAfterThreeAppends) {
  TempDir tmp;
  RunDir run(tmp.path + "/r");
  run.append_metrics({{"epoch", "1"}, {"test_acc", "0.5"}, {"note", "warm-up"}});
  run.append_metrics({{"epoch", "2"}, {"test_acc", "0.75"}, {"note", "lr 0.1, \"cosine\""}});
  run.append_metrics({{"epoch", "3"}, {"test_acc", "0.875"}, {"note", ""}});
  EXPECT_EQ(read_all(run.file("metrics.csv")),
            "epoch,test_acc,note\n"
            "1,0.5,warm-up\n"
            "2,0.75,\"lr 0.1, \"\"cosine\"\"\"\n"
            "3,0.875,\n");
}

TEST(RunDir, MetricsRowsWithOtherKeysAreRefusedAndTheFileIsUntouched) {
  TempDir tmp;
  RunDir run(tmp.path + "/r");
  run.append_metrics({{"epoch", "1"}, {"loss", "2.3"}});
  std::string before = read_all(run.file("metrics.csv"));
  EXPECT_THROW(run.append_metrics({{"epoch", "2"}, {"acc", "0.1"}}), kd::Error);
  EXPECT_THROW(run.append_metrics({{"loss", "2.0"}, {"epoch", "2"}}), kd::Error);
  EXPECT_THROW(run.append_metrics({{"epoch", "2"}}), kd::Error);
  EXPECT_THROW(run.append_metrics({{"epoch", "2"}, {"loss", "2.0"}, {"acc", "0.1"}}), kd::Error);
  EXPECT_EQ(read_all(run.file("metrics.csv")), before);
  run.append_metrics({{"epoch", "2"}, {"loss", "2.0"}});
  EXPECT_EQ(read_all(run.file("metrics.csv")), "epoch,loss\n1,2.3\n2,2.0\n");
}

TEST(RunDir, ConfigRecordsProvenanceAndKeepsCallerKeys) {
  TempDir tmp;
  const char* argv[] = {"kdlab", "train", "--out", "runs/my run", "--lr=0.1"};
  RunDir::set_command_line(5, argv);
  EXPECT_EQ(RunDir::command_line(), "kdlab train --out 'runs/my run' --lr=0.1");
  RunDir run(tmp.path + "/r");
  run.write_config({{"seed", 7}, {"model", "lenet5"}, {"host", "pinned-by-caller"}});
  nlohmann::json config = nlohmann::json::parse(read_all(run.file("config.json")));
  EXPECT_EQ(config["seed"], 7);
  EXPECT_EQ(config["model"], "lenet5");
  EXPECT_EQ(config["host"], "pinned-by-caller");
  EXPECT_EQ(config["command_line"], "kdlab train --out 'runs/my run' --lr=0.1");
  ASSERT_TRUE(config["git_revision"].is_string());
  std::string rev = config["git_revision"];
  EXPECT_TRUE(rev == "unknown" || std::regex_match(rev, std::regex("[0-9a-f]{40}"))) << rev;
  EXPECT_EQ(config.contains("git_dirty"), rev != "unknown");
  std::string started = config["started_at"];
  EXPECT_TRUE(std::regex_match(started, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")))
      << started;
  EXPECT_TRUE(config["kdlab_version"].is_string());
  EXPECT_FALSE(std::string(config["kdlab_version"]).empty());

  RunDir run2(tmp.path + "/r2");
  run2.write_config(nlohmann::json::object());
  nlohmann::json config2 = nlohmann::json::parse(read_all(run2.file("config.json")));
  EXPECT_TRUE(config2["host"].is_string());
  EXPECT_FALSE(std::string(config2["host"]).empty());
}

TEST(RunDir, SummaryAndLog) {
  TempDir tmp;
  RunDir run(tmp.path + "/r");
  run.write_summary({{"test_acc", 0.9}, {"teachers", {1, 2}}});
  nlohmann::json summary = nlohmann::json::parse(read_all(run.file("summary.json")));
  EXPECT_DOUBLE_EQ(summary["test_acc"].get<double>(), 0.9);
  EXPECT_EQ(summary["teachers"], nlohmann::json({1, 2}));
  run.log("loaded data");
  run.log("epoch 1: acc 50%");
  std::string log = read_all(run.file("log.txt"));
  EXPECT_TRUE(std::regex_match(
      log, std::regex(R"(\[\d+\.\d s\] loaded data\n\[\d+\.\d s\] epoch 1: acc 50%\n)")))
      << log;
  // Nothing but the files written and the lock is left in the directory (no temp files).
  EXPECT_EQ(std::distance(fs::directory_iterator(run.path()), fs::directory_iterator()), 3);
}

TEST(Progress, PlainModePrintsEveryTenPercentAndAFinishLine) {
  setenv("KDLAB_PROGRESS", "plain", 1);
  testing::internal::CaptureStderr();
  {
    Progress p("train", 200);
    EXPECT_EQ(p.mode(), Progress::Mode::Plain);
    for (int done = 0; done <= 200; ++done) p.update(done, "loss 0.5");
    p.finish("acc 91%");
  }
  std::string out = testing::internal::GetCapturedStderr();
  unsetenv("KDLAB_PROGRESS");
  EXPECT_EQ(count_of(out, '\n'), 10) << out;  // 10%..90% and the finish line
  EXPECT_EQ(out.find("train: 20/200 (10%) loss 0.5\n"), 0u) << out;
  EXPECT_NE(out.find("train: 180/200 (90%) loss 0.5\n"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(train: 200/200 \(100%\) acc 91% \[\d+s\]\n$)")))
      << out;
}

TEST(Progress, BarModeRedrawsInPlaceAtMostTenTimesASecond) {
  setenv("KDLAB_PROGRESS", "bar", 1);
  testing::internal::CaptureStderr();
  {
    Progress p("distill", 1000);
    for (int done = 1; done <= 1000; ++done) p.update(done, "kl 0.1");
    p.finish("done");
  }
  std::string out = testing::internal::GetCapturedStderr();
  unsetenv("KDLAB_PROGRESS");
  EXPECT_LE(count_of(out, '\r'), 3) << out;  // a tight loop well under 0.1 s: first draw + finish
  EXPECT_EQ(count_of(out, '\n'), 1);
  EXPECT_EQ(out.back(), '\n');
  EXPECT_NE(out.find("distill [########################] 1000/1000"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(  done *\n$)"))) << out;
}

TEST(Progress, OffModeIsSilentAndUnknownTotalsWork) {
  setenv("KDLAB_PROGRESS", "off", 1);
  testing::internal::CaptureStderr();
  {
    Progress p("x", 10);
    p.update(5, "");
    p.finish("");
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  setenv("KDLAB_PROGRESS", "plain", 1);
  testing::internal::CaptureStderr();
  {
    Progress p("scan", 0);
    p.update(3, "");
    p.finish("ok");
  }
  std::string out = testing::internal::GetCapturedStderr();
  unsetenv("KDLAB_PROGRESS");
  EXPECT_TRUE(std::regex_match(out, std::regex(R"(scan: 3 ok \[\d+s\]\n)"))) << out;
}

TEST(Progress, DurationFormat) {
  EXPECT_EQ(kd::apps::format_duration(0.4), "0s");
  EXPECT_EQ(kd::apps::format_duration(59.4), "59s");
  EXPECT_EQ(kd::apps::format_duration(187), "3m07s");
  EXPECT_EQ(kd::apps::format_duration(3725), "1h02m");
  EXPECT_EQ(kd::apps::format_duration(-1), "?");
}
