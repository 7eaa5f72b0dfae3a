// `kdlab bench`: training-step throughput of our engine, side by side with PyTorch on the same
// machine (tools/torch_cpu_bench.py, run with the python3 that has torch), and the ratio.
#pragma once
#include <string>

#include "engine/tensor.h"
#include <vector>

namespace kd {
namespace apps {

struct BenchOptions {
  std::vector<std::string> models = {"lenet5", "preresnet20", "preresnet56"};
  bool models_given = false;  // --model was given (the GPU default list differs)
  int batch = 128;
  int steps = -1;   // -1: 30 on the CPU, 200 on the GPU
  int warmup = -1;  // -1: 5 on the CPU, 20 on the GPU
  int threads = 2;
  bool skip_torch = false;
  bool cost_only = false;   // the cost model of one step, nothing timed
  bool breakdown = false;   // the cost model per kernel, for every model
  std::string device = "auto";  // auto | cpu | cuda
};

int run_bench(const BenchOptions& options);

// What both benchmarks share: the fixed random batch (pixels uniform in [-1, 1], labels uniform
// over the classes, from the test stream) on `device`, and the python3 that has PyTorch (with
// CUDA when need_cuda), or "" when none has. Another pixel_key gives other pixels.
struct BenchBatch {
  Tensor images, labels;
};
BenchBatch bench_batch(int batch, int channels, int size, int classes, Device device,
                       uint64_t pixel_key = 1);
std::string torch_python(bool need_cuda);
int run_bench_gpu(const BenchOptions& options);  // bench_gpu.cpp

}  // namespace apps
}  // namespace kd
