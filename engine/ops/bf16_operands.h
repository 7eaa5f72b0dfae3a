// The bf16 precision at the op front doors (--precision bf16; ops.h): activations, their
// gradients and the weights' copies are stored in bf16, and every op computes in fp32 (its
// "compute dtype"). An op reaches its fp32 kernels through views of its operands:
//  - In<T>: a bf16 input widened into a T temporary (exact); a T input as is.
//  - Out<T>: a bf16 output written into a T temporary by the kernel, then rounded into the
//    tensor (to_bf16, nearest even) by commit(); a T output written directly.
//  - GradWrite<T> / GradAccumulate<T>: an input's gradient under grad_for_write's contract
//    (the kernel assigns or accumulates as told) or grad_ptr's (the kernel accumulates). For a
//    bf16 gradient the kernel assigns or accumulates into a T temporary and commit() adds it to
//    the bf16 gradient in one rounding: bf16(float(old) + new), or bf16(new) when there was none.
// So a bf16 op is, bit for bit, its fp32 op on the widened operands with each output rounded
// once; tests/test_bf16_ops.cpp holds every op to that. The saved tensors (what the tape keeps
// for the backward) are the bf16 ones: temporaries live for one kernel call.
// These views cost a cast pass and a launch per bf16 operand; the ops call kernels that read and
// write bf16 themselves instead where the table has them (batch norm in training, convolution).
#pragma once
#include <initializer_list>

#include "engine/ops/dispatch.h"
#include "kernels/cast.h"

namespace kd {
namespace ops {
namespace detail {

// The dtype an op computes in: that of its f32/f64 operands (which must agree), or f32 when
// every floating operand is bf16. Operands must share a device. Non-floating dtypes are refused.
inline DType compute_dtype(const char* op, std::initializer_list<Tensor> ts) {
  const Tensor* first = nullptr;
  const Tensor* wide = nullptr;
  for (const Tensor& t : ts) {
    if (!t.defined()) continue;
    KD_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64 || t.dtype() == DType::BF16,
             op << ": expected f32, f64 or bf16 tensors, got " << describe(t));
    if (!first) first = &t;
    KD_CHECK(t.device() == first->device(),
             op << ": operands on different devices: " << describe(*first) << " vs "
                << describe(t));
    if (t.dtype() == DType::BF16) continue;
    if (!wide) wide = &t;
    KD_CHECK(t.dtype() == wide->dtype(), op << ": operands differ in dtype: " << describe(*wide)
                                            << " vs " << describe(t));
  }
  KD_CHECK(first, op << ": no operands");
  return wide ? wide->dtype() : DType::F32;
}

// Parameters (and statistics) are never bf16: each defined one must be the compute dtype.
inline void check_parameters(const char* op, DType compute,
                             std::initializer_list<const Tensor*> parameters) {
  for (const Tensor* p : parameters)
    KD_CHECK(!p->defined() || p->dtype() == compute,
             op << ": parameter or statistic " << describe(*p) << " (expected "
                << dtype_name(compute) << ")");
}

// Calls f(T{}) with T the compute dtype's type.
template <class F>
void dispatch_compute(const char* op, DType compute, F&& f) {
  if (compute == DType::F32) f(float{});
  else if (compute == DType::F64) f(double{});
  else throw Error(std::string(op) + ": compute dtype " + dtype_name(compute));
}

template <class T>
bool holds(const Tensor& t) {
  return t.defined() && t.dtype() == dtype_of<T>();
}

template <class T>
class In {
 public:
  explicit In(const Tensor& t) {
    if (!t.defined()) return;
    if (holds<T>(t)) {
      ptr_ = t.data<T>();
      return;
    }
    widened_ = Tensor::empty(t.shape(), dtype_of<T>(), t.device());
    kernels<T>(t).from_bf16(t.numel(), t.data<bf16>(), widened_.data<T>(), false);
    ptr_ = widened_.data<T>();
  }
  const T* get() const { return ptr_; }

 private:
  Tensor widened_;
  const T* ptr_ = nullptr;
};

// Rounds `buffer` (target's numel values of T) into the bf16 tensor `target` (assign, or add
// when `accumulate`).
template <class T>
void round_into(const T* buffer, const Tensor& target, bool accumulate) {
  kernels<T>(target).to_bf16(target.numel(), buffer, target.data<bf16>(), accumulate);
}

template <class T>
class Out {
 public:
  explicit Out(const Tensor& t) : target_(t) {
    buffer_ = holds<T>(t) ? t : Tensor::empty(t.shape(), dtype_of<T>(), t.device());
  }
  T* get() const { return buffer_.data<T>(); }
  void commit() const {
    if (!buffer_.same(target_)) round_into<T>(buffer_.data<T>(), target_, false);
  }

 private:
  Tensor target_, buffer_;
};

// grad_for_write's contract: get() is assigned when accumulate() is false, added to otherwise.
template <class T>
class GradWrite {
 public:
  explicit GradWrite(const Tensor& input) {
    grad_ = Tensor(input).grad_for_write(&had_grad_);
    buffer_ = holds<T>(grad_) ? grad_ : Tensor::empty(grad_.shape(), dtype_of<T>(), grad_.device());
  }
  T* get() const { return buffer_.data<T>(); }
  bool accumulate() const { return had_grad_ && buffer_.same(grad_); }
  void commit() const {
    if (!buffer_.same(grad_)) round_into<T>(buffer_.data<T>(), grad_, had_grad_);
  }

 private:
  Tensor grad_, buffer_;
  bool had_grad_ = false;
};

// grad_ptr's contract: the kernel adds into get(). Undefined (get() null) for an input that
// needs no gradient.
template <class T>
class GradAccumulate {
 public:
  explicit GradAccumulate(const Tensor& input) {
    if (!input.defined() || !input.requires_grad()) return;
    if (holds<T>(input)) {
      buffer_ = grad_ = Tensor(input).grad_or_zeros();
      return;
    }
    bool had_grad = false;
    grad_ = Tensor(input).grad_for_write(&had_grad);
    had_grad_ = had_grad;
    buffer_ = Tensor::zeros(grad_.shape(), dtype_of<T>(), grad_.device());
  }
  T* get() const { return buffer_.defined() ? buffer_.data<T>() : nullptr; }
  void commit() const {
    if (buffer_.defined() && !buffer_.same(grad_))
      round_into<T>(buffer_.data<T>(), grad_, had_grad_);
  }

 private:
  Tensor grad_, buffer_;
  bool had_grad_ = false;
};

// Kernels that write every gradient get a zeroed throw-away buffer, on the tensor's device, for
// inputs that need none.
template <class T>
class GradOrScratch {
 public:
  explicit GradOrScratch(const Tensor& input) : grad_(input) {
    if (!grad_.get()) scratch_ = Tensor::zeros(input.shape(), dtype_of<T>(), input.device());
  }
  T* get() const { return grad_.get() ? grad_.get() : scratch_.data<T>(); }
  void commit() const { grad_.commit(); }

 private:
  GradAccumulate<T> grad_;
  Tensor scratch_;
};

// input's gradient += g, where g has input's dtype (a pass-through backward's later consumer:
// add, reshape, a convolution's residual). One rounding for bf16.
template <class T>
void add_to_grad(const Tensor& input, const Tensor& g) {
  if (holds<T>(input)) {
    kernels<T>(input).accumulate(g.numel(), T(1), g.data<T>(), grad_ptr<T>(input));
    return;
  }
  In<T> wide(g);
  bool had_grad = false;
  Tensor grad = Tensor(input).grad_for_write(&had_grad);
  round_into<T>(wide.get(), grad, had_grad);
}

}  // namespace detail
}  // namespace ops
}  // namespace kd
