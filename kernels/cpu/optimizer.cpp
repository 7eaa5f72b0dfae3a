// In-place SGD and Adam updates on flat parameter arrays (contract: kernels/optimizer.h).
// param, momentum_buf, m and v are updated in place; grad is read only.
// Precision follows PyTorch: per-step scalars (bias corrections, step size) are formed in double,
// then every per-element operation runs in T. ref:: and cpu:: evaluate the same expressions in the
// same order, so cpu:: is bitwise identical to ref:: for any thread count.
#include "kernels/backend.h"
#include "kernels/optimizer.h"

#include <cmath>

#include "base/check.h"

namespace kd {

namespace {
constexpr int64_t kParallelMin = 1 << 14;

// The scalars PyTorch's Adam computes in Python (double) before touching the tensors.
struct AdamScalars {
  double step_size;         // lr / (1 - beta1^step)
  double bias2_sqrt;        // sqrt(1 - beta2^step)
};

AdamScalars adam_scalars(const AdamParams& h, int64_t step) {
  KD_CHECK(step >= 1, "adam_update: step counts from 1, got " << step);
  double bias1 = 1.0 - std::pow(h.beta1, double(step));
  double bias2 = 1.0 - std::pow(h.beta2, double(step));
  const double lr = h.lr_device ? *h.lr_device : h.lr;
  return {lr / bias1, std::sqrt(bias2)};
}

// The hyperparameters of one call with the device scalars read (*step_device into *step,
// *lr_device into lr); the result holds no device pointer.
AdamParams resolve_device_scalars(const AdamParams& h, int64_t* step) {
  AdamParams out = h;
  if (h.step_device) *step = *h.step_device;
  if (h.lr_device) out.lr = *h.lr_device;
  out.step_device = nullptr;
  out.lr_device = nullptr;
  return out;
}
}  // namespace

namespace ref {

template <class T>
void sgd_update(int64_t n, const SgdParams& h, bool first_step, T* param, const T* grad,
                T* momentum_buf) {
  const T lr = T(h.lr_device ? *h.lr_device : h.lr), mom = T(h.momentum), wd = T(h.weight_decay);
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i] + wd * param[i];
    if (h.momentum != 0) {
      momentum_buf[i] = first_step ? g : mom * momentum_buf[i] + g;
      g = h.nesterov ? g + mom * momentum_buf[i] : momentum_buf[i];
    }
    param[i] -= lr * g;
  }
}

template <class T>
void adam_update(int64_t n, const AdamParams& hyper, int64_t step, T* param, const T* grad, T* m,
                 T* v) {
  const AdamParams h = resolve_device_scalars(hyper, &step);
  const AdamScalars s = adam_scalars(h, step);
  const T b1 = T(h.beta1), b2 = T(h.beta2), wd = T(h.weight_decay), eps = T(h.eps);
  const T one_minus_b1 = T(1.0 - h.beta1), one_minus_b2 = T(1.0 - h.beta2);
  const T step_size = T(s.step_size), bias2_sqrt = T(s.bias2_sqrt);
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i] + wd * param[i];
    m[i] = b1 * m[i] + one_minus_b1 * g;
    v[i] = b2 * v[i] + one_minus_b2 * (g * g);
    T denom = std::sqrt(v[i]) / bias2_sqrt + eps;
    param[i] -= step_size * (m[i] / denom);
  }
}

}  // namespace ref

namespace cpu {

template <class T>
void sgd_update(int64_t n, const SgdParams& h, bool first_step, T* param, const T* grad,
                T* momentum_buf) {
  const T lr = T(h.lr_device ? *h.lr_device : h.lr), mom = T(h.momentum), wd = T(h.weight_decay);
  // The branches are hoisted so each loop body is straight-line and vectorizes.
  if (h.momentum == 0) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) param[i] -= lr * (grad[i] + wd * param[i]);
  } else if (first_step) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      T g = grad[i] + wd * param[i];
      momentum_buf[i] = g;
      param[i] -= lr * (h.nesterov ? g + mom * g : g);
    }
  } else if (h.nesterov) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      T g = grad[i] + wd * param[i];
      T buf = mom * momentum_buf[i] + g;
      momentum_buf[i] = buf;
      param[i] -= lr * (g + mom * buf);
    }
  } else {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      T buf = mom * momentum_buf[i] + (grad[i] + wd * param[i]);
      momentum_buf[i] = buf;
      param[i] -= lr * buf;
    }
  }
}

template <class T>
void adam_update(int64_t n, const AdamParams& hyper, int64_t step, T* param, const T* grad, T* m,
                 T* v) {
  const AdamParams h = resolve_device_scalars(hyper, &step);
  const AdamScalars s = adam_scalars(h, step);
  const T b1 = T(h.beta1), b2 = T(h.beta2), wd = T(h.weight_decay), eps = T(h.eps);
  const T one_minus_b1 = T(1.0 - h.beta1), one_minus_b2 = T(1.0 - h.beta2);
  const T step_size = T(s.step_size), bias2_sqrt = T(s.bias2_sqrt);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i] + wd * param[i];
    T mi = b1 * m[i] + one_minus_b1 * g;
    T vi = b2 * v[i] + one_minus_b2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    param[i] -= step_size * (mi / (std::sqrt(vi) / bias2_sqrt + eps));
  }
}


// The multi-tensor contract on the host: each tensor in turn through the single-tensor update.
template <class T>
void sgd_update_multi(int count, const int64_t* sizes, T* const* params, const T* const* grads,
                      T* const* momentum_bufs, const SgdParams& h, bool first_step) {
  for (int i = 0; i < count; ++i)
    sgd_update<T>(sizes[i], h, first_step, params[i], grads[i], momentum_bufs[i]);
}
template <class T>
void adam_update_multi(int count, const int64_t* sizes, T* const* params, const T* const* grads,
                       T* const* m, T* const* v, const AdamParams& hyper, int64_t step) {
  const AdamParams h = resolve_device_scalars(hyper, &step);
  for (int i = 0; i < count; ++i) adam_update<T>(sizes[i], h, step, params[i], grads[i], m[i], v[i]);
}
}  // namespace cpu

namespace ref {
KD_DEFINE_REGISTRAR(register_optim, KD_OPTIM_KERNELS)
}
namespace cpu {
KD_DEFINE_REGISTRAR(register_optim, KD_OPTIM_KERNELS)
KD_DEFINE_REGISTRAR(register_optim_multi, KD_OPTIM_MULTI_KERNELS)
}

}  // namespace kd
