// Gradient checker for the tests: compares the tape's gradients with central differences in
// double. The function under test maps a list of f64 input tensors to a one-element tensor built
// with ops; every input that requires grad is perturbed element by element (in place, so tensors
// a module holds can be listed as inputs too). Also small helpers the engine tests share: seeded
// random f64 tensors and a random linear functional that turns any output into a scalar.
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/tensor.h"
#include "base/philox.h"

namespace kd {
namespace testing {

// Uniform values in [low, high), f64, from the test stream; `seed` separates tensors.
inline Tensor random_f64(const Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = low + (high - low) * philox_uniform_double(seed, kStreamTest, i);
  return Tensor::from_vector<double>(shape, v);
}

// Values whose magnitude lies in [low, high) with a random sign: keeps inputs away from a kink
// at 0 (relu), farther than any finite-difference step.
inline Tensor random_away_from_zero(const Shape& shape, uint64_t seed, double low = 0.1,
                                    double high = 1.0) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) {
    double mag = low + (high - low) * philox_uniform_double(seed, kStreamTest, 2 * i);
    v[i] = philox_uniform_double(seed, kStreamTest, 2 * i + 1) < 0.5 ? -mag : mag;
  }
  return Tensor::from_vector<double>(shape, v);
}

// A random permutation of {0, step, 2*step, ...} minus an offset: all values distinct by `step`,
// so max-pooling winners do not change under a small perturbation.
inline Tensor distinct_values(const Shape& shape, uint64_t seed, double step = 0.01) {
  size_t n = static_cast<size_t>(shape_numel(shape));
  std::vector<std::pair<double, size_t>> keys(n);
  for (size_t i = 0; i < n; ++i) keys[i] = {philox_uniform_double(seed, kStreamTest, i), i};
  std::sort(keys.begin(), keys.end());
  std::vector<double> v(n);
  for (size_t rank = 0; rank < n; ++rank) v[keys[rank].second] = step * rank - step * n / 2.0;
  return Tensor::from_vector<double>(shape, v);
}

// sum_i out_i * weights_i as a [1, 1] tensor built with ops (reshape + linear), so it is on the
// tape; `weights` (same numel as out) must not require grad.
inline Tensor weighted_sum(const Tensor& out, const Tensor& weights) {
  Tensor flat = ops::reshape(out, {1, out.numel()});
  return ops::linear(flat, weights.view({1, out.numel()}), Tensor());
}

struct GradCheckResult {
  double max_error = 0;      // max over elements of |analytic - numeric| / max(1, |numeric|)
  double max_numeric = 0;    // largest |numeric| seen: shows the check was not vacuous
  int worst_input = -1;      // index into the input list
  int64_t worst_index = -1;  // flat element index inside that input
  double worst_analytic = 0, worst_numeric = 0;
  int64_t elements = 0;  // how many elements were checked
  std::string describe() const {
    std::ostringstream os;
    os.precision(12);
    os << "max error " << max_error << " at input " << worst_input << " element " << worst_index
       << " (analytic " << worst_analytic << ", numeric " << worst_numeric << "), " << elements
       << " elements, max |numeric| " << max_numeric;
    return os.str();
  }
};

using ScalarFunction = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs f once with the tape and backward() for the analytic gradients, then twice per element
// under NoGradGuard for the numeric ones: (f(x + eps) - f(x - eps)) / (2 eps). Inputs must be
// f64 on the CPU; their gradients are cleared first and left holding the analytic values.
inline GradCheckResult gradcheck(const ScalarFunction& f, const std::vector<Tensor>& inputs,
                                 double eps = 1e-6) {
  for (const Tensor& t : inputs) {
    KD_CHECK(t.dtype() == DType::F64 && !t.is_cuda(),
             "gradcheck needs f64 CPU inputs, got " << describe(t));
    Tensor(t).clear_grad();
  }
  clear_tape();
  Tensor loss = f(inputs);
  KD_CHECK(loss.numel() == 1,
           "gradcheck: the function must return one element, got " << describe(loss));
  backward(loss);

  GradCheckResult r;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& t = inputs[k];
    if (!t.requires_grad()) continue;
    std::vector<double> analytic =
        t.grad().defined() ? t.grad().to_vector<double>() : std::vector<double>(t.numel(), 0.0);
    double* x = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double saved = x[i];
      double plus, minus;
      {
        NoGradGuard no_grad;
        x[i] = saved + eps;
        plus = f(inputs).item();
        x[i] = saved - eps;
        minus = f(inputs).item();
      }
      x[i] = saved;
      double numeric = (plus - minus) / (2 * eps);
      double err = std::fabs(analytic[i] - numeric) / std::max(1.0, std::fabs(numeric));
      if (!std::isfinite(err)) err = HUGE_VAL;  // a NaN must fail, not vanish in comparisons
      r.max_numeric = std::max(r.max_numeric, std::fabs(numeric));
      ++r.elements;
      if (err > r.max_error || r.worst_input < 0) {
        r.max_error = std::max(r.max_error, err);
        r.worst_input = int(k);
        r.worst_index = i;
        r.worst_analytic = analytic[i];
        r.worst_numeric = numeric;
      }
    }
  }
  return r;
}

}  // namespace testing
}  // namespace kd
