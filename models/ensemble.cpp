// Ensemble teacher (see ensemble.h).
#include "models/ensemble.h"

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/profile.h"

namespace kd {
namespace models {

Ensemble::Ensemble(std::vector<std::shared_ptr<Classifier>> members) : members_(std::move(members)) {
  KD_CHECK(!members_.empty(), "an ensemble needs at least one member");
  for (auto& m : members_) {
    KD_CHECK(m->num_classes == members_.front()->num_classes,
             "ensemble members disagree on the number of classes");
    m->eval();
  }
}

Tensor Ensemble::forward(const Tensor& x) const {
  NoGradGuard no_grad;
  profile::Range range("teacher forward");
  std::vector<Tensor> logits;
  logits.reserve(members_.size());
  for (auto& m : members_) {
    m->eval();
    logits.push_back(m->forward(x));
  }
  return ops::ensemble_logits(logits);
}

}  // namespace models
}  // namespace kd
