// The fmnist-study preset. (a) Positive control (paper Fig. 2): a LeNet-5 teacher trained on
// 200 stratified images, distilled into LeNet-5 students on 15k/30k/60k images. (b) Ensembles:
// m = 1 and m = 3 LeNet-5 teachers on the full training set, each distilled with tau = 4, alpha = 0.
// Every number in the table, report and plot is measured in this run.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "apps/experiment.h"
#include "apps/model_io.h"
#include "data/datasets.h"
#include "apps/presets.h"
#include "apps/report.h"
#include "apps/run_dir.h"
#include "engine/atomic_file.h"
#include "data/fashion_mnist.h"
#include "data/sampling.h"

namespace kd {
namespace apps {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct StudySettings {
  int teacher_a_per_class = 20, teacher_a_epochs = 100;
  std::vector<int64_t> distill_sizes = {15000, 30000, 60000};
  int student_a_epochs = 10;
  double student_a_tau = 1.0, student_a_lr = 0.05;
  int teacher_b_epochs = 8, members = 3;
  int64_t part_b_images = 0;  // (b) trains and distils on this many images (0 = all)
  int student_b_epochs = 8;
  double student_b_tau = 4.0, student_b_lr = 0.01;
  double teacher_lr = 0.05;
  int batch = 128;
};

StudySettings quick_settings() {
  StudySettings s;
  s.teacher_a_per_class = 10, s.teacher_a_epochs = 40;
  s.distill_sizes = {500, 1000};
  s.student_a_epochs = 5, s.teacher_b_epochs = 3, s.student_b_epochs = 3, s.members = 3;
  s.part_b_images = 6000;
  return s;
}

nlohmann::json settings_json(const StudySettings& s) {
  return {{"teacher_a", {{"per_class", s.teacher_a_per_class}, {"epochs", s.teacher_a_epochs},
                         {"lr", s.teacher_lr}}},
          {"students_a", {{"sizes", s.distill_sizes}, {"epochs", s.student_a_epochs},
                          {"tau", s.student_a_tau}, {"alpha", 0.0}, {"lr", s.student_a_lr}}},
          {"teachers_b", {{"members", s.members}, {"epochs", s.teacher_b_epochs},
                          {"train_images", s.part_b_images ? s.part_b_images : 60000},
                          {"lr", s.teacher_lr}}},
          {"students_b", {{"m", {1, s.members}}, {"epochs", s.student_b_epochs},
                          {"tau", s.student_b_tau}, {"alpha", 0.0}, {"lr", s.student_b_lr}}},
          {"common", {{"model", "lenet5"}, {"batch", s.batch}, {"optimizer", "sgd"},
                      {"momentum", 0.9}, {"nesterov", true}, {"weight_decay", 1e-4},
                      {"schedule", "cosine per epoch, eta_min 0"}, {"loss", "fwd-ce"},
                      {"normalization", "unitcube (x - 0.5) / 0.5"}, {"augmentation", "none"}}}};
}

struct Row {
  std::string setting;
  double teacher_acc = 0, student_acc = 0, agree = 0, kl = 0, ece = 0, train_agree = 0;
  double seconds = 0;
};

}  // namespace

namespace {
int run_fmnist_study(const StudyOptions& opt) {
  StudySettings s = opt.quick ? quick_settings() : StudySettings{};
  auto study_start = Clock::now();
  // The data are read before the run directory exists: a bad dataset leaves nothing behind.
  data::Dataset train = data::load_fashion_mnist(opt.data_dir, true);
  data::Dataset test = data::load_fashion_mnist(opt.data_dir, false);
  if (opt.quick) test = test.take_first(std::min<int64_t>(1000, test.n));
  RunDir run(opt.out);
  nlohmann::json config = {{"preset", "fmnist-study"}, {"seed", opt.seed},
                           {"device", opt.device.str()}, {"quick", opt.quick},
                           {"data_dir", opt.data_dir.empty() ? data::default_fashion_mnist_dir()
                                                             : opt.data_dir},
                           {"settings", settings_json(s)}};
  run.write_config(config);
  data::Normalization norm = data::dataset_normalization("fmnist", 1);
  run.log("loaded " + std::to_string(train.n) + " train and " + std::to_string(test.n) +
          " test images from " + config["data_dir"].get<std::string>());

  // Initialised on the host (the same weights for every device), then moved to the run's device.
  auto lenet = [&](uint64_t seed) {
    auto model = models::make_model("lenet5", 10, 1, seed);
    model->to(opt.device);
    return model;
  };
  LoopConfig teacher_cfg;
  teacher_cfg.batch = s.batch;
  teacher_cfg.optim.lr = s.teacher_lr;
  teacher_cfg.device = opt.device;

  // One header for every phase; fidelity columns stay empty for teachers.
  auto metrics_hook = [&](const std::string& phase, bool with_teacher) {
    return [&run, phase, with_teacher](const EpochRecord& r) {
      auto f = [](double v) { return format_fixed(v, 6); };
      run.append_metrics({{"phase", phase}, {"epoch", std::to_string(r.epoch)}, {"lr", f(r.lr)},
                          {"train_loss", f(r.train_loss)},
                          {"test_acc", r.evaluated ? f(r.test.accuracy()) : ""},
                          {"test_nll", r.evaluated ? f(r.test.nll()) : ""},
                          {"test_ece", r.evaluated ? f(r.test.ece()) : ""},
                          {"test_agree", r.evaluated && with_teacher ? f(r.test.agreement()) : ""},
                          {"test_kl", r.evaluated && with_teacher ? f(r.test.kl()) : ""},
                          {"seconds", format_fixed(r.seconds, 2)}});
    };
  };

  std::vector<Row> rows;
  auto distill_row = [&](const std::string& setting, const std::string& phase,
                         const models::Ensemble& teacher, double teacher_acc,
                         const data::Dataset& distill_data, int epochs, double tau, double lr,
                         uint64_t seed) {
    auto t0 = Clock::now();
    auto student = lenet(seed);
    LoopConfig cfg = teacher_cfg;
    cfg.epochs = epochs;
    cfg.optim.lr = lr;
    cfg.seed = seed;
    DistillConfig dcfg;
    dcfg.tau = tau;
    distill(*student, teacher, distill_data, &test, norm, cfg, dcfg, phase, metrics_hook(phase, true));
    ClassifierStats on_test = evaluate_model(*student, &teacher, test, norm, opt.device);
    ClassifierStats on_train = evaluate_model(*student, &teacher, distill_data, norm, opt.device);
    save_model(run.file(phase + ".safetensors"), *student, norm.mean, norm.std,
               {{"role", "student"}, {"tau", format_fixed(tau, 3)}});
    Row r{setting, teacher_acc, on_test.accuracy(), on_test.agreement(), on_test.kl(),
          on_test.ece(), on_train.agreement(), since(t0)};
    run.log(phase + ": student acc " + format_percent(r.student_acc, 2) + ", test agreement " +
            format_percent(r.agree, 2) + ", train agreement " + format_percent(r.train_agree, 2));
    rows.push_back(r);
    return r;
  };

  // (a) Positive control.
  auto t0 = Clock::now();
  auto small_idx = data::stratified_subset_indices(train.labels, s.teacher_a_per_class, opt.seed, 10);
  data::Dataset small = train.subset(small_idx);
  auto teacher_a = lenet(opt.seed + 100);
  LoopConfig cfg_a = teacher_cfg;
  cfg_a.epochs = s.teacher_a_epochs;
  cfg_a.seed = opt.seed + 100;
  train_supervised(*teacher_a, small, &test, norm, cfg_a, "teacher-a",
                   [&](const EpochRecord& r) { if (r.evaluated) metrics_hook("teacher-a", false)(r); });
  save_model(run.file("teacher-a.safetensors"), *teacher_a, norm.mean, norm.std,
             {{"role", "teacher"}, {"train_images", std::to_string(small.n)}});
  double teacher_a_acc = evaluate_model(*teacher_a, nullptr, test, norm, opt.device).accuracy();
  run.log("teacher-a (" + std::to_string(small.n) + " images): test acc " +
          format_percent(teacher_a_acc, 2) + " in " + format_fixed(since(t0), 1) + " s");
  models::Ensemble ensemble_a({teacher_a});
  std::vector<double> sizes_x, agree_a;
  for (int64_t size : s.distill_sizes) {
    int64_t k = std::min<int64_t>(size, train.n);
    data::Dataset subset = k == train.n ? train : train.subset(data::random_subset_indices(train.n, k, opt.seed + 7));
    // Labels from the sizes actually used (quick mode: a 100-image teacher, 500/1000 images).
    std::string images = k % 1000 == 0 ? std::to_string(k / 1000) + "k" : std::to_string(k);
    Row r = distill_row("(a) " + std::to_string(small.n) + "-img teacher, distil " + images,
                        "student-a-" + std::to_string(k), ensemble_a, teacher_a_acc, subset,
                        s.student_a_epochs, s.student_a_tau, s.student_a_lr, opt.seed + 200 + k);
    sizes_x.push_back(double(k));
    agree_a.push_back(100.0 * r.agree);
  }

  // (b) Ensembles trained on the full set (a random part of it in quick mode).
  const data::Dataset train_b =
      s.part_b_images > 0 && s.part_b_images < train.n
          ? train.subset(data::random_subset_indices(train.n, s.part_b_images, opt.seed + 8))
          : train;
  std::vector<std::shared_ptr<models::Classifier>> members;
  for (int i = 0; i < s.members; ++i) {
    auto t = lenet(opt.seed + 300 + i);
    LoopConfig cfg_b = teacher_cfg;
    cfg_b.epochs = s.teacher_b_epochs;
    cfg_b.seed = opt.seed + 300 + i;
    std::string phase = "teacher-b" + std::to_string(i);
    train_supervised(*t, train_b, &test, norm, cfg_b, phase, metrics_hook(phase, false));
    save_model(run.file(phase + ".safetensors"), *t, norm.mean, norm.std, {{"role", "teacher"}});
    members.push_back(t);
  }
  std::vector<double> m_x, agree_b;
  for (int m : {1, s.members}) {
    models::Ensemble ens(std::vector<std::shared_ptr<models::Classifier>>(members.begin(),
                                                                          members.begin() + m));
    double acc = [&] {
      LogitsFn fn = [&](const Tensor& x) { return ens.forward(x); };
      return evaluate(fn, nullptr, test, norm, opt.device).accuracy();
    }();
    Row r = distill_row("(b) m=" + std::to_string(m) + " teachers on " + std::to_string(train_b.n / 1000) + "k, tau 4",
                        "student-b-m" + std::to_string(m), ens, acc, train_b, s.student_b_epochs,
                        s.student_b_tau, s.student_b_lr, opt.seed + 400 + m);
    m_x.push_back(m);
    agree_b.push_back(100.0 * r.agree);
  }

  // Table, report, plot, summary.
  Table table;
  table.header = {"setting", "teacher acc", "student acc", "test agree", "test KL", "ECE",
                  "train agree", "wall s"};
  nlohmann::json summary_rows = nlohmann::json::array();
  for (const Row& r : rows) {
    table.rows.push_back({r.setting, format_percent(r.teacher_acc, 2), format_percent(r.student_acc, 2),
                          format_percent(r.agree, 2), format_fixed(r.kl, 4), format_fixed(r.ece, 4),
                          format_percent(r.train_agree, 2), format_fixed(r.seconds, 1)});
    summary_rows.push_back({{"setting", r.setting}, {"teacher_test_acc", r.teacher_acc},
                            {"student_test_acc", r.student_acc}, {"test_agreement", r.agree},
                            {"test_kl", r.kl}, {"student_ece", r.ece},
                            {"train_agreement", r.train_agree}, {"seconds", r.seconds}});
  }
  double total = since(study_start);
  PlotSpec pa{"(a) positive control: " + std::to_string(small.n) + "-image teacher",
              "distillation images",
              "test agreement (%)", {{"student", sizes_x, agree_a}}, false};
  PlotSpec pb{"(b) ensemble teachers, tau 4", "teachers in the ensemble (m)", "test agreement (%)",
              {{"student", m_x, agree_b}}, false};
  std::string plot_note;
  try {
    plot_png(run.file("agreement.png"), {pa, pb});
    plot_note = "![agreement](agreement.png)\n";
  } catch (const Error& e) {
    plot_note = std::string("(plot not drawn: ") + e.what() + ")\n";
    run.log(plot_note);
  }
  std::ostringstream md;
  md << "# fmnist-study" << (opt.quick ? " (quick)" : "") << "\n\n"
     << "LeNet-5 on Fashion-MNIST: the paper's positive control (Fig. 2) and ensemble "
        "distillation, measured in this run on " << opt.device.str() << " in "
     << format_fixed(total, 1) << " s.\n\n"
     << table.to_markdown() << "\n"
     << "Agreement and KL(teacher || student) are on the " << test.n
     << "-image test set at T = 1; train agreement is in eval mode on each student's "
        "distillation set. Settings: see config.json.\n\n"
     << plot_note;
  write_file_atomic(run.file("report.md"), md.str());
  rusage usage_now{};
  getrusage(RUSAGE_SELF, &usage_now);
  run.write_summary({{"preset", "fmnist-study"}, {"seconds", total},
                     {"peak_rss_mib", usage_now.ru_maxrss / 1024.0}, {"rows", summary_rows}});
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::cout << "\nfmnist-study" << (opt.quick ? " (quick)" : "") << ": " << format_fixed(total, 1)
            << " s on " << opt.device.str() << ", peak resident memory "
            << format_fixed(usage.ru_maxrss / 1024.0, 1) << " MiB\n"
            << table.to_text() << "run directory: " << run.path() << "\n";
  return 0;
}

}  // namespace

PresetEntry fmnist_study_preset_entry() {
  PresetEntry e;
  e.name = "fmnist-study";
  e.help = "Fashion-MNIST, LeNet-5: the positive control (Fig. 2) and 1- and 3-teacher ensembles";
  e.dataset = "fmnist";
  e.run = run_fmnist_study;
  return e;
}

}  // namespace apps
}  // namespace kd
