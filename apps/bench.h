// `kdlab bench`: training-step throughput of our engine, side by side with PyTorch on the same
// machine (tools/torch_cpu_bench.py, run with the python3 that has torch), and the ratio.
#pragma once
#include <string>
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
  std::string device = "auto";  // auto | cpu | cuda
};

int run_bench(const BenchOptions& options);
int run_bench_gpu(const BenchOptions& options);  // bench_gpu.cpp

}  // namespace apps
}  // namespace kd
