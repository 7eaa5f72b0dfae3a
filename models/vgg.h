// VGG-16 without batch norm, as in the paper's code (models/vgg.py; paper-notes §2): convs
// 64,64,M,128,128,M,256x3,M,512x3,M,512x3,M (3x3, pad 1, bias, ReLU; M = MaxPool 2) for 32x32
// inputs, then Dropout(0.5) -> FC512 -> ReLU -> Dropout(0.5) -> FC512 -> ReLU -> FC(C).
// Init: conv weights N(0, sqrt(2 / (9 * out))), conv biases 0; Linear PyTorch default.
// Names follow the code's two nn.Sequentials: features.<i>.{weight,bias} with i the conv's index
// in `features` (ReLU and MaxPool take indices too: 0, 2, 5, 7, 10, ..., 28) and
// classifier.{1,4,6}.{weight,bias}. The input channel count is the dataset's.
#pragma once
#include <memory>
#include <vector>

#include "engine/nn/layers.h"
#include "models/classifier.h"

namespace kd {
namespace models {

class Vgg16 : public Classifier {
 public:
  Vgg16(int num_classes, int in_channels, uint64_t seed);
  Tensor forward(const Tensor& x) override;

 private:
  // One entry per item of the configuration: a conv (followed by ReLU), or nullptr for a max-pool.
  std::vector<std::shared_ptr<nn::Conv2d>> features_;
  std::shared_ptr<nn::Dropout> drop1_, drop2_;
  std::shared_ptr<nn::Linear> fc1_, fc2_, fc3_;
};

}  // namespace models
}  // namespace kd
