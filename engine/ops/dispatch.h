// Shared checks and the dtype/device dispatch used by every op front door. An op reaches its
// kernel through the backend table of its tensors' device: kernels<T>(x).conv2d_forward(...)
// (kernels/backend.h), so grep finds every caller of a kernel by its name.
#pragma once
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/runtime_config.h"
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

// The kernel table of t's device.
template <class T>
const KernelTable<T>& kernels(const Tensor& t) {
  return backend_of(t.device()).kernels<T>();
}
// cuDNN's table on t's device (convolution and batchnorm only), when --conv/--bn chose it.
template <class T>
const KernelTable<T>& cudnn_kernels(const Tensor& t) {
  const Backend& b = backend_of(t.device());
  KD_CHECK(b.has_cudnn, "cuDNN was asked for, but the " << b.name << " backend has none");
  return b.cudnn<T>();
}

// Every operand defined, same dtype and device as the first.
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

}  // namespace detail
}  // namespace ops
}  // namespace kd

