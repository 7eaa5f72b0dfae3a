// nn::Module: named parameters, buffers and children with PyTorch's state-dict names and order
// (own parameters, own buffers, then children, joined with '.'), train/eval mode, the training
// step (which keys stochastic layers), device and dtype moves. Modules register pointers to
// their Tensor members, so a move replaces the member in place and no second copy can drift.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace kd {
namespace nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // The training step the loop is on (the loader's global batch.step: epoch * batches + index),
  // set on the model before each step's forward and passed down to every child like train().
  // Stochastic layers key their draws by it (nn::Dropout), so a resumed run that sets the same
  // steps repeats the same masks. 0 until set.
  void set_step(uint64_t step);
  uint64_t step() const { return step_; }
  // Whether forward draws anything keyed by step() (a dropout with p > 0): a CUDA graph of the
  // training step would freeze those draws (apps/graphed_step.h refuses it).
  virtual bool uses_step() const;

  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  NamedTensors state_dict() const;  // parameters and buffers in PyTorch's order
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;

  // Copies values in. strict: the names must match exactly (missing or unexpected names are
  // listed in the error); shapes and dtypes must match always.
  void load_state_dict(const std::map<std::string, Tensor>& values, bool strict = true);
  void to(Device device);
  void to(DType dtype);  // floating parameters and buffers only
  void zero_grad();

 protected:
  void register_parameter(const std::string& name, Tensor* slot);
  void register_buffer(const std::string& name, Tensor* slot);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    children_.emplace_back(name, child);
    return child;
  }

 private:
  void collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const;
  void for_each_slot(const std::function<void(Tensor*)>& fn);
  std::vector<std::pair<std::string, Tensor*>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
  uint64_t step_ = 0;
};

}  // namespace nn
}  // namespace kd
