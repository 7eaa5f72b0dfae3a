// Shared checks and the dtype/device dispatch used by every op front door.
#pragma once
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/tensor.h"

namespace kd {
namespace ops {
namespace detail {

// Calls f(T{}) with T = float or double according to the tensor's dtype.
template <class F>
void dispatch_floating(const char* op, const Tensor& t, F&& f) {
  if (t.dtype() == DType::F32) f(float{});
  else if (t.dtype() == DType::F64) f(double{});
  else throw Error(std::string(op) + ": expected an f32 or f64 tensor, got " + describe(t));
}

// Every operand defined, same dtype and device as the first; CUDA has no op kernels yet.
inline void check_operands(const char* op, std::initializer_list<Tensor> ts) {
  const Tensor* first = nullptr;
  for (const Tensor& t : ts) {
    if (!t.defined()) continue;
    if (!first) {
      first = &t;
      continue;
    }
    KD_CHECK(t.dtype() == first->dtype() && t.device() == first->device(),
             op << ": operands differ in dtype or device: " << describe(*first) << " vs "
                << describe(t));
  }
  KD_CHECK(first, op << ": no operands");
  KD_CHECK(!first->is_cuda(), op << ": no CUDA kernel in this build yet; run with --device cpu");
}

template <class T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// The gradient buffer of an input that needs one, or nullptr.
template <class T>
T* grad_ptr(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  return Tensor(t).grad_or_zeros().data<T>();
}

// Kernels that always write every gradient get a throw-away buffer for inputs that need none.
template <class T>
T* grad_or_scratch(const Tensor& t, std::vector<T>& scratch) {
  if (T* p = grad_ptr<T>(t)) return p;
  scratch.assign(static_cast<size_t>(t.numel()), T(0));
  return scratch.data();
}

}  // namespace detail
}  // namespace ops
}  // namespace kd
