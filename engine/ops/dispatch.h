// Shared checks and the dtype/device dispatch used by every op front door. KD_RUN is the one
// place where an op picks its CPU or CUDA kernel (same name and arguments in both namespaces).
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

[[noreturn]] inline void no_cuda_kernels() {
  throw Error("a CUDA tensor reached an op in a build without CUDA kernels");
}
[[noreturn]] inline void no_cudnn() { throw Error("cuDNN was asked for in a build without it"); }

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

// Kernels that always write every gradient get a zeroed throw-away buffer, on the tensor's
// device, for inputs that need none.
template <class T>
T* grad_or_scratch(const Tensor& t, Tensor& scratch) {
  if (T* p = grad_ptr<T>(t)) return p;
  scratch = Tensor::zeros(t.shape(), t.dtype(), t.device());
  return scratch.data<T>();
}

}  // namespace detail
}  // namespace ops
}  // namespace kd

// KD_RUN(tensor.is_cuda(), relu_forward<T>(n, x, y)) calls kd::cuda::relu_forward<T> or
// kd::cpu::relu_forward<T>. A build without CUDA never names the cuda:: symbol.
#if KDLAB_HAVE_CUDA
#define KD_CUDA_BRANCH(...) __VA_ARGS__
#else
#define KD_CUDA_BRANCH(...) ::kd::ops::detail::no_cuda_kernels()
#endif
#if KDLAB_HAVE_CUDNN
#define KD_CUDNN_BRANCH(...) __VA_ARGS__
#else
#define KD_CUDNN_BRANCH(...) ::kd::ops::detail::no_cudnn()
#endif
#define KD_RUN(on_cuda, ...)                  \
  do {                                        \
    if (on_cuda) {                            \
      KD_CUDA_BRANCH(::kd::cuda::__VA_ARGS__); \
    } else {                                  \
      ::kd::cpu::__VA_ARGS__;                 \
    }                                         \
  } while (0)
