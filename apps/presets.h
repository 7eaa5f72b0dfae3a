// Experiment presets: one per paper figure that this engine can run offline, by name
// (`kdlab repro <preset>`). `fmnist-study` is the main job of `make run`: the paper's positive
// control (Fig. 2) and ensemble distillation on Fashion-MNIST with LeNet-5.
//
// To add a preset: a file apps/<name>.cpp that defines `PresetEntry <name>_preset_entry()` (name,
// one line of help, the function that runs it), and its name in KD_PRESETS below.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "engine/device.h"
#include "base/registry.h"

namespace kd {
namespace apps {

struct StudyOptions {
  std::string out;       // run directory; empty = runs/<preset>-<timestamp>
  std::string data_dir;  // the dataset's files; empty = the dataset's default folder
  uint64_t seed = 0;
  Device device = Device::cpu();
  bool quick = false;  // a minutes-to-seconds version for tests: tiny epochs and subsets
};

struct PresetEntry : RegistryEntry {
  std::string dataset;  // the dataset it runs on (--dataset must name it, when given)
  // Runs the preset, writes its run directory and prints its table; returns the exit code.
  std::function<int(const StudyOptions&)> run;
};

#define KD_PRESETS(X) X(fmnist_study)

#define KD_DECLARE_PRESET_ENTRY(name) PresetEntry name##_preset_entry();
KD_PRESETS(KD_DECLARE_PRESET_ENTRY)
#undef KD_DECLARE_PRESET_ENTRY

const Registry<PresetEntry>& preset_registry();

}  // namespace apps
}  // namespace kd
