// The loop's CUDA graph path (see graphed_step.h).
#include "apps/graphed_step.h"

#include "base/check.h"

namespace kd {
namespace apps {

void check_graph_device(Device device) {
  KD_INPUT_CHECK(device.is_cuda(), "--cuda-graph: CUDA graphs need --device cuda, the run is on "
                                       << device.str());
  KD_INPUT_CHECK(StepGraph::supported(device),
                 "--cuda-graph: the GPU backend of " << device.str() << " has no CUDA graphs");
}

void check_graphable(const nn::Module& model, Device device) {
  check_graph_device(device);
  KD_INPUT_CHECK(!model.uses_step(), "--cuda-graph: the model draws dropout masks keyed by the "
                                     "step, which a replayed graph would freeze");
}

GraphedStep::GraphedStep(Device device, Optimizer& optimizer)
    : graph_(device), optimizer_(optimizer) {}

bool GraphedStep::matches(const std::vector<Tensor>& inputs) const {
  if (inputs.size() != static_inputs_.size()) return false;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() != static_inputs_[i].defined() ||
        (inputs[i].defined() && (inputs[i].shape() != static_inputs_[i].shape() ||
                                 inputs[i].dtype() != static_inputs_[i].dtype())))
      return false;
  return true;
}

Tensor GraphedStep::run(const std::vector<Tensor>& inputs, const Step& step) {
  if (!warm_ || (!graph_.captured() && !matches(inputs))) {
    // The first step fills the caches a capture must not grow, and its shapes are the ones the
    // next step of the same shapes captures (a run resumed at a short last batch warms again on
    // the first full one); after the capture, other shapes run eagerly.
    warm_ = true;
    static_inputs_.clear();
    for (const Tensor& t : inputs)
      static_inputs_.push_back(t.defined() ? Tensor::empty(t.shape(), t.dtype(), t.device())
                                           : Tensor());
    ++eager_;
    return step(inputs);
  }
  if (!matches(inputs)) {
    ++eager_;
    return step(inputs);
  }
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined()) static_inputs_[i].copy_from(inputs[i]);
  if (graph_.captured()) {
    graph_.replay();
    optimizer_.count_replayed_step();
    ++replays_;
    return loss_;
  }
  graph_.capture([&] { loss_ = step(static_inputs_); });
  ++captures_;
  // The capture ran nothing: this step's work is its first replay. The optimizer counted the
  // step when step() was captured.
  graph_.replay();
  return loss_;
}

}  // namespace apps
}  // namespace kd
