// The tape. While grad mode is on, every differentiable op whose inputs need gradients appends a
// node (name, outputs, backward closure) to a thread-local tape. Creation order is a topological
// order, so backward() is one reverse loop; each node is freed as soon as it has run, releasing
// the activations it captured. Gradients always accumulate (+=) into Tensor::grad.
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

// Marks the outputs as requiring grad and appends the node. `backward` runs only if at least one
// output received a gradient; it reads output.grad() and accumulates into inputs' grad_or_zeros().
void record_node(const char* name, std::vector<Tensor> outputs, std::function<void()> backward);

// d(loss)/d(loss) = 1, then the reverse loop over the whole tape; the tape is empty afterwards.
void backward(const Tensor& loss);

size_t tape_size();
void clear_tape();  // drops recorded nodes without running them (e.g. after an exception)

}  // namespace kd
