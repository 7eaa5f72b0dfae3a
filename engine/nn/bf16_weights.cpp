// nn::Bf16WeightCopies (see bf16_weights.h).
#include "engine/nn/bf16_weights.h"

#include <vector>

#include "engine/ops.h"

namespace kd {
namespace nn {

namespace {
thread_local Bf16WeightCopies* t_innermost = nullptr;
}  // namespace

Bf16WeightCopies::Bf16WeightCopies(const Module& model, const Tensor& activations) {
  if (!activations.defined() || activations.dtype() != DType::BF16) return;
  std::vector<Tensor> weights;
  for (const Tensor& p : model.parameters())
    if (p.dim() >= 2 && (p.dtype() == DType::F32 || p.dtype() == DType::F64) &&
        p.device() == activations.device())
      weights.push_back(p);
  const std::vector<Tensor> copies = ops::cast_to_bf16(weights);
  for (size_t i = 0; i < weights.size(); ++i) copies_.emplace(weights[i].raw(), copies[i]);
  outer_ = t_innermost;
  t_innermost = this;
}

Bf16WeightCopies::~Bf16WeightCopies() {
  if (t_innermost == this) t_innermost = outer_;  // scopes end innermost first
}

const Tensor* Bf16WeightCopies::find(const Tensor& weight) {
  for (const Bf16WeightCopies* scope = t_innermost; scope; scope = scope->outer_) {
    const auto it = scope->copies_.find(weight.raw());
    if (it != scope->copies_.end()) return &it->second;
  }
  return nullptr;
}

}  // namespace nn
}  // namespace kd
