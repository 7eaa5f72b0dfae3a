// Tape implementation (see autograd.h).
#include "engine/autograd.h"

#include "engine/profile.h"

namespace kd {

namespace {
struct TapeNode {
  const char* name;
  std::vector<Tensor> outputs;
  std::function<void()> backward;
};
thread_local std::vector<TapeNode> t_tape;
thread_local bool t_grad_enabled = true;
}  // namespace

bool grad_enabled() { return t_grad_enabled; }

NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

bool should_record(std::initializer_list<Tensor> inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record_node(const char* name, std::vector<Tensor> outputs, std::function<void()> backward) {
  for (Tensor& out : outputs) out.impl().requires_grad = true;
  t_tape.push_back(TapeNode{name, std::move(outputs), std::move(backward)});
}

void backward(const Tensor& loss) {
  KD_CHECK(loss.numel() == 1, "backward() needs a one-element loss, got " << describe(loss));
  KD_CHECK(loss.requires_grad(), "backward(): the loss does not depend on any tensor that "
                                 "requires grad (was it computed under NoGradGuard?)");
  Tensor seed = Tensor(loss).grad_or_zeros();
  seed.fill_(1.0);
  // Pop as we go, so captured activations are released early and an exception leaves no
  // half-run node behind.
  while (!t_tape.empty()) {
    TapeNode node = std::move(t_tape.back());
    t_tape.pop_back();
    bool reached = false;
    for (const Tensor& out : node.outputs)
      if (out.impl().grad) reached = true;
    if (reached) {
      profile::Range range(node.name);
      node.backward();
    }
  }
}

size_t tape_size() { return t_tape.size(); }
void clear_tape() { t_tape.clear(); }

}  // namespace kd
