// The layers the paper's models are made of, with PyTorch's parameter and buffer names.
// Initialisation is the caller's choice (models know their paper's scheme); constructors take an
// Initializer and apply PyTorch's default unless told otherwise.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "engine/nn/init.h"
#include "engine/nn/module.h"

namespace kd {
namespace nn {

// A named holder of children: nn.Sequential's naming ("features.0", "classifier.6") without its
// forward (the model calls its layers itself). Parameterless layers need not be added; those
// that hold state other than tensors (Dropout: training mode, step) should be, so train() and
// set_step() reach them.
class Container : public Module {
 public:
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> child) {
    return register_module(name, std::move(child));
  }
};

class Conv2d : public Module {
 public:
  Conv2d(int in, int out, int kernel, int stride, int pad, bool bias, Initializer& init);
  Tensor forward(const Tensor& x) const;
  Tensor forward(const Tensor& x, const Tensor& residual) const;  // conv(x) + residual
  Tensor weight, bias;  // weight [out, in, k, k] (OIHW); bias [out] or undefined
  int stride, pad;
};

class Linear : public Module {
 public:
  Linear(int in, int out, Initializer& init);
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;  // weight [out, in]
};

// Inverted dropout (ops::dropout) with probability p, active in training mode only. Its mask is
// keyed by (seed, step(), layer): the seed is fixed when the model is built, the step is set by
// the training loop (Module::set_step), and `layer` tells a model's dropouts apart. No
// parameters or buffers, so it adds nothing to the state dict.
class Dropout : public Module {
 public:
  Dropout(double p, uint64_t seed, uint32_t layer);
  Tensor forward(const Tensor& x) const;
  bool uses_step() const override { return p > 0; }
  double p;
  uint64_t seed;
  uint32_t layer;
};

// Either normalisation, so a model can swap BatchNorm for GroupNorm without renaming anything.
class NormLayer : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  // relu(forward(x)); batchnorm fuses the two into one pass forward and one backward.
  virtual Tensor forward_relu(const Tensor& x);
};

class BatchNorm2d : public NormLayer {
 public:
  explicit BatchNorm2d(int channels, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;
  Tensor forward_relu(const Tensor& x) override;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;  // last: i64, 0-d
  double eps, momentum;

 private:
  Tensor normalize(const Tensor& x, bool relu);  // counts the batch in training, then the op
};

// GroupNorm(groups, channels): PyTorch names weight/bias. GroupNorm(1, C) is the per-sample
// LayerNorm over (C, H, W) used for the paper's LayerNorm ResNet.
class GroupNorm : public NormLayer {
 public:
  GroupNorm(int groups, int channels, double eps = 1e-5);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  int groups;
  double eps;
};

}  // namespace nn
}  // namespace kd
