// Experiment presets: one per paper figure that this engine can run offline. `fmnist-study` is
// the main job of `make run`: the paper's positive control (Fig. 2) and ensemble distillation
// on Fashion-MNIST with LeNet-5.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"

namespace kd {
namespace apps {

struct StudyOptions {
  std::string out;       // run directory; empty = runs/<preset>-<timestamp>
  std::string data_dir;  // Fashion-MNIST IDX files; empty = the Debian package's location
  uint64_t seed = 0;
  Device device = Device::cpu();
  bool quick = false;  // a minutes-to-seconds version for tests: tiny epochs and subsets
};

std::vector<std::string> preset_names();
// Runs the preset, writes its run directory and prints its table. Returns the process exit code.
int run_preset(const std::string& name, const StudyOptions& options);

}  // namespace apps
}  // namespace kd
