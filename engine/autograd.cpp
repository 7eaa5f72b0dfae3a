// Tape implementation (see autograd.h).
#include "engine/autograd.h"

#include <unordered_set>

#include "engine/profile.h"

namespace kd {

namespace {
struct TapeNode {
  const char* name;
  std::vector<const TensorImpl*> inputs;  // kept alive by the closure's captures
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

void record_node(const char* name, const std::vector<Tensor>& inputs, std::vector<Tensor> outputs,
                 std::function<void()> backward) {
  std::vector<const TensorImpl*> input_impls;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) input_impls.push_back(&t.impl());
  for (Tensor& out : outputs) out.impl().requires_grad = true;
  t_tape.push_back(TapeNode{name, std::move(input_impls), std::move(outputs), std::move(backward)});
}

void backward(const Tensor& loss) {
  KD_CHECK(loss.numel() == 1, "backward() needs a one-element loss, got " << describe(loss));
  KD_CHECK(loss.requires_grad(), "backward(): the loss does not depend on any tensor that "
                                 "requires grad (was it computed under NoGradGuard?)");
  // Which nodes the loss depends on: walking the tape backwards, a node is needed when one of its
  // outputs is the loss or an input of a needed node.
  std::unordered_set<const TensorImpl*> live = {&loss.impl()};
  std::vector<bool> needed(t_tape.size(), false);
  for (size_t i = t_tape.size(); i-- > 0;) {
    for (const Tensor& out : t_tape[i].outputs)
      if (live.count(&out.impl())) needed[i] = true;
    if (needed[i]) live.insert(t_tape[i].inputs.begin(), t_tape[i].inputs.end());
  }
  std::vector<TapeNode> kept;
  for (size_t i = 0; i < t_tape.size(); ++i)
    if (!needed[i]) kept.push_back(std::move(t_tape[i]));
  std::vector<TapeNode> run;
  for (size_t i = 0; i < t_tape.size(); ++i)
    if (needed[i]) run.push_back(std::move(t_tape[i]));
  t_tape = std::move(kept);

  Tensor seed = Tensor(loss).grad_or_zeros();
  seed.fill_(1.0);
  // Pop as we go, so captured activations are released early and an exception leaves no
  // half-run node behind.
  while (!run.empty()) {
    TapeNode node = std::move(run.back());
    run.pop_back();
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
