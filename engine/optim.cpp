// Optimizer state and steps (see optim.h). A parameter without a gradient is skipped, as in
// PyTorch. All parameters of one dtype go to the backend's multi-tensor update in one call: on
// the GPU a handful of launches per step instead of one per tensor; on the CPU each in turn.
#include "engine/optim.h"

#include <cmath>
#include <type_traits>

namespace kd {

void Optimizer::zero_grad() {
  if (!gradients_in_arena()) build_gradient_arena();
  if (arena_.defined()) {
    arena_.zero_();
    return;
  }
  for (Tensor& p : params_)  // mixed dtypes or devices: one at a time
    if (p.grad().defined()) p.grad().zero_();
}

bool Optimizer::gradients_in_arena() const {
  if (arena_slots_.size() != params_.size()) return false;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = params_[i].grad();
    if ((g.defined() ? g.raw() : nullptr) != arena_slots_[i]) return false;
  }
  return true;
}

void Optimizer::build_gradient_arena() {
  arena_ = Tensor();
  arena_slots_.assign(params_.size(), nullptr);
  int64_t total = 0;
  const Tensor* first = nullptr;
  for (const Tensor& p : params_) {
    if (!p.grad().defined()) continue;
    if (first && (p.dtype() != first->dtype() || p.device() != first->device())) {
      arena_slots_.clear();  // no arena: zero_grad goes one gradient at a time
      return;
    }
    first = first ? first : &p;
    total += p.numel();
  }
  if (!first) return;  // nothing has a gradient yet; the slots say so
  // The old gradients are about to be zeroed: their values need not move into the arena.
  arena_ = Tensor::empty({total}, first->dtype(), first->device());
  int64_t offset = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    if (!p.grad().defined()) continue;
    Tensor piece = arena_.slice_flat(offset, p.shape());
    p.set_grad(piece);
    arena_slots_[i] = piece.raw();
    offset += p.numel();
  }
}

nn::NamedTensors Optimizer::state() const {
  nn::NamedTensors out;
  for (const auto& buffer : buffers())
    for (size_t i = 0; i < buffer.second->size(); ++i)
      out.emplace_back(buffer.first + "." + std::to_string(i), (*buffer.second)[i]);
  out.emplace_back("steps", Tensor::from_vector<int64_t>({1}, {steps_taken_}));
  return out;
}

void Optimizer::load_state(const std::map<std::string, Tensor>& values, const std::string& where) {
  for (auto& kv : state()) {
    auto it = values.find(kv.first);
    KD_INPUT_CHECK(it != values.end(),
                   where << ": optimizer state '" << kv.first << "' is missing");
    KD_INPUT_CHECK(
        it->second.shape() == kv.second.shape() && it->second.dtype() == kv.second.dtype(),
        where << ": optimizer state '" << kv.first << "' is " << describe(it->second)
              << ", expected " << describe(kv.second));
    if (kv.first == "steps") {
      steps_taken_ = it->second.to(Device::cpu()).data<int64_t>()[0];
      KD_INPUT_CHECK(steps_taken_ >= 0, where << ": optimizer state 'steps' is negative");
      on_steps_loaded();
    } else {
      Tensor dst = kv.second;  // shares the buffer's storage
      dst.copy_from(it->second);
    }
  }
  KD_INPUT_CHECK(values.size() == state().size(), where << ": optimizer state has " << values.size()
                                                        << " entries, expected " << state().size()
                                                        << " (another optimizer or model?)");
}

namespace {
void check_params(const std::vector<Tensor>& params) {
  for (const Tensor& p : params) {
    KD_CHECK(p.requires_grad(),
             "optimizer given a tensor that does not require grad: " << describe(p));
    KD_CHECK(p.device() == params.front().device(),
             "optimizer: parameters on different devices: " << describe(params.front()) << " and "
                                                            << describe(p));
  }
}

// Pointers of the parameters that have a gradient, with their state buffers, grouped for
// one multi-tensor launch per dtype.
template <class T>
struct DeviceGroup {
  using Scalar = T;
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

// Calls fn(group) for the f32 and then the f64 parameters that have a gradient, with their
// state buffers (state_b may be null: SGD has one buffer, Adam two).
template <class F>
void for_each_device_group(const std::vector<Tensor>& params, const std::vector<Tensor>& state_a,
                           const std::vector<Tensor>* state_b, F fn) {
  DeviceGroup<float> f32;
  DeviceGroup<double> f64;
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    const Tensor* b = state_b ? &(*state_b)[i] : nullptr;
    if (params[i].dtype() == DType::F32) f32.add(params[i], g, &state_a[i], b);
    else f64.add(params[i], g, &state_a[i], b);
  }
  if (f32.count()) fn(f32);
  if (f64.count()) fn(f64);
}
}  // namespace

Sgd::Sgd(std::vector<Tensor> params, const SgdParams& hyper)
    : Optimizer(std::move(params)), hyper_(hyper) {
  check_params(params_);
  for (const Tensor& p : params_)
    momentum_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
  if (!params_.empty() && params_.front().is_cuda()) {
    lr_on_device_ = Tensor::full({1}, hyper_.lr, DType::F64, params_.front().device());
    hyper_.lr_device = lr_on_device_.data<double>();
  }
}

void Sgd::set_lr(double lr) {
  hyper_.lr = lr;
  if (lr_on_device_.defined()) lr_on_device_.fill_(lr);
}

void Sgd::step() {
  if (params_.empty()) return;
  const Backend& backend = backend_of(params_.front().device());
  for_each_device_group(params_, momentum_, nullptr, [&](auto& g) {
    using T = typename std::decay_t<decltype(g)>::Scalar;
    KD_KERNEL(backend, T, sgd_update_multi)(g.count(), g.sizes.data(), g.params.data(),
                                            g.grads.data(), g.state_a.data(), hyper_,
                                            steps_taken_ == 0);
  });
  ++steps_taken_;
}

Adam::Adam(std::vector<Tensor> params, const AdamParams& hyper)
    : Optimizer(std::move(params)), hyper_(hyper) {
  check_params(params_);
  for (const Tensor& p : params_) {
    m_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    v_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
  }
  if (!params_.empty() && params_.front().is_cuda()) {
    const Device device = params_.front().device();
    lr_on_device_ = Tensor::full({1}, hyper_.lr, DType::F64, device);
    step_on_device_ = Tensor::zeros({1}, DType::I64, device);
    hyper_.lr_device = lr_on_device_.data<double>();
    hyper_.step_device = step_on_device_.data<int64_t>();
  }
}

void Adam::set_lr(double lr) {
  hyper_.lr = lr;
  if (lr_on_device_.defined()) lr_on_device_.fill_(lr);
}

void Adam::on_steps_loaded() {
  if (step_on_device_.defined())
    step_on_device_.copy_from(Tensor::from_vector<int64_t>({1}, {steps_taken_}));
}

void Adam::step() {
  ++steps_taken_;
  if (params_.empty()) return;
  const Backend& backend = backend_of(params_.front().device());
  // The device count moves with the host's, on the stream, so a replay of this step advances it.
  if (step_on_device_.defined()) backend.counter_add(step_on_device_.data<int64_t>(), 1);
  for_each_device_group(params_, m_, &v_, [&](auto& g) {
    using T = typename std::decay_t<decltype(g)>::Scalar;
    KD_KERNEL(backend, T, adam_update_multi)(g.count(), g.sizes.data(), g.params.data(),
                                             g.grads.data(), g.state_a.data(), g.state_b.data(),
                                             hyper_, steps_taken_);
  });
}

double cosine_lr(double base_lr, double eta_min, int64_t epoch, int64_t t_max) {
  KD_CHECK(t_max > 0, "cosine_lr: T_max must be positive, got " << t_max);
  const double pi = 3.14159265358979323846;
  return eta_min + (base_lr - eta_min) * (1.0 + std::cos(pi * double(epoch) / double(t_max))) / 2.0;
}

}  // namespace kd
