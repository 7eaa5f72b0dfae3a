// Training-step benchmark (see bench.h). One step = forward, cross-entropy, backward, SGD-Nesterov
// update, on a fixed random batch; we report the median step time over `steps` timed steps.
// This file is the CPU side; --device cuda (or auto on a GPU machine) goes to bench_gpu.cpp.
#include "apps/bench.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "apps/bench_cost.h"
#include "apps/report.h"
#include "engine/runtime_config.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "base/philox.h"
#include "models/classifier.h"

#ifndef KDLAB_SOURCE_DIR
#define KDLAB_SOURCE_DIR "."
#endif

namespace kd {
namespace apps {

namespace {

struct Measured {
  double images_per_s = 0, ms_median = 0;
  StepCost cost;
};

Measured time_ours(const std::string& arch, const BenchOptions& o) {
  bool lenet = arch == "lenet5";
  int classes = lenet ? 10 : 100, channels = lenet ? 1 : 3, size = lenet ? 28 : 32;
  auto model = models::make_model(arch, classes, channels, 0);
  model->train();
  BenchBatch b = bench_batch(o.batch, channels, size, classes, Device::cpu());
  Tensor x = b.images, y = b.labels;
  SgdParams h;
  h.lr = 0.01, h.momentum = 0.9, h.nesterov = true, h.weight_decay = 1e-4;
  Sgd sgd(model->parameters(), h);
  auto step = [&] {
    Tensor loss = ops::cross_entropy(model->forward(x), y);
    sgd.zero_grad();
    backward(loss);
    sgd.step();
  };
  Measured m;
  if (!o.cost_only) {
    std::vector<double> ms;
    for (int i = 0; i < o.warmup + o.steps; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      step();
      double dt =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (i >= o.warmup) ms.push_back(dt);
    }
    std::sort(ms.begin(), ms.end());
    m.ms_median = ms[ms.size() / 2];
    m.images_per_s = o.batch / (m.ms_median / 1000.0);
  } else {
    step();  // the first step allocates the gradients; the recorded one is a steady step
  }
  m.cost = measure_step_cost(Device::cpu(), step);
  return m;
}

bool time_torch(const std::string& python, const std::string& arch, const BenchOptions& o,
                Measured* out, std::string* version) {
  std::string cmd = python + " " KDLAB_SOURCE_DIR "/tools/torch_cpu_bench.py --model " + arch +
                    " --batch " + std::to_string(o.batch) + " --threads " +
                    std::to_string(o.threads) + " --steps " + std::to_string(o.steps) +
                    " --warmup " + std::to_string(o.warmup) +
                    (runtime_config().precision == Precision::Bf16 ? " --bf16" : "") +
                    " 2>/dev/null";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return false;
  std::string text;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) text.append(buf, n);
  if (pclose(pipe) != 0) return false;
  auto nl = text.find_last_of('{');
  if (nl == std::string::npos) return false;
  auto j = nlohmann::json::parse(text.substr(nl), nullptr, false);
  if (j.is_discarded() || !j.contains("images_per_s")) return false;
  out->images_per_s = j["images_per_s"].get<double>();
  out->ms_median = j.value("ms_per_step_median", 0.0);
  *version = j.value("torch_version", "?");
  return true;
}

}  // namespace

BenchBatch bench_batch(int batch, int channels, int size, int classes, Device device,
                       uint64_t pixel_key) {
  std::vector<float> pixels(size_t(batch) * channels * size * size);
  for (size_t i = 0; i < pixels.size(); ++i)
    pixels[i] = 2.0f * philox_uniform(pixel_key, kStreamTest, i) - 1.0f;
  std::vector<int32_t> labels(batch);
  for (int i = 0; i < batch; ++i) labels[i] = int32_t(philox_below(2, kStreamTest, i, classes));
  return {Tensor::from_vector<float>({batch, channels, size, size}, pixels).to(device),
          Tensor::from_vector<int32_t>({batch}, labels).to(device)};
}

std::string torch_python(bool need_cuda) {
  // The GPU machine's python3 is the one with CUDA PyTorch; Debian's is the CPU baseline here.
  const char* order[2] = {"/usr/bin/python3", "python3"};
  if (need_cuda) std::swap(order[0], order[1]);
  const std::string probe =
      need_cuda ? "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
                : "import torch";
  for (const char* py : order) {
    std::string cmd = std::string(py) + " -c '" + probe + "' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return "";
}

int run_bench(const BenchOptions& options) {
  BenchOptions o = options;
  KD_INPUT_CHECK(o.batch >= 1 && (o.steps == -1 || o.steps >= 1) && o.warmup >= -1 &&
                     o.threads >= 1 && o.threads <= kMaxThreads,
                 "bench: --batch, --steps and --threads must be positive (--threads at most "
                     << kMaxThreads << ")");
  for (const std::string& arch : o.models) {  // refused before anything is timed
    try {
      models::make_model(arch, 10, 1, 0);
    } catch (const InputError& e) {
      throw InputError(std::string("--model: ") + e.what());
    }
  }
  if (parse_device(o.device).is_cuda()) return run_bench_gpu(o);
  if (o.steps < 0) o.steps = 30;
  if (o.warmup < 0) o.warmup = 5;
  std::string python = o.skip_torch || o.cost_only ? "" : torch_python(/*need_cuda=*/false);
  if (!o.skip_torch && !o.cost_only && python.empty())
    std::cout << "PyTorch (python3-torch) not found: printing kdlab's numbers alone\n";
  Table table;
  table.header = {"model (train step)", "batch"};
  if (!o.cost_only)
    for (const char* h : {"kdlab ms", "PyTorch ms", "kdlab / PyTorch", "kdlab img/s"})
      table.header.push_back(h);
  for (const std::string& h : cost_header(/*gpu=*/false)) table.header.push_back(h);
  std::string torch_version, breakdowns;
  for (const std::string& arch : o.models) {
    std::cerr << "bench: " << arch << " ...\n";
    Measured ours = time_ours(arch, o);
    Measured theirs;
    bool have = !python.empty() && time_torch(python, arch, o, &theirs, &torch_version);
    std::vector<std::string> row = {arch, std::to_string(o.batch)};
    if (!o.cost_only) {
      row.push_back(format_fixed(ours.ms_median, 2));
      row.push_back(have ? format_fixed(theirs.ms_median, 2) : "n/a");
      // Speed ratio: PyTorch's time over ours, so above 1 means kdlab is faster.
      row.push_back(have ? format_fixed(theirs.ms_median / ours.ms_median, 2) + "x" : "n/a");
      row.push_back(format_fixed(ours.images_per_s, 0));
    }
    for (const std::string& cell : cost_cells(ours.cost, /*gpu=*/false)) row.push_back(cell);
    table.rows.push_back(std::move(row));
    if (o.breakdown)
      breakdowns += "\n" + arch + ": the cost model per kernel, one training step\n" +
                    cost_breakdown(ours.cost, /*gpu=*/false).to_text();
  }
  std::cout << "\nCPU training step, " << o.threads << " threads, --cpu-conv "
            << cpu_conv_name(runtime_config().cpu_conv) << ", --precision "
            << precision_name(runtime_config().precision);
  if (!o.cost_only)
    std::cout << ", median of " << o.steps << " steps after " << o.warmup << " warm-up"
              << (torch_version.empty() ? "" : ", PyTorch " + torch_version);
  std::cout << "\n" << table.to_text()
            << cost_model_footnote(/*tensor_cores=*/false)
            << breakdowns;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::cout << "peak resident memory of this benchmark process: "
            << format_fixed(ru.ru_maxrss / 1024.0, 1)
            << " MiB (the main job, `make run`, prints its own when it ends)\n";
  return 0;
}

}  // namespace apps
}  // namespace kd
