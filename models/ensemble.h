// A teacher ensemble: members run in eval mode and the teacher logit is the log of the mean of
// member probabilities (paper §3). Temperature is NOT applied here: the distillation loss applies
// it afterwards, to these log-mean-prob logits, as the paper's code does.
#pragma once
#include <memory>
#include <vector>

#include "models/classifier.h"

namespace kd {
namespace models {

class Ensemble {
 public:
  explicit Ensemble(std::vector<std::shared_ptr<Classifier>> members);
  // Member logits under NoGradGuard in eval mode, reduced to [n, classes].
  Tensor forward(const Tensor& x) const;
  size_t size() const { return members_.size(); }
  const std::vector<std::shared_ptr<Classifier>>& members() const { return members_; }
  int num_classes() const { return members_.front()->num_classes; }

 private:
  std::vector<std::shared_ptr<Classifier>> members_;
};

}  // namespace models
}  // namespace kd
