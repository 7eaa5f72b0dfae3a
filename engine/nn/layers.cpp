// Layer construction and forward passes (see layers.h).
#include "engine/nn/layers.h"

#include "engine/autograd.h"
#include "engine/nn/bf16_weights.h"
#include "engine/ops.h"
#include "engine/device.h"

namespace kd {
namespace nn {

Conv2d::Conv2d(int in, int out, int kernel, int stride_, int pad_, bool with_bias,
               Initializer& init)
    : stride(stride_), pad(pad_) {
  weight = Tensor::empty({out, in, kernel, kernel});
  init.torch_default(weight, int64_t(in) * kernel * kernel);
  register_parameter("weight", &weight);
  if (with_bias) {
    bias = Tensor::empty({out});
    init.torch_default(bias, int64_t(in) * kernel * kernel);
    register_parameter("bias", &bias);
  }
}

// The bf16 precision's weights: a bf16 input gets the bf16 copy of the fp32 master weight (its
// gradient comes back through the cast into the master's): the model's copy made for this
// forward (bf16_weights.h), else a cast of its own. The bias stays fp32: the kernels add it in
// fp32 before the output is rounded.
static Tensor weight_for(const Tensor& x, const Tensor& weight) {
  if (x.dtype() != DType::BF16) return weight;
  if (const Tensor* copy = Bf16WeightCopies::find(weight)) return *copy;
  return ops::cast(weight, DType::BF16);
}

Tensor Conv2d::forward(const Tensor& x) const {
  return ops::conv2d(x, weight_for(x, weight), bias, stride, pad);
}
Tensor Conv2d::forward(const Tensor& x, const Tensor& residual) const {
  return ops::conv2d(x, weight_for(x, weight), bias, stride, pad, residual);
}

Linear::Linear(int in, int out, Initializer& init) {
  weight = Tensor::empty({out, in});
  init.torch_default(weight, in);
  bias = Tensor::empty({out});
  init.torch_default(bias, in);
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
}

Tensor Linear::forward(const Tensor& x) const {
  return ops::linear(x, weight_for(x, weight), bias);
}

Dropout::Dropout(double p_, uint64_t seed_, uint32_t layer_) : p(p_), seed(seed_), layer(layer_) {
  KD_CHECK(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got " << p);
}

Tensor Dropout::forward(const Tensor& x) const {
  DropoutKey key;
  key.seed = seed, key.step = step(), key.layer = layer;
  return ops::dropout(x, p, key, is_training());
}

BatchNorm2d::BatchNorm2d(int channels, double eps_, double momentum_)
    : eps(eps_), momentum(momentum_) {
  weight = Tensor::full({channels}, 1.0);
  bias = Tensor::zeros({channels});
  running_mean = Tensor::zeros({channels});
  running_var = Tensor::full({channels}, 1.0);
  num_batches_tracked = Tensor::zeros({}, DType::I64);
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
  register_buffer("running_mean", &running_mean);
  register_buffer("running_var", &running_var);
  register_buffer("num_batches_tracked", &num_batches_tracked);
}

Tensor NormLayer::forward_relu(const Tensor& x) { return ops::relu(forward(x)); }

Tensor BatchNorm2d::forward(const Tensor& x) { return normalize(x, /*relu=*/false); }
Tensor BatchNorm2d::forward_relu(const Tensor& x) { return normalize(x, /*relu=*/true); }

Tensor BatchNorm2d::normalize(const Tensor& x, bool relu) {
  return ops::batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum, eps,
                         relu, num_batches_tracked);
}

GroupNorm::GroupNorm(int groups_, int channels, double eps_) : groups(groups_), eps(eps_) {
  weight = Tensor::full({channels}, 1.0);
  bias = Tensor::zeros({channels});
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
}

Tensor GroupNorm::forward(const Tensor& x) {
  return ops::group_norm(x, weight, bias, groups, eps);
}

}  // namespace nn
}  // namespace kd
