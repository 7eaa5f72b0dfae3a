// Experiment files and presets (apps/study_*.h): every preset plans at every scale; mistakes in
// a file are one-line errors naming the key; each preset runs end to end at --scale tiny through
// the binary; a killed study resumes to the same numbers; the Slurm scripts, run task by task,
// give the local run's table; and, where Slurm is installed, a real one-node cluster does too.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "apps/presets.h"
#include "apps/study_report.h"
#include "apps/study_spec.h"
#include "base/check.h"
#include "cli_testing.h"
#include "data/datasets.h"

namespace kd {
namespace {

using namespace cli_testing;
using apps::Json;

#define SKIP_WITHOUT_FMNIST() \
  if (!have_fashion_mnist()) GTEST_SKIP() << kFashionMnistDir << " is absent"

Json preset_doc(const std::string& name) {
  return apps::parse_study_text(apps::find_preset(name).text, "preset " + name);
}

std::string plan_error(const std::string& text, std::vector<std::string> sets = {},
                       const std::string& scale = "tiny") {
  try {
    apps::Study st = apps::plan_study(apps::parse_study_text(text, "s.json"), "s.json", scale,
                                      sets, "/tmp/study", {});
    apps::check_report_spec(st);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

// The smallest valid study, with `runs` spliced in.
std::string tiny_study(const std::string& runs, const std::string& extra = "") {
  return R"({"kdlab_study": 1, "name": "t", "title": "T", "vars": {"seed": 0, "e": 2},
             "scales": {"tiny": {}, "small": {"vars": {"e": 3}}}, "runs": )" +
         runs + extra + "}";
}

TEST(StudySpec, EveryPresetPlansAtEveryScaleAndItsTinyScaleRunsOnFashionMnist) {
  ASSERT_GE(apps::presets().size(), 14u);
  for (const char* want : {"fmnist-study", "fig3-augmentation", "fig4-data-reuse",
                           "fig5-train-agreement", "fig6a-optimizer", "fig6b-interpolation",
                           "table1-cka", "fig9-temperature", "fig10-ensemble-size",
                           "fig12-capacity", "fig13-vgg", "fig14-alpha", "fig1-gan",
                           "table2-imagenet-imdb"})
    EXPECT_NO_THROW(apps::find_preset(want)) << want;
  for (const apps::Preset& p : apps::presets()) {
    SCOPED_TRACE(p.name);
    Json doc = preset_doc(p.name);
    EXPECT_EQ(doc["name"], p.name) << "a preset's name is its file's name";
    if (doc.contains("unsupported")) {
      EXPECT_THROW(apps::plan_study(doc, p.name, "", {}, "/tmp/s", {}), InputError);
      continue;
    }
    for (const char* scale : {"tiny", "small", "paper"}) {
      apps::Study st = apps::plan_study(doc, p.name, scale, {}, "/tmp/s", {});
      EXPECT_NO_THROW(apps::check_report_spec(st)) << scale;
      EXPECT_TRUE(data::dataset_registry().contains(apps::value_text(st.vars["dataset"])));
      EXPECT_GE(st.runs.size(), 3u);
      EXPECT_EQ(st.runs.front().level, 0);
      if (std::string(scale) == "tiny") {
        EXPECT_EQ(st.vars["dataset"], "fmnist");
      }
      if (std::string(scale) == "paper" && p.name != "fmnist-study") {
        EXPECT_EQ(st.vars["dataset"], "cifar100");
      }
    }
  }
}

TEST(StudySpec, VariablesExpressionsSlicesAndMoreFlagsExpand) {
  const std::string text = tiny_study(R"([
      {"id": "t${i}", "command": "train", "for": {"i": {"range": 3}},
       "flags": {"epochs": "${e}", "seed": "${seed + 10 * (i + 1)}"}},
      {"id": "s-${p.name}", "command": "distill", "for": {"p": [{"name": "a", "flags": {"tau": 1}},
                                                              {"name": "b", "flags": {"hflip": true}}]},
       "flags": {"teacher": "@t[0:2]", "epochs": 1}, "more_flags": "${p.flags}"},
      {"id": "e", "command": "eval", "flags": {"model": "@s-a", "teacher": ["@t2", "@t0/init.safetensors"]}}])");
  apps::Study st = apps::plan_study(apps::parse_study_text(text, "s.json"), "s.json", "small", {},
                                    "/d", {"--device", "cpu"});
  ASSERT_EQ(st.runs.size(), 6u);
  EXPECT_EQ(st.levels, 3);
  const apps::PlannedRun* t1 = st.find("t1");
  ASSERT_NE(t1, nullptr);
  EXPECT_EQ(t1->args, (std::vector<std::string>{"--epochs", "3", "--seed", "20", "--device", "cpu"}));
  const apps::PlannedRun* sa = st.find("s-a");
  ASSERT_NE(sa, nullptr);
  EXPECT_EQ(sa->after, (std::vector<std::string>{"t0", "t1"}));
  EXPECT_EQ(sa->args, (std::vector<std::string>{"--teacher", "/d/runs/t0/model.safetensors", "--teacher",
                                                "/d/runs/t1/model.safetensors", "--epochs", "1",
                                                "--tau", "1", "--device", "cpu"}));
  EXPECT_NE(std::find(st.find("s-b")->args.begin(), st.find("s-b")->args.end(), "--hflip"),
            st.find("s-b")->args.end());
  const apps::PlannedRun* e = st.find("e");
  EXPECT_EQ(e->level, 2);
  EXPECT_EQ(e->after, (std::vector<std::string>{"s-a", "t0", "t2"}));
  EXPECT_EQ(e->args[1], "/d/runs/s-a/student.safetensors");
  EXPECT_EQ(e->args[5], "/d/runs/t0/init.safetensors");
  // --set overrides a variable; a JSON value keeps its type.
  st = apps::plan_study(apps::parse_study_text(text, "s.json"), "s.json", "tiny", {"e=7"}, "/d", {});
  EXPECT_EQ(st.find("t0")->args[1], "7");
}

TEST(StudySpec, MistakesAreOneLineErrorsNamingTheKey) {
  auto has = [](const std::string& error, std::initializer_list<std::string> needles) {
    for (const std::string& n : needles) EXPECT_NE(error.find(n), std::string::npos) << n << " not in: " << error;
  };
  const std::string ok_run = R"([{"id": "a", "command": "train", "flags": {"epochs": 1}}])";
  has(plan_error(tiny_study(ok_run, R"(, "tabel": {})")), {"s.json", "tabel", "unknown key"});
  has(plan_error(tiny_study(R"([{"id": "a", "command": "train", "flags": {"epoch": 1}}])")),
      {"runs[0] (a).flags.epoch", "no flag --epoch", "kdlab train --help"});
  has(plan_error(tiny_study(R"([{"id": "a", "command": "train", "flags": {"epochs": "abc"}}])")),
      {"runs[0] (a)", "--epochs", "abc"});
  has(plan_error(tiny_study(R"([{"id": "a", "command": "train", "flags": {"lr": -1}}])")),
      {"runs[0] (a)", "--lr"});
  has(plan_error(tiny_study(R"([{"id": "a", "command": "train", "flags": {"out": "x"}}])")),
      {"flags.out", "the study sets --out"});
  has(plan_error(tiny_study(R"([{"id": "a", "command": "fit"}])")), {"runs[0].command", "fit"});
  has(plan_error(tiny_study(R"([{"id": "a", "command": "train", "flags": {"epochs": "${nope}"}}])")),
      {"flags.epochs", "unknown variable 'nope'"});
  has(plan_error(tiny_study(R"([{"id": "a", "command": "distill", "flags": {"teacher": "@b"}},
                               {"id": "b", "command": "distill", "flags": {"teacher": "@a"}}])")),
      {"cycle"});
  has(plan_error(tiny_study(R"([{"id": "a", "command": "distill", "flags": {"teacher": "@zz"}}])")),
      {"'@zz'", "no run has this id"});
  has(plan_error(tiny_study(ok_run + R"(, {"id": "a", "command": "train"})")), {"not valid JSON"});
  has(plan_error(tiny_study(R"([{"id": "a", "command": "train"}, {"id": "a", "command": "train"}])")),
      {"'a'", "earlier run"});
  has(plan_error(tiny_study(ok_run), {"ee=3"}), {"--set ee=3", "no variable 'ee'"});
  has(plan_error(tiny_study(ok_run, R"(, "notes": )" + std::string(100000, '[') +
                                        std::string(100000, ']'))),
      {"s.json", "deeper than 64 levels"});  // once a segfault
  has(plan_error(tiny_study(ok_run), {}, "paper"), {"--scale paper", "tiny, small"});
  has(plan_error(tiny_study(ok_run, R"(, "findings": [{"claim": "x", "check": "bigger", "a": "@a:t"}])")),
      {"findings[0].check", "bigger"});
  has(plan_error(tiny_study(ok_run, R"(, "table": {"columns": [{"name": "c", "value": "@q:x"}], "rows": [{"label": "r"}]})")),
      {"table", "'@q:x'", "no run has the id 'q'"});
}

// ---- through the binary ----

struct TinyPreset : testing::TestWithParam<std::string> {};

TEST_P(TinyPreset, RunsEndToEndAndReportsEveryCellAndFinding) {
  SKIP_WITHOUT_FMNIST();
  TempDir tmp;
  const std::string out = tmp / "study";
  RunResult r = run_kdlab({"repro", GetParam(), "--scale", "tiny", "--out", out}, tmp.path);
  std::printf("[ measured ] kdlab repro %s --scale tiny: %.1f s\n%s", GetParam().c_str(), r.seconds,
              r.out.c_str());
  ASSERT_EQ(r.code, 0) << r.err << "\n" << r.out;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("run directory: " + out), std::string::npos);
  const Json summary = Json::parse(read_file(out + "/summary.json"));
  EXPECT_EQ(summary["runs_finished"], summary["runs"]);
  ASSERT_FALSE(summary["table"]["rows"].empty());
  for (const Json& row : summary["table"]["rows"])
    for (auto it = row["values"].begin(); it != row["values"].end(); ++it) {
      ASSERT_TRUE(it.value().is_number()) << row["setting"] << " / " << it.key();
      EXPECT_TRUE(std::isfinite(it.value().get<double>())) << row["setting"] << " / " << it.key();
    }
  ASSERT_FALSE(summary["findings"].empty());
  const std::string report = read_file(out + "/report.md");
  for (const Json& f : summary["findings"]) {
    const std::string verdict = f["verdict"];
    EXPECT_TRUE(verdict == "agrees" || verdict == "does not agree") << f.dump();
    EXPECT_NE(report.find(f["claim"].get<std::string>() + " Ours: "), std::string::npos) << f.dump();
  }
  EXPECT_NE(report.find("## Results"), std::string::npos);
  EXPECT_EQ(report.find("not drawn"), std::string::npos) << report;
  // Every PNG the report shows exists and is a PNG.
  for (size_t at = report.find("]("); at != std::string::npos; at = report.find("](", at + 1)) {
    const std::string png = report.substr(at + 2, report.find(')', at) - at - 2);
    EXPECT_EQ(read_file(out + "/" + png).substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << png;
  }
  // Re-reported from the directory alone: the same table and verdicts.
  fs::remove(out + "/report.md");
  const Json before = summary;
  RunResult again = run_kdlab({"report", out}, tmp.path);
  ASSERT_EQ(again.code, 0) << again.err;
  const Json after = Json::parse(read_file(out + "/summary.json"));
  EXPECT_EQ(after["table"], before["table"]);
  EXPECT_EQ(after["findings"], before["findings"]);
  EXPECT_TRUE(fs::exists(out + "/report.md"));
}

std::vector<std::string> runnable_presets() {
  std::vector<std::string> out;
  for (const apps::Preset& p : apps::presets())
    if (!preset_doc(p.name).contains("unsupported")) out.push_back(p.name);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Presets, TinyPreset, testing::ValuesIn(runnable_presets()),
                         [](const testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

TEST(Study, UnsupportedPresetsSayWhyAndBadFilesNameTheKey) {
  TempDir tmp;
  expect_error(run_kdlab({"repro", "fig1-gan"}, tmp.path), {"fig1-gan", "SN-GAN"});
  write_file(tmp / "s.json", tiny_study(R"([{"id": "a", "command": "train", "flags": {"epoch": 1}}])"));
  expect_error(run_kdlab({"study", tmp / "s.json", "--out", tmp / "o"}, tmp.path),
               {"s.json", "flags.epoch", "no flag --epoch"});
  expect_error(run_kdlab({"study", tmp / "missing.json"}, tmp.path), {"missing.json", "cannot open"});
  EXPECT_FALSE(fs::exists(tmp / "o"));
  EXPECT_EQ(entries_of(tmp.path), std::vector<std::string>{"s.json"});
}

// Table and findings of a study's summary.json without the seconds (which differ run to run).
Json numbers_of(const std::string& dir) {
  Json s = Json::parse(read_file(dir + "/summary.json"));
  Json table = s["table"];
  for (Json& row : table["rows"]) row["values"].erase("wall s");
  return Json{{"table", table}};
}

TEST(Study, AKilledStudyContinuesToTheSameNumbers) {
  SKIP_WITHOUT_FMNIST();
  TempDir tmp;
  RunResult whole = run_kdlab({"repro", "fmnist-study", "--quick", "--out", tmp / "whole"}, tmp.path);
  ASSERT_EQ(whole.code, 0) << whole.err;
  // Every run of the first attempt kills itself after its 70th step: teacher-a (120 steps) dies
  // mid-way after saving its state at step 70's epoch.
  RunResult killed = run_kdlab({"repro", "fmnist-study", "--quick", "--out", tmp / "cut"}, tmp.path,
                               {{"KDLAB_KILL_AFTER_STEP", "70"}});
  EXPECT_EQ(killed.code, 137) << killed.err;
  EXPECT_NE(killed.err.find("run teacher-a"), std::string::npos) << killed.err;
  EXPECT_FALSE(fs::exists(tmp / "cut/runs/teacher-a/summary.json"));
  ASSERT_TRUE(fs::exists(tmp / "cut/runs/teacher-a/last.safetensors"));
  RunResult resumed = run_kdlab({"repro", "fmnist-study", "--quick", "--out", tmp / "cut"}, tmp.path);
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("teacher-a (resumed)"), std::string::npos) << resumed.out;
  EXPECT_EQ(numbers_of(tmp / "cut"), numbers_of(tmp / "whole"));
  // A finished study started again runs nothing and reports the same.
  RunResult again = run_kdlab({"repro", "fmnist-study", "--quick", "--out", tmp / "cut"}, tmp.path);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.out.find("8 of 8 runs finished"), std::string::npos) << again.out;
  EXPECT_EQ(again.out.find("[1/8]"), std::string::npos) << again.out;
  // Another study, or the same at another scale, is refused in that directory.
  expect_error(run_kdlab({"repro", "fmnist-study", "--scale", "small", "--out", tmp / "cut"}, tmp.path),
               {"--out", "scale tiny", "another --out"});
  expect_error(run_kdlab({"repro", "fmnist-study", "--quick", "--set", "student_b_epochs=4",
                          "--out", tmp / "cut"}, tmp.path),
               {"--out", "student-b-m1", "other settings"});
}

// Runs every task of levels [first, last) of the job arrays the way Slurm would, then the
// report job.
void run_slurm_scripts_by_hand(const std::string& dir, int first, int levels) {
  for (int level = first; level < levels; ++level) {
    const std::string script = read_file(dir + "/level-" + std::to_string(level) + ".sbatch");
    const size_t at = script.find("--array=0-");
    ASSERT_NE(at, std::string::npos) << script;
    const int last = std::atoi(script.c_str() + at + 10);
    for (int task = 0; task <= last; ++task) {
      const std::string cmd = "SLURM_ARRAY_TASK_ID=" + std::to_string(task) + " bash " + dir +
                              "/level-" + std::to_string(level) + ".sbatch > /dev/null 2>&1";
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
  }
  ASSERT_EQ(std::system(("bash " + dir + "/report.sbatch > /dev/null 2>&1").c_str()), 0);
}

TEST(Study, PlanAndSlurmScriptsGiveTheLocalTable) {
  SKIP_WITHOUT_FMNIST();
  TempDir tmp;
  RunResult plan = run_kdlab({"repro", "fmnist-study", "--quick", "--plan", "--out", tmp / "s"}, tmp.path);
  ASSERT_EQ(plan.code, 0) << plan.err;
  for (const char* id : {"teacher-a", "teacher-b2", "student-a-4000", "student-b-m3", "level 1:",
                         "(after teacher-b0 teacher-b1 teacher-b2)"})
    EXPECT_NE(plan.out.find(id), std::string::npos) << id << " not in:\n" << plan.out;
  EXPECT_FALSE(fs::exists(tmp / "s")) << "--plan runs nothing";

  RunResult slurm = run_kdlab({"repro", "fmnist-study", "--quick", "--slurm", tmp / "jobs", "--out",
                               tmp / "s"}, tmp.path);
  ASSERT_EQ(slurm.code, 0) << slurm.err;
  const std::string level0 = read_file(tmp / "jobs/level-0.sbatch");
  EXPECT_NE(level0.find("#SBATCH --array=0-3\n"), std::string::npos) << level0;
  EXPECT_NE(level0.find("#SBATCH --cpus-per-task=2\n"), std::string::npos) << level0;
  EXPECT_NE(level0.find("--run-one \"${runs[$SLURM_ARRAY_TASK_ID]}\""), std::string::npos) << level0;
  EXPECT_NE(read_file(tmp / "jobs/level-1.sbatch").find("#SBATCH --array=0-3\n"), std::string::npos);
  // At paper scale the file asks for a GPU and a day per task.
  RunResult paper = run_kdlab({"repro", "fig9-temperature", "--scale", "paper", "--slurm",
                               tmp / "paper-jobs", "--out", tmp / "paper-study"}, tmp.path);
  ASSERT_EQ(paper.code, 0) << paper.err;
  const std::string paper_level1 = read_file(tmp / "paper-jobs/level-1.sbatch");
  for (const char* line : {"#SBATCH --gres=gpu:1\n", "#SBATCH --time=24:00:00\n",
                           "#SBATCH --cpus-per-task=8\n", "#SBATCH --array=0-11\n"})
    EXPECT_NE(paper_level1.find(line), std::string::npos) << line << " not in:\n" << paper_level1;
  const std::string submit = read_file(tmp / "jobs/submit.sh");
  EXPECT_NE(submit.find("--dependency=afterok:$previous"), std::string::npos) << submit;
  EXPECT_NE(submit.find("report.sbatch"), std::string::npos) << submit;
  // A task whose dependencies have not finished is refused.
  RunResult early = run_kdlab({"repro", "fmnist-study", "--quick", "--run-one", "student-b-m1",
                               "--out", tmp / "s"}, tmp.path);
  expect_error(early, {"student-b-m1", "teacher-b0", "not finished"});

  // Half-way (level 0 only), the report shows what is measured and says what is not.
  run_slurm_scripts_by_hand(tmp / "jobs", 0, 1);
  const Json partial = Json::parse(read_file(tmp / "s/summary.json"));
  EXPECT_EQ(partial["runs_finished"], 4);
  for (const Json& f : partial["findings"]) EXPECT_EQ(f["verdict"], "not measured") << f.dump();
  EXPECT_TRUE(partial["table"]["rows"][0]["values"]["student acc"].is_null());
  EXPECT_NE(read_file(tmp / "s/report.md").find("4 of 8 runs finished (the rest show as -"),
            std::string::npos);
  run_slurm_scripts_by_hand(tmp / "jobs", 1, 2);
  RunResult local = run_kdlab({"repro", "fmnist-study", "--quick", "--out", tmp / "local"}, tmp.path);
  ASSERT_EQ(local.code, 0) << local.err;
  EXPECT_EQ(numbers_of(tmp / "s"), numbers_of(tmp / "local"));
}

// A real one-node Slurm (slurmctld, slurmd, munged on localhost), started for this test by
// tools/slurm-local.sh and stopped after it.
TEST(Study, ARealSlurmClusterRunsTheStudyToTheLocalTable) {
  SKIP_WITHOUT_FMNIST();
  const std::string harness = std::string(KDLAB_SOURCE_DIR) + "/tools/slurm-local.sh";
  if (!fs::exists(harness)) GTEST_SKIP() << harness << " is absent";
  if (std::system("command -v slurmctld slurmd munged sbatch > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "Slurm is not installed (tools/install-deps.sh installs slurmctld, slurmd, "
                    "slurm-client and munge)";
  TempDir tmp;
  const std::string state = tmp / "slurm";
  struct Stop {
    std::string harness, state;
    ~Stop() { std::system(("bash " + harness + " stop " + state + " > /dev/null 2>&1").c_str()); }
  } stop{harness, state};
  ASSERT_EQ(std::system(("bash " + harness + " start " + state + " > " + tmp / "start.log" + " 2>&1").c_str()), 0)
      << read_file(tmp / "start.log");
  RunResult slurm = run_kdlab({"repro", "fmnist-study", "--quick", "--threads", "1", "--slurm",
                               tmp / "jobs", "--out", tmp / "s"}, tmp.path);
  ASSERT_EQ(slurm.code, 0) << slurm.err;
  const std::string submit = "source " + state + "/env.sh && bash " + tmp / "jobs/submit.sh > " +
                             tmp / "jobs.txt" + " 2>&1";
  ASSERT_EQ(std::system(("bash -c '" + submit + "'").c_str()), 0) << read_file(tmp / "jobs.txt");
  std::string ids;
  for (const std::string& line : lines_of(read_file(tmp / "jobs.txt"))) ids += " " + line;
  const std::string wait = "bash " + harness + " wait " + state + ids + " > " + tmp / "wait.log" + " 2>&1";
  EXPECT_EQ(std::system(wait.c_str()), 0) << read_file(tmp / "wait.log");
  ASSERT_TRUE(fs::exists(tmp / "s/report.md")) << read_file(tmp / "wait.log");
  RunResult local = run_kdlab({"repro", "fmnist-study", "--quick", "--threads", "1", "--out",
                               tmp / "local"}, tmp.path);
  ASSERT_EQ(local.code, 0) << local.err;
  EXPECT_EQ(numbers_of(tmp / "s"), numbers_of(tmp / "local"));
}

}  // namespace
}  // namespace kd
