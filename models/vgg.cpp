// VGG-16 (see vgg.h).
#include "models/vgg.h"

#include <cmath>
#include <string>

#include "engine/nn/bf16_weights.h"
#include "engine/ops.h"
#include "engine/profile.h"
#include "models/registry.h"

namespace kd {
namespace models {

namespace {
constexpr int kPool = 0;  // "M" in the configuration
constexpr int kConfig[] = {64,  64,  kPool, 128, 128, kPool, 256, 256, 256, kPool,
                           512, 512, 512,   kPool, 512, 512, 512, kPool};
constexpr double kDropout = 0.5;
}  // namespace

Vgg16::Vgg16(int classes, int channels, uint64_t seed) {
  arch = "vgg16";
  num_classes = classes;
  in_channels = channels;
  image_size = 32;
  nn::Initializer init(seed);
  // Module indices as nn.Sequential numbers them: a conv and its ReLU take two, a pool one.
  auto features = std::make_shared<nn::Container>();
  int index = 0, in = channels;
  for (int v : kConfig) {
    if (v == kPool) {
      features_.push_back(nullptr);
      index += 1;
      continue;
    }
    auto conv = std::make_shared<nn::Conv2d>(in, v, 3, 1, 1, true, init);
    init.normal(conv->weight, 0.0, std::sqrt(2.0 / (9.0 * v)));
    conv->bias.fill_(0.0);
    features->add(std::to_string(index), conv);
    features_.push_back(conv);
    index += 2;
    in = v;
  }
  register_module("features", features);
  // Dropouts are children too (no state-dict entries), so train() and set_step() reach them;
  // the model's seed with a layer id of their own keys their masks.
  auto classifier = std::make_shared<nn::Container>();
  drop1_ = classifier->add("0", std::make_shared<nn::Dropout>(kDropout, seed, 0));
  fc1_ = classifier->add("1", std::make_shared<nn::Linear>(512, 512, init));
  drop2_ = classifier->add("3", std::make_shared<nn::Dropout>(kDropout, seed, 1));
  fc2_ = classifier->add("4", std::make_shared<nn::Linear>(512, 512, init));
  fc3_ = classifier->add("6", std::make_shared<nn::Linear>(512, classes, init));
  register_module("classifier", classifier);
}

Tensor Vgg16::forward(const Tensor& x) {
  KD_CHECK(x.dim() == 4 && x.size(1) == in_channels && x.size(2) == 32 && x.size(3) == 32,
           "vgg16: expected input [n, " << in_channels << ", 32, 32], got " << describe(x));
  Tensor h = enter_precision(x);
  const nn::Bf16WeightCopies weights(*this, h);  // bf16: every weight cast in one launch
  {
    profile::Range range("features");
    for (const auto& conv : features_)
      h = conv ? ops::relu(conv->forward(h)) : ops::max_pool2d(h, 2, 2);
  }
  profile::Range range("classifier");
  h = ops::flatten(h);  // [n, 512, 1, 1] -> [n, 512]
  h = ops::relu(fc1_->forward(drop1_->forward(h)));
  h = ops::relu(fc2_->forward(drop2_->forward(h)));
  return leave_precision(fc3_->forward(h), x);
}

ModelEntry vgg16_model_entry() {
  ModelEntry e;
  e.name = "vgg16";
  e.help = "VGG-16 without batch norm for 32x32 images, dropout 0.5 in the classifier "
           "(15,291,300 parameters for 100 classes)";
  e.build = [](const std::string&, int classes, int channels, uint64_t seed) {
    return std::shared_ptr<Classifier>(std::make_shared<Vgg16>(classes, channels, seed));
  };
  return e;
}

}  // namespace models
}  // namespace kd
