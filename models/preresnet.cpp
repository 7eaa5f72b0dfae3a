// PreResNet (see preresnet.h).
#include "models/preresnet.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>

#include "engine/nn/bf16_weights.h"
#include "engine/ops.h"
#include "engine/profile.h"
#include "models/registry.h"

namespace kd {
namespace models {

namespace {
// A named holder of children: nn.Sequential / the layer{1,2,3} stages in the code.
class Container : public nn::Module {
 public:
  void add(const std::string& name, std::shared_ptr<nn::Module> child) {
    register_module(name, std::move(child));
  }
};

std::shared_ptr<nn::NormLayer> make_norm(int channels, bool group) {
  if (group) return std::make_shared<nn::GroupNorm>(1, channels);
  return std::make_shared<nn::BatchNorm2d>(channels);
}

// The code's conv init, drawn over the default one: N(0, sqrt(2 / (k*k*out))).
std::shared_ptr<nn::Conv2d> he_conv(int in, int out, int kernel, int stride, int pad,
                                    nn::Initializer& init) {
  auto conv = std::make_shared<nn::Conv2d>(in, out, kernel, stride, pad, false, init);
  init.normal(conv->weight, 0.0, std::sqrt(2.0 / (double(kernel) * kernel * out)));
  return conv;
}
}  // namespace

PreActBlock::PreActBlock(int inplanes, int planes, int stride, bool bottleneck, bool group_norm,
                         nn::Initializer& init) {
  if (bottleneck) {
    out_planes_ = planes * 4;
    norms_ = {make_norm(inplanes, group_norm), make_norm(planes, group_norm),
              make_norm(planes, group_norm)};
    convs_ = {he_conv(inplanes, planes, 1, 1, 0, init), he_conv(planes, planes, 3, stride, 1, init),
              he_conv(planes, out_planes_, 1, 1, 0, init)};
  } else {
    out_planes_ = planes;
    norms_ = {make_norm(inplanes, group_norm), make_norm(planes, group_norm)};
    convs_ = {he_conv(inplanes, planes, 3, stride, 1, init), he_conv(planes, planes, 3, 1, 1, init)};
  }
  // Registration order is PyTorch's attribute order: bn1, conv1, bn2, conv2, (bn3, conv3),
  // downsample.
  for (size_t i = 0; i < convs_.size(); ++i) {
    register_module("bn" + std::to_string(i + 1), norms_[i]);
    register_module("conv" + std::to_string(i + 1), convs_[i]);
  }
  if (stride != 1 || inplanes != out_planes_) {
    downsample_ = he_conv(inplanes, out_planes_, 1, stride, 0, init);
    // nn.Sequential(conv) in the code: the conv is child "0" of "downsample".
    auto sequential = std::make_shared<Container>();
    sequential->add("0", downsample_);
    register_module("downsample", sequential);
  }
}

// The shortcut first, so that the last convolution adds it in its own kernel call
// (ops::conv2d's residual) instead of a separate add.
Tensor PreActBlock::forward(const Tensor& x) {
  const Tensor residual = downsample_ ? downsample_->forward(x) : x;
  Tensor out = x;
  for (size_t i = 0; i + 1 < convs_.size(); ++i)
    out = convs_[i]->forward(norms_[i]->forward_relu(out));
  return convs_.back()->forward(norms_.back()->forward_relu(out), residual);
}

PreResNet::PreResNet(int depth, int classes, int channels, bool group_norm, uint64_t seed)
    : depth_(depth) {
  bool bottleneck = depth >= 44;
  int per_stage = bottleneck ? (depth - 2) / 9 : (depth - 2) / 6;
  // 1202 is the deepest CIFAR ResNet published; a checkpoint's metadata claiming more would
  // allocate gigabytes of blocks before any tensor is checked.
  KD_INPUT_CHECK(depth <= 1202, "preresnet depth " << depth << ": expected at most 1202");
  KD_INPUT_CHECK(depth >= 8 && per_stage >= 1 && (depth - 2) % (bottleneck ? 9 : 6) == 0,
                 "preresnet depth " << depth << ": expected 6n+2 below 44 (e.g. 20, 32) or 9n+2 "
                                    << "from 44 (e.g. 56, 110)");
  arch = "preresnet" + std::to_string(depth) + (group_norm ? "-ln" : "");
  num_classes = classes;
  in_channels = channels;
  image_size = 32;
  nn::Initializer init(seed);
  stem_ = register_module("conv1", he_conv(channels, 16, 3, 1, 1, init));
  int inplanes = 16;
  const int planes[3] = {16, 32, 64};
  for (int stage = 0; stage < 3; ++stage) {
    auto layer = std::make_shared<Container>();
    for (int i = 0; i < per_stage; ++i) {
      int stride = (stage > 0 && i == 0) ? 2 : 1;
      auto block = std::make_shared<PreActBlock>(inplanes, planes[stage], stride, bottleneck,
                                                 group_norm, init);
      inplanes = block->out_planes();
      layer->add(std::to_string(i), block);
      blocks_.push_back(block);
      block_names_.push_back("layer" + std::to_string(stage + 1) + "." + std::to_string(i));
    }
    register_module("layer" + std::to_string(stage + 1), layer);
    stage_ends_.push_back(blocks_.size() - 1);
  }
  head_norm_ = register_module("bn", make_norm(inplanes, group_norm));
  fc_ = register_module("fc", std::make_shared<nn::Linear>(inplanes, classes, init));
}

Tensor PreResNet::forward(const Tensor& x) { return run(x, nullptr); }

std::vector<Tensor> PreResNet::forward_stages(const Tensor& x, Tensor* logits) {
  std::vector<Tensor> stages;
  Tensor out = run(x, &stages);
  if (logits) *logits = out;
  return stages;
}

Tensor PreResNet::run(const Tensor& x, std::vector<Tensor>* stages) {
  KD_CHECK(x.dim() == 4 && x.size(1) == in_channels && x.size(2) == 32 && x.size(3) == 32,
           arch << ": expected input [n, " << in_channels << ", 32, 32], got " << describe(x));
  Tensor h = enter_precision(x);
  const nn::Bf16WeightCopies weights(*this, h);  // bf16: every weight cast in one launch
  {
    profile::Range range("conv1");
    h = stem_->forward(h);
  }
  for (size_t i = 0; i < blocks_.size(); ++i) {
    profile::Range range(block_names_[i]);
    h = blocks_[i]->forward(h);
    if (stages && std::find(stage_ends_.begin(), stage_ends_.end(), i) != stage_ends_.end())
      stages->push_back(
          leave_precision(ops::flatten(ops::avg_pool2d(h, int(h.size(2)), int(h.size(2)))), x));
  }
  profile::Range range("head");
  h = head_norm_->forward_relu(h);
  h = ops::flatten(ops::avg_pool2d(h, 8, 8));
  return leave_precision(fc_->forward(h), x);
}

namespace {
// "preresnet<depth>" or "preresnet<depth>-ln": the depth, and whether it is the group-norm form;
// depth -1 when `arch` is not of this family.
std::pair<int, bool> parse_preresnet(const std::string& arch) {
  const std::string prefix = "preresnet";
  if (arch.compare(0, prefix.size(), prefix) != 0) return {-1, false};
  std::string rest = arch.substr(prefix.size());
  bool group_norm = false;
  if (rest.size() > 3 && rest.compare(rest.size() - 3, 3, "-ln") == 0) {
    group_norm = true;
    rest.resize(rest.size() - 3);
  }
  char* end = nullptr;
  long depth = std::strtol(rest.c_str(), &end, 10);
  if (rest.empty() || !end || *end != '\0' || depth < 0 || depth > 100000) return {-1, false};
  return {int(depth), group_norm};
}
}  // namespace

ModelEntry preresnet_model_entry() {
  ModelEntry e;
  e.name = "preresnet<depth>[-ln]";
  e.help = "pre-activation ResNet for 32x32 images, depth 6n+2 (20, 32) or 9n+2 (56, 110); "
           "-ln: GroupNorm(1, C) in place of BatchNorm";
  e.matches = [](const std::string& arch) { return parse_preresnet(arch).first >= 0; };
  e.build = [](const std::string& arch, int classes, int channels, uint64_t seed) {
    const std::pair<int, bool> p = parse_preresnet(arch);
    return std::shared_ptr<Classifier>(
        std::make_shared<PreResNet>(p.first, classes, channels, p.second, seed));
  };
  return e;
}

}  // namespace models
}  // namespace kd
