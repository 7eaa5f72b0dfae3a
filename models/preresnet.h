// PreResNet as in the paper's code (a port of bearpaw's pytorch-classification):
//   stem conv3x3(in -> 16), stages of 16/32/64 planes (stride 1, 2, 2), head BN -> ReLU ->
//   AvgPool(8) -> Linear. Depth < 44: basic blocks, (depth-2)/6 per stage; depth >= 44:
//   bottleneck blocks (expansion 4), (depth-2)/9 per stage. The shortcut 1x1 conv (no bias, no BN)
//   is applied to the block's RAW input whenever stride != 1 or channels change; its name is
//   "downsample.0" because the code wraps it in an nn.Sequential.
// Init: conv weights N(0, sqrt(2 / (k*k*out))), norm gamma 1 beta 0, Linear PyTorch default.
// norm = "batch" (the paper) or "group" (GroupNorm(1, C), the LayerNorm ResNet of Fig. 6).
#pragma once
#include <vector>

#include "engine/nn/layers.h"
#include "models/classifier.h"

namespace kd {
namespace models {

class PreActBlock : public nn::Module {
 public:
  PreActBlock(int inplanes, int planes, int stride, bool bottleneck, bool group_norm,
              nn::Initializer& init);
  Tensor forward(const Tensor& x);
  int out_planes() const { return out_planes_; }

 private:
  std::vector<std::shared_ptr<nn::NormLayer>> norms_;
  std::vector<std::shared_ptr<nn::Conv2d>> convs_;
  std::shared_ptr<nn::Conv2d> downsample_;
  int out_planes_;
};

class PreResNet : public Classifier {
 public:
  PreResNet(int depth, int num_classes, int in_channels, bool group_norm, uint64_t seed);
  Tensor forward(const Tensor& x) override;
  // The stage outputs are the raw outputs of layer1, layer2 and layer3 (the last block's residual
  // sum, before the next block's or the head's BN -> ReLU): the "preacts" the paper's Table 1
  // code compares. In a pre-activation net these are the tensors the stages hand on; the
  // following BN -> ReLU belongs to the next consumer.
  bool has_stages() const override { return true; }
  std::vector<Tensor> forward_stages(const Tensor& x, Tensor* logits) override;
  int depth() const { return depth_; }

 private:
  // The forward pass; when `stages` is given, each stage's output pooled over H, W goes there.
  Tensor run(const Tensor& x, std::vector<Tensor>* stages);

  int depth_;
  std::shared_ptr<nn::Conv2d> stem_;
  std::vector<std::shared_ptr<PreActBlock>> blocks_;
  std::vector<std::string> block_names_;  // "layer1.0", ...: NVTX range names
  std::vector<size_t> stage_ends_;         // index of each stage's last block in blocks_
  std::shared_ptr<nn::NormLayer> head_norm_;
  std::shared_ptr<nn::Linear> fc_;
};

}  // namespace models
}  // namespace kd
