// `kdlab bench --device cuda`: the GPU training-step benchmark. For each model, our step on both
// GPU paths (our kernels, cuDNN) with launches per step and peak device memory, beside PyTorch on
// the same GPU (tools/torch_gpu_bench.py: eager NCHW, eager channels_last, torch.compile), then a
// distillation step from the cached logits of a 5-teacher ensemble (the training loop's logit
// cache: the teachers run once, before training) relative to a plain student step. Both sides are timed
// the same way: CUDA events recorded between consecutive steps, one synchronization at the end,
// the median interval. Each measurement is printed (and flushed) as a "[model] ..." line the
// moment it exists, so a run cut short by a time limit still shows every row it finished; the
// tables follow at the end. Each path is also timed captured as a CUDA graph (engine/step_graph.h)
// and replayed: one launch per step (plus the teacher rows' copy), its nodes counted.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "apps/bench.h"
#include "apps/bench_cost.h"
#include "apps/report.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/runtime_config.h"
#include "engine/optim.h"
#include "engine/step_graph.h"
#include "models/classifier.h"
#include "models/ensemble.h"

#ifndef KDLAB_SOURCE_DIR
#define KDLAB_SOURCE_DIR "."
#endif

namespace kd {
namespace apps {

namespace {

struct GpuMeasured {
  double ms_median = 0, images_per_s = 0, launches_per_step = 0, peak_mib = 0;
  int64_t graph_nodes = 0;  // replayed as a CUDA graph: the kernels, copies and memsets in it
  StepCost cost;
};

int classes_for(const std::string& arch) { return arch == "preresnet56" ? 100 : 10; }

// The goal: a distillation step from 5 teachers' cached logits within 1.1x a student step.
constexpr int kDistillTeachers = 5;

// One of the bench's paths: who runs the convolutions (--conv) and who the batch norms (--bn).
struct GpuPath {
  GpuImpl conv = GpuImpl::Native, bn = GpuImpl::Native;
  // native, cudnn (both), or cudnn-conv: cuDNN's convolutions beside our batch norm, whose
  // fused ReLU and batch count cuDNN's batch norm lacks (two launches fewer per batch norm).
  std::string name() const {
    if (conv == bn) return gpu_impl_name(conv);
    return std::string(gpu_impl_name(conv)) + "-conv";
  }
};

GpuMeasured time_gpu_step(const std::string& arch, const GpuPath& gpu_path, int teachers,
                          bool graphed, const BenchOptions& o) {
  RuntimeConfig config = runtime_config();
  config.gpu_kernels.conv = gpu_path.conv;
  config.gpu_kernels.bn = gpu_path.bn;
  ScopedRuntimeConfig scope(config);
  const Device gpu = Device::cuda();
  const bool lenet = arch == "lenet5";
  const int classes = classes_for(arch), channels = lenet ? 1 : 3, size = lenet ? 28 : 32;
  auto model = models::make_model(arch, classes, channels, 0);
  model->to(gpu);
  model->train();
  BenchBatch b = bench_batch(o.batch, channels, size, classes, gpu);
  Tensor x = b.images, y = b.labels;
  // Teachers: the ensemble's logits for kCachedBatches batches, computed once, then the teachers
  // are freed; step i reads the rows of batch i % kCachedBatches, as training reads its cache.
  constexpr int kCachedBatches = 4;
  Tensor cache;
  if (teachers > 0) {
    std::vector<std::shared_ptr<models::Classifier>> members;
    for (int i = 0; i < teachers; ++i) {
      members.push_back(models::make_model(arch, classes, channels, 100 + i));
      members.back()->to(gpu);
    }
    const models::Ensemble ensemble(members);
    cache = Tensor::empty({int64_t(kCachedBatches) * o.batch, classes}, DType::F32, gpu);
    for (int i = 0; i < kCachedBatches; ++i) {
      const Tensor images =
          i == 0 ? x : bench_batch(o.batch, channels, size, classes, gpu, 100 + i).images;
      cache.copy_range_from(int64_t(i) * o.batch * classes, ensemble.forward(images));
    }
  }
  SgdParams h;
  h.lr = 0.01, h.momentum = 0.9, h.nesterov = true, h.weight_decay = 5e-4;
  Sgd sgd(model->parameters(), h);
  int64_t step_index = 0;
  // The teacher rows move every step, so they are copied in before the step proper (which a
  // graph captures) reads them.
  Tensor teacher_rows = teachers > 0 ? Tensor::empty({o.batch, classes}, DType::F32, gpu) : Tensor();
  auto next_rows = [&](bool into_captured) {
    if (!cache.defined()) return;
    const int64_t rows = int64_t(step_index++ % kCachedBatches) * o.batch;
    if (into_captured) teacher_rows.copy_from(cache.rows(rows, o.batch));
    else teacher_rows = cache.rows(rows, o.batch);
  };
  auto step_proper = [&] {
    Tensor loss = cache.defined()
                      ? ops::distill_loss(DistillKind::kForwardCE, teacher_rows, model->forward(x), 4.0)
                      : ops::cross_entropy(model->forward(x), y);
    sgd.zero_grad();
    backward(loss);
    sgd.step();
  };
  auto eager_step = [&] {
    next_rows(false);
    step_proper();
  };
  StepGraph graph(gpu);
  auto step = [&] {
    if (!graphed) return eager_step();
    next_rows(true);
    graph.replay();
  };
  const int steps = o.steps > 0 ? o.steps : 200, warmup = o.warmup >= 0 ? o.warmup : 20;
  const Backend& backend = backend_of(gpu);
  // The first step allocates the gradients and fills the caches a capture must not grow.
  eager_step();
  if (graphed) graph.capture(step_proper);
  if (o.cost_only) {
    GpuMeasured m;
    m.cost = measure_step_cost(gpu, eager_step);  // a steady step, eager
    m.launches_per_step = double(m.cost.launches_total);
    m.graph_nodes = graph.nodes();
    return m;
  }
  for (int i = 0; i < warmup; ++i) step();
  backend.synchronize();
  CachingAllocator& alloc = CachingAllocator::for_device(gpu);
  alloc.reset_peak();
  const uint64_t launches_before = backend.launch_count();
  // Marks on the stream between steps and one synchronize at the end: the host keeps enqueuing
  // the next step while the GPU runs this one, as in training, and each interval is one step.
  std::vector<StreamMark> marks = {backend.mark_stream()};
  for (int i = 0; i < steps; ++i) {
    step();
    marks.push_back(backend.mark_stream());
  }
  backend.synchronize();
  std::vector<double> ms;
  for (int i = 0; i < steps; ++i) ms.push_back(backend.elapsed_ms(marks[i], marks[i + 1]));
  for (StreamMark mark : marks) backend.destroy_mark(mark);
  GpuMeasured m;
  m.launches_per_step = double(backend.launch_count() - launches_before) / steps;
  // A graph's working set sits in its pool (freed during the capture, reserved for replays).
  m.peak_mib = (alloc.peak_in_use_bytes() + alloc.pooled_bytes()) / double(1 << 20);
  std::sort(ms.begin(), ms.end());
  m.ms_median = ms[ms.size() / 2];
  m.images_per_s = o.batch / (m.ms_median / 1000.0);
  m.graph_nodes = graph.nodes();
  graph.reset();  // the cost model records an eager step's calls
  m.cost = measure_step_cost(gpu, eager_step);
  return m;
}

// The measured step as a fraction of the cost model's ideal time.
std::string fraction_of_ideal(const GpuMeasured& m) {
  if (m.ms_median <= 0) return "n/a";
  return format_fixed(100.0 * m.cost.totals.ideal_seconds * 1e3 / m.ms_median, 1) + "%";
}

// One measured row, printed and flushed at once: "[preresnet20] kdlab native: ...".
void print_row_now(const std::string& arch, const std::string& what, const std::string& text) {
  std::cout << "[" << arch << "] " << what << ": " << text << std::endl;
}

std::string describe_torch_row(const nlohmann::json& r) {
  const std::string status = r.value("status", "?");
  if (status != "ok" || !r.contains("ms_per_step_median")) return status;
  std::string text = format_fixed(r.value("ms_per_step_median", 0.0), 3) + " ms/step, " +
                     format_fixed(r.value("images_per_s", 0.0), 0) + " img/s";
  if (r.contains("peak_mem_mib")) text += ", peak " + format_fixed(r.value("peak_mem_mib", 0.0), 1) + " MiB";
  if (r.contains("compile_s")) text += ", compiled in " + format_fixed(r.value("compile_s", 0.0), 1) + " s";
  if (r.contains("distill_over_student"))
    text += ", " + format_fixed(r.value("distill_over_student", 0.0), 2) + "x a student step";
  return text;
}

// PyTorch's rows for one model, keyed by variant ("eager", "channels_last", "compile",
// "distill"); a variant that failed or is unavailable carries its status only. Each row is
// printed as it arrives (tools/torch_gpu_bench.py flushes one JSON line per variant); the
// script's progress notes go to our stderr.
std::map<std::string, nlohmann::json> time_torch_gpu(const std::string& python,
                                                     const std::string& arch,
                                                     const BenchOptions& o, bool distill) {
  std::ostringstream cmd;
  cmd << python << " " KDLAB_SOURCE_DIR "/tools/torch_gpu_bench.py --model " << arch
      << " --classes " << classes_for(arch) << " --batch " << o.batch << " --steps "
      << (o.steps > 0 ? o.steps : 200) << " --warmup " << (o.warmup >= 0 ? o.warmup : 20)
      << " --variant eager --variant channels_last --variant compile"
      << (runtime_config().math.tf32 ? " --tf32" : "")  // the same maths on both sides
      << (runtime_config().precision == Precision::Bf16 ? " --bf16" : "")
      << (distill ? " --variant distill --teachers " + std::to_string(kDistillTeachers) +
                        " --tau 4"
                  : "");
  std::map<std::string, nlohmann::json> rows;
  std::fflush(nullptr);  // the child shares our stdout and stderr
  FILE* pipe = popen(cmd.str().c_str(), "r");
  if (!pipe) return rows;
  char* buf = nullptr;
  size_t cap = 0;
  while (getline(&buf, &cap, pipe) != -1) {
    auto j = nlohmann::json::parse(buf, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("variant") || !j["variant"].is_string())
      continue;
    const std::string variant = j["variant"].get<std::string>();
    print_row_now(arch, "PyTorch " + variant, describe_torch_row(j));
    rows[variant] = std::move(j);
  }
  std::free(buf);
  pclose(pipe);  // a failed variant is reported in its row; the others still count
  return rows;
}

bool torch_ok(const std::map<std::string, nlohmann::json>& rows, const std::string& variant) {
  auto it = rows.find(variant);
  return it != rows.end() && it->second.value("status", "") == "ok" &&
         it->second.contains("ms_per_step_median");
}
double torch_ms(const std::map<std::string, nlohmann::json>& rows, const std::string& variant,
                const char* key = "ms_per_step_median") {
  return rows.at(variant).value(key, 0.0);
}
std::string torch_status(const std::map<std::string, nlohmann::json>& rows,
                         const std::string& variant) {
  auto it = rows.find(variant);
  return it == rows.end() ? "not run" : it->second.value("status", "?");
}


}  // namespace

int run_bench_gpu(const BenchOptions& o) {
  const Device gpu = Device::cuda();
  std::vector<GpuPath> paths = {{GpuImpl::Native, GpuImpl::Native}};
  if (backend_of(gpu).has_cudnn) {
    paths.push_back({GpuImpl::Cudnn, GpuImpl::Cudnn});
    paths.push_back({GpuImpl::Cudnn, GpuImpl::Native});
  }
  std::string python = o.skip_torch || o.cost_only ? "" : torch_python(/*need_cuda=*/true);
  if (!o.skip_torch && !o.cost_only && python.empty())
    std::cout << "PyTorch with CUDA not found: printing kdlab's numbers alone\n";
  std::vector<std::string> models = o.models_given ? o.models
                                                   : std::vector<std::string>{"preresnet20",
                                                                              "preresnet56"};
  Table ours, theirs, summary;
  ours.header = {"model", "path", "ms/step", "img/s", "launches/step", "graph nodes",
                 "peak MiB"};
  for (const std::string& h : cost_header(/*gpu=*/false)) ours.header.push_back(h);
  ours.header.push_back("ideal / measured");
  std::string breakdowns;
  auto our_row = [&](const std::string& model, const std::string& path, const GpuMeasured& m) {
    std::vector<std::string> row = {model, path,
                                    o.cost_only ? "n/a" : format_fixed(m.ms_median, 3),
                                    o.cost_only ? "n/a" : format_fixed(m.images_per_s, 0),
                                    o.cost_only && m.graph_nodes ? "1"
                                                                 : format_fixed(m.launches_per_step, 0),
                                    m.graph_nodes ? std::to_string(m.graph_nodes) : "-",
                                    o.cost_only ? "n/a" : format_fixed(m.peak_mib, 1)};
    for (const std::string& cell : cost_cells(m.cost, /*gpu=*/false)) row.push_back(cell);
    row.push_back(fraction_of_ideal(m));
    ours.rows.push_back(std::move(row));
    if (o.breakdown)
      breakdowns += "\n" + model + " (" + path + "): the cost model per kernel, one step\n" +
                    cost_breakdown(m.cost, /*gpu=*/true).to_text();
  };
  theirs.header = {"model", "PyTorch variant", "ms/step", "img/s", "peak MiB", "status"};
  summary.header = {"model", "kdlab best", "vs eager best", "vs torch.compile",
                    "memory vs PyTorch"};
  std::string torch_version;
  auto describe_ours = [&](const GpuMeasured& m) {
    const std::string cost = format_fixed(m.cost.totals.bytes() / 1e6, 1) + " MB/step, ideal " +
                             format_fixed(m.cost.totals.ideal_seconds * 1e3, 3) + " ms" +
                             (m.graph_nodes ? ", " + std::to_string(m.graph_nodes) +
                                                  " nodes in the graph"
                                            : std::string());
    if (o.cost_only)
      return (m.graph_nodes ? std::string("1 graph launch/step (") +
                                  format_fixed(m.launches_per_step, 0) + " eager), "
                            : format_fixed(m.launches_per_step, 0) + " launches/step, ") +
             cost;
    return format_fixed(m.ms_median, 3) + " ms/step, " + format_fixed(m.images_per_s, 0) +
           " img/s, " + format_fixed(m.launches_per_step, 0) + " launches/step, peak " +
           format_fixed(m.peak_mib, 1) + " MiB, " + cost + " (" + fraction_of_ideal(m) + ")";
  };
  std::cout << "GPU training steps on " << device_name(gpu) << ", batch " << o.batch
            << "; each row as it is measured, the tables at the end" << std::endl;
  for (const std::string& arch : models) {
    std::cerr << "bench: " << arch << " on " << device_name(gpu) << " ...\n";
    const auto t0 = std::chrono::steady_clock::now();
    double best_ms = 0, best_peak = 0;
    std::string best_path;
    GpuPath best_gpu_path;
    bool best_graphed = false;
    for (const GpuPath& gpu_path : paths)
      for (bool graphed : {false, true}) {
        GpuMeasured m = time_gpu_step(arch, gpu_path, 0, graphed, o);
        const std::string path = gpu_path.name() + (graphed ? "+graph" : "");
        print_row_now(arch, "kdlab " + path, describe_ours(m));
        our_row(arch, path, m);
        if (best_path.empty() || m.ms_median < best_ms) {
          best_ms = m.ms_median, best_peak = m.peak_mib, best_path = path;
          best_gpu_path = gpu_path;
          best_graphed = graphed;
        }
      }
    const bool distill = arch == "preresnet56" && !o.cost_only;  // a timing goal
    double student_ms = best_ms;
    GpuMeasured dm;
    if (distill) {
      dm = time_gpu_step(arch, best_gpu_path, kDistillTeachers, best_graphed, o);
      const std::string row =
          "distill (" + std::to_string(kDistillTeachers) + " teachers, cached logits)";
      print_row_now(arch, "kdlab " + row + " " + best_path, describe_ours(dm));
      our_row(arch + " " + row, best_path, dm);
    }
    auto seconds = [&] {
      return format_fixed(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1);
    };
    if (python.empty()) {
      print_row_now(arch, "done", seconds() + " s");
      continue;
    }
    auto rows = time_torch_gpu(python, arch, o, distill);
    for (const char* v : {"eager", "channels_last", "compile", "distill"}) {
      if (!rows.count(v)) continue;
      const nlohmann::json& r = rows[v];
      if (torch_version.empty()) torch_version = r.value("torch_version", "");
      bool ok = torch_ok(rows, v);
      theirs.rows.push_back({arch, v, ok ? format_fixed(torch_ms(rows, v), 3) : "n/a",
                             ok ? format_fixed(r.value("images_per_s", 0.0), 0) : "n/a",
                             ok && r.contains("peak_mem_mib")
                                 ? format_fixed(r.value("peak_mem_mib", 0.0), 1)
                                 : "n/a",
                             r.value("status", "?")});
    }
    std::string vs_eager = "n/a", vs_compile = "n/a", vs_mem = "n/a";
    double eager_best = 0, eager_peak = 0;
    for (const char* v : {"eager", "channels_last"})
      if (torch_ok(rows, v) && (eager_best == 0 || torch_ms(rows, v) < eager_best)) {
        eager_best = torch_ms(rows, v);
        eager_peak = rows[v].value("peak_mem_mib", 0.0);
      }
    if (eager_best > 0) vs_eager = format_fixed(eager_best / best_ms, 2) + "x faster";
    if (torch_ok(rows, "compile"))
      vs_compile = format_fixed(torch_ms(rows, "compile") / best_ms, 2) + "x faster";
    else
      vs_compile = torch_status(rows, "compile");
    if (eager_peak > 0) vs_mem = format_fixed(best_peak / eager_peak, 2) + "x of eager's peak";
    summary.rows.push_back({arch, best_path, vs_eager, vs_compile, vs_mem});
    print_row_now(arch, "kdlab " + best_path + " vs PyTorch",
                  "eager best " + vs_eager + ", torch.compile " + vs_compile + ", memory " + vs_mem);
    if (distill) {
      std::string torch_ratio = "n/a";
      if (torch_ok(rows, "distill") && rows["distill"].contains("distill_over_student"))
        torch_ratio = format_fixed(rows["distill"].value("distill_over_student", 0.0), 2) + "x";
      summary.rows.push_back({arch + " distill step / student step",
                              format_fixed(dm.ms_median / student_ms, 2) + "x", "PyTorch: " + torch_ratio,
                              "", ""});
    }
    print_row_now(arch, "done", seconds() + " s");
  }
  std::cout << "\nGPU training-step time on " << device_name(gpu) << ", batch "
            << o.batch << ", "
            << (runtime_config().precision == Precision::Bf16
                    ? "--precision bf16 (bf16 activations, fp32 maths in each op)"
                    : "fp32")
            << " (TF32 "
            << (runtime_config().math.tf32 ? "on" : "off") << ", cuDNN algorithms "
            << (runtime_config().math.find ? "timed once per shape, --cudnn-find"
                                           : "by heuristic; --cudnn-find times them")
            << "), median of " << (o.steps > 0 ? o.steps : 200) << " steps\n"
            << "kdlab (paths: native = our kernels, cudnn = cuDNN's convolutions and batch norms, "
               "cudnn-conv = cuDNN's convolutions with our batch norms; "
               "launches: kernels, copies and cuBLAS/cuDNN calls issued per step; "
               "+graph: the step captured once as a CUDA graph and replayed, graph nodes: what "
               "one replay runs; peak: our caching allocator's bytes in use)\n"
            << ours.to_text()
            << cost_model_footnote(runtime_config().math.tf32)
            << breakdowns;
  if (!theirs.rows.empty())
    std::cout << "\nPyTorch " << torch_version
              << " (cudnn.benchmark on, TF32 " << (runtime_config().math.tf32 ? "on" : "off")
              << (runtime_config().precision == Precision::Bf16 ? ", autocast to bfloat16" : "")
              << "; peak: max_memory_allocated)\n"
              << theirs.to_text() << "\nkdlab against PyTorch (time ratios >1 mean kdlab is "
              << "faster)\n"
              << summary.to_text();
  return 0;
}

}  // namespace apps
}  // namespace kd
