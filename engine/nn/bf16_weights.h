// nn::Bf16WeightCopies: a model's bf16 weight copies for one forward pass (--precision bf16).
// A model's forward makes one when its activations are bf16: every weight with two or more
// dimensions (convolutions', linear layers') is cast in one op (ops::cast_to_bf16: one launch,
// one zeroed gradient buffer, one launch back in the backward) and the layers take their copy
// from here (layers.cpp) instead of casting their own, which costs three launches per weight.
// Biases and normalisation parameters stay fp32, as with the per-layer cast. The copies are the
// per-layer cast's bits, so results do not change. Scopes nest (an inner model's forward inside
// an outer one's); a layer whose weight no live scope holds casts its own.
#pragma once
#include <unordered_map>

#include "engine/nn/module.h"

namespace kd {
namespace nn {

class Bf16WeightCopies {
 public:
  // Does nothing unless `activations` is bf16.
  Bf16WeightCopies(const Module& model, const Tensor& activations);
  ~Bf16WeightCopies();
  Bf16WeightCopies(const Bf16WeightCopies&) = delete;
  Bf16WeightCopies& operator=(const Bf16WeightCopies&) = delete;

  // The bf16 copy of `weight` in the innermost live scope that holds it, or null.
  static const Tensor* find(const Tensor& weight);

 private:
  std::unordered_map<const void*, Tensor> copies_;  // by the weight's storage
  Bf16WeightCopies* outer_ = nullptr;
};

}  // namespace nn
}  // namespace kd
