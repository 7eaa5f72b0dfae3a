// `kdlab bench`: training-step throughput of our engine, side by side with PyTorch on the same
// machine (tools/torch_cpu_bench.py, run with the python3 that has torch), and the ratio.
#pragma once
#include <string>
#include <vector>

namespace kd {
namespace apps {

struct BenchOptions {
  std::vector<std::string> models = {"lenet5", "preresnet20", "preresnet56"};
  int batch = 128;
  int steps = 30;
  int warmup = 5;
  int threads = 2;
  bool skip_torch = false;
};

int run_bench(const BenchOptions& options);

}  // namespace apps
}  // namespace kd
