// Optimizers and the learning-rate schedule, exactly as PyTorch applies them (kernels/optimizer.h
// has the formulas): SGD with momentum/Nesterov and L2 weight decay, Adam with L2 weight decay,
// and cosine annealing with eta_min stepped once per epoch (the paper's code).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/nn/module.h"
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

  // Everything step() depends on besides the parameters and the learning rate, for a resumable
  // checkpoint: the state buffers, named "<buffer>.<parameter index>", and the step counter
  // ("steps", an I64 [1]). load_state puts back exactly what state() gave; a missing or
  // misshapen entry is a kd::InputError naming `where`.
  nn::NamedTensors state() const;
  void load_state(const std::map<std::string, Tensor>& values, const std::string& where);
  int64_t steps_taken() const { return steps_taken_; }
  // A replay of a captured step() (apps/graphed_step.h) ran its update on the device (and
  // advanced any device copy of the count itself).
  void count_replayed_step() { ++steps_taken_; }

 protected:
  // The per-parameter buffers and their name in state().
  virtual std::vector<std::pair<std::string, const std::vector<Tensor>*>> buffers() const = 0;
  // load_state has just set steps_taken_ (Adam keeps a device copy of it).
  virtual void on_steps_loaded() {}
  std::vector<Tensor> params_;
  int64_t steps_taken_ = 0;

 private:
  // The gradient arena: the gradients the parameters hold are pieces of one buffer, so that
  // zero_grad is one memset (one launch on a GPU), not one per parameter. Built at a zero_grad
  // from the parameters that have a gradient by then (the others keep none, and are skipped by
  // step() as before); rebuilt when a parameter's gradient is no longer its piece.
  bool gradients_in_arena() const;
  void build_gradient_arena();
  Tensor arena_;
  std::vector<const void*> arena_slots_;  // per parameter: its piece, or null (no gradient)  // SGD: the first step fills the momentum; Adam: bias correction
};

class Sgd : public Optimizer {
 public:
  Sgd(std::vector<Tensor> params, const SgdParams& hyper);
  void step() override;
  void set_lr(double lr) override;
  double lr() const override { return hyper_.lr; }

 private:
  std::vector<std::pair<std::string, const std::vector<Tensor>*>> buffers() const override {
    return {{"momentum", &momentum_}};
  }
  SgdParams hyper_;
  std::vector<Tensor> momentum_;
  // GPU parameters: the learning rate as a device scalar the update reads (hyper_.lr_device), so
  // a captured step replays with each epoch's value; set_lr writes it with a fill kernel.
  Tensor lr_on_device_;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const AdamParams& hyper);
  void step() override;
  void set_lr(double lr) override;
  double lr() const override { return hyper_.lr; }

 private:
  std::vector<std::pair<std::string, const std::vector<Tensor>*>> buffers() const override {
    return {{"exp_avg", &m_}, {"exp_avg_sq", &v_}};
  }
  void on_steps_loaded() override;
  AdamParams hyper_;
  std::vector<Tensor> m_, v_;
  // GPU parameters: the learning rate and the step count as device scalars the update reads
  // (hyper_.lr_device, hyper_.step_device). step() advances the count on the device before the
  // update, so a captured step replays with each step's bias correction and each epoch's lr.
  Tensor lr_on_device_, step_on_device_;
};

// lr at epoch t of T_max: eta_min + (base - eta_min) * (1 + cos(pi t / T_max)) / 2.
double cosine_lr(double base_lr, double eta_min, int64_t epoch, int64_t t_max);

}  // namespace kd
