// LeNet-5 as in the paper's code: Conv(1->6, 5x5, pad 2) -> ReLU -> AvgPool2 -> Conv(6->16, 5x5)
// -> ReLU -> AvgPool2 -> Flatten(400) -> FC120 -> ReLU -> FC84 -> ReLU -> FC(C), PyTorch default
// init. It is one nn.Sequential there, so parameter names are the layer indices 0, 3, 7, 9, 11.
#pragma once
#include "models/classifier.h"
#include "engine/nn/layers.h"

namespace kd {
namespace models {

class LeNet5 : public Classifier {
 public:
  LeNet5(int num_classes, int in_channels, uint64_t seed);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<nn::Conv2d> conv1_, conv2_;
  std::shared_ptr<nn::Linear> fc1_, fc2_, fc3_;
};

}  // namespace models
}  // namespace kd
