// The model interface the experiment layer sees, and the one factory that builds a model from
// its name (the names are those of models/registry.h: "lenet5", "preresnet<depth>[-ln]", ...).
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

// An InputError naming --model and the known names when `arch` is not one of them.
std::shared_ptr<Classifier> make_model(const std::string& arch, int num_classes, int in_channels,
                                       uint64_t seed);

}  // namespace models
}  // namespace kd
