// The training loop's --cuda-graph path (engine/step_graph.h): the loop's step (forward,
// backward, optimizer) runs once eagerly, which warms every cache; the next step of the same
// batch size is captured into a CUDA graph and replayed, and every later one copies its inputs
// into the tensors the capture read and replays the graph: one graph launch plus a copy per
// input instead of hundreds of launches. One capture per run. Host values the graph would freeze are handled:
//  - the learning rate (cosine, set once per epoch): SGD and Adam read it from a device scalar
//    (SgdParams::lr_device, AdamParams::lr_device) that set_lr fills, so the one graph serves
//    every epoch;
//  - Adam's step count (its bias correction): a device scalar the captured step advances
//    (AdamParams::step_device), so each replay reads its own;
//  - a batch of another size (an epoch's short last batch) runs eagerly;
//  - the optimizer's step counter advances by one per replay (SGD's first step, which fills the
//    momentum, is always the eager one);
//  - models whose forward draws per-step keys (dropout) are refused by check_graphable.
// Results are the eager loop's bit for bit: a replay runs the same kernels on the same inputs.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/nn/module.h"
#include "engine/optim.h"
#include "engine/step_graph.h"
#include "engine/tensor.h"

namespace kd {
namespace apps {

// An InputError naming --cuda-graph when `device` has no CUDA graphs, or (check_graphable) when
// this model's step cannot be replayed there.
void check_graph_device(Device device);
void check_graphable(const nn::Module& model, Device device);

class GraphedStep {
 public:
  // The whole step on these inputs; returns the loss (a device scalar).
  using Step = std::function<Tensor(const std::vector<Tensor>& inputs)>;
  GraphedStep(Device device, Optimizer& optimizer);

  // One training step on `inputs`. The returned loss is valid until the next call.
  Tensor run(const std::vector<Tensor>& inputs, const Step& step);

  int64_t captures() const { return captures_; }
  int64_t replays() const { return replays_; }
  int64_t eager_steps() const { return eager_; }
  int64_t nodes() const { return graph_.nodes(); }

 private:
  bool matches(const std::vector<Tensor>& inputs) const;
  StepGraph graph_;
  Optimizer& optimizer_;
  std::vector<Tensor> static_inputs_;  // what the captured step reads
  Tensor loss_;                        // what it writes
  bool warm_ = false;
  int64_t captures_ = 0, replays_ = 0, eager_ = 0;
};

}  // namespace apps
}  // namespace kd
