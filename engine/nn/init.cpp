// Seeded initialisers (see init.h). Values are drawn in double and stored in the tensor's dtype.
#include "engine/nn/init.h"

#include <cmath>

#include "base/philox.h"

namespace kd {
namespace nn {

namespace {
template <class F>
void fill_with(Tensor& t, F draw) {
  KD_CHECK(t.device().is_cpu(), "initialise on the CPU, then move: " << describe(t));
  int64_t n = t.numel();
  if (t.dtype() == DType::F32) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(draw(i));
  } else {
    double* p = t.data<double>();
    for (int64_t i = 0; i < n; ++i) p[i] = draw(i);
  }
}
}  // namespace

void Initializer::uniform(Tensor& t, double low, double high) {
  uint64_t base = counter_;
  fill_with(t, [&](int64_t i) {
    return low + (high - low) * philox_uniform_double(seed_, kStreamInit, base + i);
  });
  counter_ += t.numel();
}

void Initializer::normal(Tensor& t, double mean, double std) {
  uint64_t base = counter_;
  fill_with(t, [&](int64_t i) { return mean + std * philox_normal(seed_, kStreamInit, base + i); });
  counter_ += t.numel();
}

void Initializer::torch_default(Tensor& t, int64_t fan_in) {
  double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  uniform(t, -bound, bound);
}

}  // namespace nn
}  // namespace kd
