// Optimizers and the learning-rate schedule, exactly as PyTorch applies them (kernels/optimizer.h
// has the formulas): SGD with momentum/Nesterov and L2 weight decay, Adam with L2 weight decay,
// and cosine annealing with eta_min stepped once per epoch (the paper's code).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"
#include "kernels/optimizer.h"

namespace kd {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params) : params_(std::move(params)) {}
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();
  virtual void set_lr(double lr) = 0;
  virtual double lr() const = 0;

 protected:
  std::vector<Tensor> params_;
};

class Sgd : public Optimizer {
 public:
  Sgd(std::vector<Tensor> params, const SgdParams& hyper);
  void step() override;
  void set_lr(double lr) override { hyper_.lr = lr; }
  double lr() const override { return hyper_.lr; }

 private:
  SgdParams hyper_;
  std::vector<Tensor> momentum_;
  bool first_step_ = true;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const AdamParams& hyper);
  void step() override;
  void set_lr(double lr) override { hyper_.lr = lr; }
  double lr() const override { return hyper_.lr; }

 private:
  AdamParams hyper_;
  std::vector<Tensor> m_, v_;
  int64_t step_ = 0;
};

// lr at epoch t of T_max: eta_min + (base - eta_min) * (1 + cos(pi t / T_max)) / 2.
double cosine_lr(double base_lr, double eta_min, int64_t epoch, int64_t t_max);

}  // namespace kd
