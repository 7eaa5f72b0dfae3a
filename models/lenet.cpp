// LeNet-5 (see lenet.h).
#include "models/lenet.h"

#include "engine/nn/bf16_weights.h"
#include "engine/ops.h"
#include "engine/profile.h"
#include "models/registry.h"

namespace kd {
namespace models {

LeNet5::LeNet5(int classes, int channels, uint64_t seed) {
  arch = "lenet5";
  num_classes = classes;
  in_channels = channels;
  image_size = 28;
  nn::Initializer init(seed);
  conv1_ = register_module("0", std::make_shared<nn::Conv2d>(channels, 6, 5, 1, 2, true, init));
  conv2_ = register_module("3", std::make_shared<nn::Conv2d>(6, 16, 5, 1, 0, true, init));
  fc1_ = register_module("7", std::make_shared<nn::Linear>(400, 120, init));
  fc2_ = register_module("9", std::make_shared<nn::Linear>(120, 84, init));
  fc3_ = register_module("11", std::make_shared<nn::Linear>(84, classes, init));
}

Tensor LeNet5::forward(const Tensor& x) {
  KD_CHECK(x.dim() == 4 && x.size(1) == in_channels && x.size(2) == 28 && x.size(3) == 28,
           "lenet5: expected input [n, " << in_channels << ", 28, 28], got " << describe(x));
  Tensor h = enter_precision(x);
  const nn::Bf16WeightCopies weights(*this, h);  // bf16: every weight cast in one launch
  {
    profile::Range range("features");
    h = ops::avg_pool2d(ops::relu(conv1_->forward(h)), 2, 2);
    h = ops::avg_pool2d(ops::relu(conv2_->forward(h)), 2, 2);
  }
  profile::Range range("classifier");
  h = ops::flatten(h);
  h = ops::relu(fc1_->forward(h));
  h = ops::relu(fc2_->forward(h));
  return leave_precision(fc3_->forward(h), x);
}

ModelEntry lenet5_model_entry() {
  ModelEntry e;
  e.name = "lenet5";
  e.help = "LeNet-5 for 28x28 images (61,706 parameters for 10 classes)";
  e.build = [](const std::string&, int classes, int channels, uint64_t seed) {
    return std::shared_ptr<Classifier>(std::make_shared<LeNet5>(classes, channels, seed));
  };
  return e;
}

}  // namespace models
}  // namespace kd
