// Optimizer state and steps (see optim.h). A parameter without a gradient is skipped, as in
// PyTorch. On the GPU all parameters of one dtype are updated by the fused multi-tensor kernels:
// a handful of launches per step instead of one per tensor.
#include "engine/optim.h"

#include <cmath>

namespace kd {

void Optimizer::zero_grad() {
  for (Tensor& p : params_)
    if (p.grad().defined()) p.grad().zero_();
}

namespace {
void check_params(const std::vector<Tensor>& params) {
  for (const Tensor& p : params) {
    KD_CHECK(p.requires_grad(), "optimizer given a tensor that does not require grad: "
                                    << describe(p));
    KD_CHECK(p.device() == params.front().device(),
             "optimizer: parameters on different devices: " << describe(params.front()) << " and "
                                                           << describe(p));
  }
}

// Device pointers of the parameters that have a gradient, with their state buffers, grouped for
// one multi-tensor launch per dtype.
template <class T>
struct DeviceGroup {
  std::vector<int64_t> sizes;
  std::vector<T*> params, state_a, state_b;
  std::vector<const T*> grads;
  void add(const Tensor& p, const Tensor& g, const Tensor* a, const Tensor* b) {
    sizes.push_back(p.numel());
    params.push_back(p.data<T>());
    grads.push_back(g.data<T>());
    state_a.push_back(a ? a->data<T>() : nullptr);
    state_b.push_back(b ? b->data<T>() : nullptr);
  }
  int count() const { return int(sizes.size()); }
};
template <class F>
void for_float(const Tensor& p, F f) {
  if (p.dtype() == DType::F32) f(float{});
  else f(double{});
}
}  // namespace

Sgd::Sgd(std::vector<Tensor> params, const SgdParams& hyper)
    : Optimizer(std::move(params)), hyper_(hyper) {
  check_params(params_);
  for (const Tensor& p : params_) momentum_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
}

void Sgd::step() {
  if (!params_.empty() && params_.front().is_cuda()) {
#if KDLAB_HAVE_CUDA
    DeviceGroup<float> f32;
    DeviceGroup<double> f64;
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor g = params_[i].grad();
      if (!g.defined()) continue;
      if (params_[i].dtype() == DType::F32) f32.add(params_[i], g, &momentum_[i], nullptr);
      else f64.add(params_[i], g, &momentum_[i], nullptr);
    }
    if (f32.count())
      cuda::sgd_update_multi<float>(f32.count(), f32.sizes.data(), f32.params.data(),
                                    f32.grads.data(), f32.state_a.data(), hyper_, first_step_);
    if (f64.count())
      cuda::sgd_update_multi<double>(f64.count(), f64.sizes.data(), f64.params.data(),
                                     f64.grads.data(), f64.state_a.data(), hyper_, first_step_);
    first_step_ = false;
    return;
#endif
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    for_float(params_[i], [&](auto tag) {
      using T = decltype(tag);
      cpu::sgd_update<T>(params_[i].numel(), hyper_, first_step_, params_[i].data<T>(),
                         g.data<T>(), momentum_[i].data<T>());
    });
  }
  first_step_ = false;
}

Adam::Adam(std::vector<Tensor> params, const AdamParams& hyper)
    : Optimizer(std::move(params)), hyper_(hyper) {
  check_params(params_);
  for (const Tensor& p : params_) {
    m_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    v_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
  }
}

void Adam::step() {
  ++step_;
  if (!params_.empty() && params_.front().is_cuda()) {
#if KDLAB_HAVE_CUDA
    DeviceGroup<float> f32;
    DeviceGroup<double> f64;
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor g = params_[i].grad();
      if (!g.defined()) continue;
      if (params_[i].dtype() == DType::F32) f32.add(params_[i], g, &m_[i], &v_[i]);
      else f64.add(params_[i], g, &m_[i], &v_[i]);
    }
    if (f32.count())
      cuda::adam_update_multi<float>(f32.count(), f32.sizes.data(), f32.params.data(),
                                     f32.grads.data(), f32.state_a.data(), f32.state_b.data(),
                                     hyper_, step_);
    if (f64.count())
      cuda::adam_update_multi<double>(f64.count(), f64.sizes.data(), f64.params.data(),
                                      f64.grads.data(), f64.state_a.data(), f64.state_b.data(),
                                      hyper_, step_);
    return;
#endif
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    for_float(params_[i], [&](auto tag) {
      using T = decltype(tag);
      cpu::adam_update<T>(params_[i].numel(), hyper_, step_, params_[i].data<T>(), g.data<T>(),
                          m_[i].data<T>(), v_[i].data<T>());
    });
  }
}

double cosine_lr(double base_lr, double eta_min, int64_t epoch, int64_t t_max) {
  KD_CHECK(t_max > 0, "cosine_lr: T_max must be positive, got " << t_max);
  const double pi = 3.14159265358979323846;
  return eta_min + (base_lr - eta_min) * (1.0 + std::cos(pi * double(epoch) / double(t_max))) / 2.0;
}

}  // namespace kd
