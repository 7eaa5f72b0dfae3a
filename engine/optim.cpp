// Optimizer state and steps (see optim.h). A parameter without a gradient is skipped, as in
// PyTorch.
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
    KD_CHECK(!p.is_cuda(), "optimizer: no CUDA update kernel in this build yet");
  }
}
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
