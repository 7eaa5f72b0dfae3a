// Seeded parameter initialisation. Each initialiser draws from the counter-based RNG keyed by
// (seed, kStreamInit, running counter), so a model built with the same seed is identical on any
// machine, thread count or device.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace kd {
namespace nn {

class Initializer {
 public:
  explicit Initializer(uint64_t seed) : seed_(seed) {}
  void uniform(Tensor& t, double low, double high);
  void normal(Tensor& t, double mean, double std);
  // PyTorch's default for Conv2d and Linear weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  void torch_default(Tensor& t, int64_t fan_in);

 private:
  uint64_t seed_;
  uint64_t counter_ = 0;
};

}  // namespace nn
}  // namespace kd
