// Module bookkeeping (see module.h).
#include "engine/nn/module.h"

#include <functional>
#include <set>
#include <sstream>

namespace kd {
namespace nn {

void Module::register_parameter(const std::string& name, Tensor* slot) {
  slot->set_requires_grad(true);
  params_.emplace_back(name, slot);
}

void Module::register_buffer(const std::string& name, Tensor* slot) {
  buffers_.emplace_back(name, slot);
}

void Module::train(bool on) {
  training_ = on;
  for (auto& child : children_) child.second->train(on);
}

void Module::set_step(uint64_t step) {
  step_ = step;
  for (auto& child : children_) child.second->set_step(step);
}

bool Module::uses_step() const {
  for (const auto& child : children_)
    if (child.second->uses_step()) return true;
  return false;
}

void Module::collect(const std::string& prefix, bool params, bool buffers,
                     NamedTensors& out) const {
  if (params)
    for (auto& p : params_) out.emplace_back(prefix + p.first, *p.second);
  if (buffers)
    for (auto& b : buffers_) out.emplace_back(prefix + b.first, *b.second);
  for (auto& child : children_) child.second->collect(prefix + child.first + ".", params, buffers, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, out);
  return out;
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", true, true, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& p : named_parameters()) out.push_back(p.second);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : named_parameters()) n += p.second.numel();
  return n;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& values, bool strict) {
  NamedTensors mine = state_dict();
  std::set<std::string> expected;
  std::ostringstream missing;
  for (auto& kv : mine) {
    expected.insert(kv.first);
    auto it = values.find(kv.first);
    if (it == values.end()) {
      missing << " " << kv.first;
      continue;
    }
    Tensor src = it->second;
    KD_INPUT_CHECK(src.shape() == kv.second.shape() &&
                       loads_exactly_into(src.dtype(), kv.second.dtype()),
                   "state dict entry '" << kv.first << "' is " << describe(src) << ", expected "
                                        << describe(kv.second));
    if (src.dtype() != kv.second.dtype()) src = src.to(kv.second.dtype());  // bf16, widened
    Tensor dst = kv.second;
    dst.copy_from(src);
  }
  if (!strict) return;
  std::ostringstream unexpected;
  for (auto& kv : values)
    if (!expected.count(kv.first)) unexpected << " " << kv.first;
  KD_INPUT_CHECK(missing.str().empty() && unexpected.str().empty(),
                 "state dict does not match the model: missing [" << missing.str()
                                                               << " ], unexpected ["
                                                               << unexpected.str() << " ]");
}

void Module::for_each_slot(const std::function<void(Tensor*)>& fn) {
  for (auto& p : params_) fn(p.second);
  for (auto& b : buffers_) fn(b.second);
  for (auto& child : children_) child.second->for_each_slot(fn);
}

void Module::to(Device device) {
  for_each_slot([&](Tensor* slot) {
    if (slot->device() == device) return;
    bool rg = slot->requires_grad();
    *slot = slot->to(device);
    if (rg) slot->set_requires_grad(true);
  });
}

void Module::to(DType dtype) {
  for_each_slot([&](Tensor* slot) {
    DType d = slot->dtype();
    if (d == dtype || (d != DType::F32 && d != DType::F64)) return;
    bool rg = slot->requires_grad();
    *slot = slot->to(dtype);
    if (rg) slot->set_requires_grad(true);
  });
}

void Module::zero_grad() {
  for (auto& p : named_parameters())
    if (p.second.grad().defined()) p.second.grad().zero_();
}

}  // namespace nn
}  // namespace kd
