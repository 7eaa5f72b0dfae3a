// The model interface the experiment layer sees, and the one factory that builds a model from
// its name: "lenet5", "preresnet<depth>" (e.g. preresnet20, preresnet56) and
// "preresnet<depth>-ln" (group-norm variant: GroupNorm(1, C) in place of every BatchNorm).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/nn/module.h"

namespace kd {
namespace models {

class Classifier : public nn::Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;  // images [n, c, h, w] -> logits [n, classes]
  std::string arch;
  int num_classes = 0;
  int in_channels = 0;
  int image_size = 0;  // the input height = width the architecture expects
};

std::shared_ptr<Classifier> make_model(const std::string& arch, int num_classes, int in_channels,
                                       uint64_t seed);

}  // namespace models
}  // namespace kd
