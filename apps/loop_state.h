// The rolling state file of one resumable training loop (run directories keep it as
// last.safetensors): the model's state dict, the optimizer's buffers and step count, where the
// loop stands (epoch, batch within it, steps done, seconds spent) and the step losses of the
// unfinished epoch. Every random draw of a loop (shuffle, augmentation, MixUp, dropout) is keyed
// by the seed, the epoch and the step, so these counters are all the RNG state there is: a loop
// restarted from this file repeats the uninterrupted run bit for bit on the CPU.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/nn/module.h"
#include "engine/optim.h"

namespace kd {
namespace apps {

constexpr const char* kLoopStateFormat = "kdlab-loop-state-1";

struct LoopPosition {
  int epoch = 0;               // the epoch under way (0-based); == epochs when the loop finished
  int64_t step_in_epoch = 0;   // batches of that epoch already taken
  int64_t steps_done = 0;      // over the whole loop
  double seconds = 0;          // training time spent before this file was written
  std::vector<double> losses;  // the step losses of the epoch under way, and their batch sizes
  std::vector<int64_t> counts;
};

// What the file must agree with: a state written by a loop of another length or batching, or
// by another model or optimizer, is refused.
struct LoopShape {
  int epochs = 0;
  int64_t batches_per_epoch = 0;
  std::string label;  // e.g. "train lenet5"; named in errors
};

// Writes atomically (a kill mid-write leaves the previous file).
void save_loop_state(const std::string& path, const LoopShape& shape, const nn::Module& model,
                     const Optimizer& optimizer, const LoopPosition& position);

// Loads the model and the optimizer from `path` and returns the position. Every mismatch is a
// kd::InputError naming the file.
LoopPosition load_loop_state(const std::string& path, const LoopShape& shape, nn::Module& model,
                             Optimizer& optimizer);

// The epochs a state file says are finished (0 when there is no file): the rows of metrics.csv
// a resumed command keeps.
int finished_epochs(const std::string& path);

}  // namespace apps
}  // namespace kd
