// Tensor: a cheap handle (shared storage + shape + dtype + device + autograd slot). Always
// contiguous and row-major (NCHW for images). f32 everywhere; f64 on the CPU so the gradient
// checker can run in double; bf16 storage (kernels/bf16.h) for the bf16 precision and bf16
// checkpoints; integer dtypes for labels, indices and num_batches_tracked.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/device.h"
#include "base/check.h"
#include "kernels/bf16.h"

namespace kd {

enum class DType { F32, F64, I32, I64, U8, BF16 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);  // safetensors spelling: F32, F64, I32, I64, U8, BF16
template <class T>
DType dtype_of();
// Whether a state-dict entry of dtype `from` loads into a tensor of dtype `to` (exactly): the
// same dtype, or BF16 (a model saved in bfloat16) into F32 or F64.
bool loads_exactly_into(DType from, DType to);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

struct Storage {
  Storage(size_t bytes, Device device);
  // A region of `parent` (bytes [offset, offset + bytes)), which it keeps alive; frees nothing.
  Storage(std::shared_ptr<Storage> parent, size_t offset, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  std::shared_ptr<Storage> parent;  // set for a region of another storage
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  DType dtype = DType::F32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // same shape, dtype and device; allocated on first use
  // grad may alias another tensor's gradient (add's backward hands dy to both inputs): before
  // anything writes into it, it is copied unless this tensor turns out to be its only holder.
  bool grad_shared = false;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  template <class T>
  static Tensor from_vector(const Shape& shape, const std::vector<T>& values);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t size(int dim) const;
  int dim() const { return static_cast<int>(impl().shape.size()); }
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device; }
  bool is_cuda() const { return device().is_cuda(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }

  void* raw() const { return impl().storage->data; }
  template <class T>
  T* data() const;

  // Host copy of the values (copies from the device when needed).
  template <class T>
  std::vector<T> to_vector() const;
  double item() const;  // a one-element tensor's value as double

  Tensor to(Device device) const;  // a copy on `device` (shares nothing, no autograd)
  Tensor to(DType dtype) const;    // a converted copy (no autograd)
  Tensor clone() const;            // a deep copy (no autograd)
  void copy_from(const Tensor& src);  // same shape; any devices, same dtype
  // All of src's elements into this tensor's flat elements [offset, offset + src.numel()).
  void copy_range_from(int64_t offset, const Tensor& src);
  // A new tensor on the same device holding rows [begin, begin + count) of dimension 0.
  Tensor rows(int64_t begin, int64_t count) const;
  // Host memory in and out without a host tensor: write_from_host fills the whole tensor from
  // nbytes() at src; read_to_host copies elements [offset, offset + count) to dst and returns
  // when they are there (for a GPU tensor: one copy on the compute stream).
  void write_from_host(const void* src);
  void read_to_host(int64_t offset, int64_t count, void* dst) const;
  void fill_(double value);
  void zero_() { fill_(0.0); }

  // Autograd slot.
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool on);
  Tensor grad() const { return Tensor(impl().grad); }
  // The gradient to accumulate into, allocated as zeros on first use. Like grad_for_write, a
  // shared gradient (set_grad(g, true)) is first made this tensor's own.
  Tensor grad_or_zeros();
  // The gradient a backward kernel writes into: the existing one (*accumulate = true), or, on
  // first use, a new uninitialised buffer that the kernel must fill entirely (*accumulate =
  // false), which spares the zeroing pass and the read of zeros.
  Tensor grad_for_write(bool* accumulate);
  // Makes g this tensor's gradient, not copied (pass-through backward: add, reshape). g must have
  // this tensor's shape, dtype and device. shared: another tensor may hold g (or a view of it) as
  // its gradient too, so the first write through grad_or_zeros or grad_for_write copies it unless
  // this tensor is by then its only holder; without it, g's old owner must never read it again.
  void set_grad(const Tensor& g, bool shared = false);
  bool grad_shared() const { return impl().grad_shared; }
  void clear_grad() {
    impl().grad.reset();
    impl().grad_shared = false;
  }

  // numel(shape) elements of this tensor's storage from flat element `offset` on, shared (the
  // gradient arena: every parameter's gradient a piece of one buffer). No autograd.
  Tensor slice_flat(int64_t offset, const Shape& shape) const;
  // Same storage, new shape (numel must match). No autograd: use ops::reshape in graphs.
  Tensor view(const Shape& shape) const;

  TensorImpl& impl() const {
    KD_CHECK(impl_, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::string describe(const Tensor& t);  // "f32[128, 3, 32, 32] on cpu"

}  // namespace kd
