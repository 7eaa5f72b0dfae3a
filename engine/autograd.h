// The tape. While grad mode is on, every differentiable op whose inputs need gradients appends a
// node (name, inputs, outputs, backward closure) to a thread-local tape. Creation order is a
// topological order, so backward(loss) is one reverse loop over the nodes the loss depends on
// (found through each node's inputs); each node is freed as soon as it has run, releasing the
// activations it captured. Nodes the loss does not depend on stay on the tape, in order, for their
// own backward call. Gradients always accumulate (+=) into Tensor::grad.
#pragma once
#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace kd {

bool grad_enabled();

// Turns recording off for its scope (teachers run under it, evaluation too).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when an op on these inputs must record: grad mode on and some input requires grad.
bool should_record(std::initializer_list<Tensor> inputs);

// Marks the outputs as requiring grad and appends the node. `inputs` are the tensors whose
// gradients `backward` may write (undefined ones are ignored); they tell backward(loss) which
// earlier nodes this one depends on. `backward` runs only if at least one output received a
// gradient; it reads output.grad() and accumulates into inputs' grad_or_zeros().
void record_node(const char* name, const std::vector<Tensor>& inputs, std::vector<Tensor> outputs,
                 std::function<void()> backward);

// d(loss)/d(loss) = 1, then the reverse loop over the nodes `loss` depends on; those leave the
// tape, unrelated nodes (another loss's graph) stay.
void backward(const Tensor& loss);

size_t tape_size();
void clear_tape();  // drops recorded nodes without running them (e.g. after an exception)

}  // namespace kd
