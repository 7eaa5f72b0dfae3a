// Tensor storage, copies across devices and dtypes, and the autograd slot.
#include "engine/tensor.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <sstream>

#include "engine/allocator.h"
#include "engine/cost_model.h"
#include "engine/device.h"
#include "kernels/elementwise.h"

namespace kd {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
    case DType::BF16: return 2;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
    case DType::BF16: return "BF16";
  }
  return "?";
}

template <> DType dtype_of<float>() { return DType::F32; }
template <> DType dtype_of<double>() { return DType::F64; }
template <> DType dtype_of<int32_t>() { return DType::I32; }
template <> DType dtype_of<int64_t>() { return DType::I64; }
template <> DType dtype_of<uint8_t>() { return DType::U8; }
template <> DType dtype_of<bf16>() { return DType::BF16; }

bool loads_exactly_into(DType from, DType to) {
  return from == to || (from == DType::BF16 && (to == DType::F32 || to == DType::F64));
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Storage::Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
  data = CachingAllocator::for_device(device).allocate(bytes);
}

Storage::Storage(std::shared_ptr<Storage> parent_storage, size_t offset, size_t nbytes)
    : bytes(nbytes), device(parent_storage->device), parent(std::move(parent_storage)) {
  KD_CHECK(offset + nbytes <= parent->bytes,
           "storage region [" << offset << ", +" << nbytes << ") of " << parent->bytes << " bytes");
  data = static_cast<char*>(parent->data) + offset;
}

Storage::~Storage() {
  if (!parent) CachingAllocator::for_device(device).deallocate(data, bytes);
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  std::string d = dtype_name(t.dtype());
  for (auto& ch : d) ch = static_cast<char>(std::tolower(ch));
  return d + shape_str(t.shape()) + " on " + t.device().str();
}

int64_t Tensor::size(int d) const {
  int n = dim();
  if (d < 0) d += n;
  KD_CHECK(d >= 0 && d < n, "size(" << d << ") of " << describe(*this));
  return impl().shape[d];
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) KD_CHECK(d >= 0, "negative dimension in shape " << shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

template <class T>
Tensor Tensor::from_vector(const Shape& shape, const std::vector<T>& values) {
  KD_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()),
           "from_vector: shape " << shape_str(shape) << " needs " << shape_numel(shape)
                                 << " values, got " << values.size());
  Tensor t = empty(shape, dtype_of<T>());
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(T));
  return t;
}

template <class T>
T* Tensor::data() const {
  KD_CHECK(dtype() == dtype_of<T>(), "data<" << dtype_name(dtype_of<T>()) << ">() on "
                                             << describe(*this));
  return static_cast<T*>(raw());
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = is_cuda() ? to(Device::cpu()) : *this;
  const T* p = host.data<T>();
  return std::vector<T>(p, p + numel());
}

double Tensor::item() const {
  KD_CHECK(numel() == 1, "item() on " << describe(*this));
  Tensor host = is_cuda() ? to(Device::cpu()) : *this;
  switch (dtype()) {
    case DType::F32: return *host.data<float>();
    case DType::F64: return *host.data<double>();
    case DType::I32: return *host.data<int32_t>();
    case DType::I64: return static_cast<double>(*host.data<int64_t>());
    case DType::U8: return *host.data<uint8_t>();
    case DType::BF16: return bf16_to_double(*host.data<bf16>());
  }
  return 0;
}

void Tensor::copy_from(const Tensor& src) {
  KD_CHECK(src.shape() == shape() && src.dtype() == dtype(),
           "copy_from: " << describe(src) << " into " << describe(*this));
  copy_range_from(0, src);
}

void Tensor::copy_range_from(int64_t offset, const Tensor& src) {
  KD_CHECK(src.dtype() == dtype() && offset >= 0 && offset + src.numel() <= numel(),
           "copy_range_from: " << describe(src) << " into " << describe(*this) << " at "
                               << offset);
  size_t n = src.nbytes();
  if (n == 0) return;
  char* dst = static_cast<char*>(raw()) + offset * int64_t(dtype_size(dtype()));
  if (device().is_cpu() && src.device().is_cpu()) {
    std::memcpy(dst, src.raw(), n);
    record_copy(device(), double(n));
  } else if (device().is_cuda() && src.device().is_cpu())
    backend_of(device()).copy_host_to_device(dst, src.raw(), n);
  else if (device().is_cpu() && src.device().is_cuda())
    backend_of(src.device()).copy_device_to_host(dst, src.raw(), n);
  else backend_of(device()).copy_device_to_device(dst, src.raw(), n);
}

Tensor Tensor::rows(int64_t begin, int64_t count) const {
  KD_CHECK(dim() >= 1 && begin >= 0 && count >= 0 && begin + count <= size(0),
           "rows(" << begin << ", " << count << ") of " << describe(*this));
  Shape shape = this->shape();
  shape[0] = count;
  Tensor out = Tensor::empty(shape, dtype(), device());
  const size_t row_bytes = shape_numel(shape) == 0 ? 0 : out.nbytes() / size_t(count);
  if (out.nbytes() == 0) return out;
  const char* src = static_cast<const char*>(raw()) + size_t(begin) * row_bytes;
  if (!is_cuda()) {
    std::memcpy(out.raw(), src, out.nbytes());
    record_copy(device(), double(out.nbytes()));
  } else backend_of(device()).copy_device_to_device(out.raw(), src, out.nbytes());
  return out;
}

void Tensor::write_from_host(const void* src) {
  if (nbytes() == 0) return;
  if (is_cuda()) backend_of(device()).copy_host_to_device(raw(), src, nbytes());
  else std::memcpy(raw(), src, nbytes());
}

void Tensor::read_to_host(int64_t offset, int64_t count, void* dst) const {
  KD_CHECK(offset >= 0 && count >= 0 && offset + count <= numel(),
           "read_to_host: elements [" << offset << ", +" << count << ") of " << describe(*this));
  const size_t elem = dtype_size(dtype());
  const char* src = static_cast<const char*>(raw()) + offset * int64_t(elem);
  if (count == 0) return;
  if (is_cuda()) backend_of(device()).copy_device_to_host(dst, src, size_t(count) * elem);
  else std::memcpy(dst, src, size_t(count) * elem);
}

Tensor Tensor::to(Device dev) const {
  Tensor out = empty(shape(), dtype(), dev);
  out.copy_from(*this);
  return out;
}

namespace {
template <class Dst>
void convert_from(const Tensor& src, Dst* dst) {
  int64_t n = src.numel();
  switch (src.dtype()) {
    case DType::F32: for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(src.data<float>()[i]); break;
    case DType::F64: for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(src.data<double>()[i]); break;
    case DType::I32: for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(src.data<int32_t>()[i]); break;
    case DType::I64: for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(src.data<int64_t>()[i]); break;
    case DType::U8: for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(src.data<uint8_t>()[i]); break;
    case DType::BF16: for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(bf16_to_float(src.data<bf16>()[i])); break;
  }
}

// One rounding to bf16 from any dtype: floats round from their own value, integers through
// double (exact below 2^53).
void convert_to_bf16(const Tensor& src, bf16* dst) {
  const int64_t n = src.numel();
  switch (src.dtype()) {
    case DType::F32: for (int64_t i = 0; i < n; ++i) dst[i] = bf16_from_float(src.data<float>()[i]); break;
    case DType::BF16: std::memcpy(dst, src.raw(), size_t(n) * sizeof(bf16)); break;
    default: {
      std::vector<double> wide(static_cast<size_t>(n));
      convert_from(src, wide.data());
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_from_double(wide[size_t(i)]);
    }
  }
}
}  // namespace

Tensor Tensor::to(DType target) const {
  if (is_cuda()) return to(Device::cpu()).to(target).to(device());  // off the hot path
  Tensor out = empty(shape(), target, device());
  switch (target) {
    case DType::F32: convert_from(*this, out.data<float>()); break;
    case DType::F64: convert_from(*this, out.data<double>()); break;
    case DType::I32: convert_from(*this, out.data<int32_t>()); break;
    case DType::I64: convert_from(*this, out.data<int64_t>()); break;
    case DType::U8: convert_from(*this, out.data<uint8_t>()); break;
    case DType::BF16: convert_to_bf16(*this, out.data<bf16>()); break;
  }
  return out;
}

Tensor Tensor::clone() const { return to(device()); }

void Tensor::fill_(double value) {
  int64_t n = numel();
  if (n == 0) return;
  if (is_cuda()) {
    if (value == 0.0) {
      backend_of(device()).memset_device(raw(), 0, nbytes());
      return;
    }
    const Backend& b = backend_of(device());
    if (dtype() == DType::F32) return KD_KERNEL(b, float, fill)(n, static_cast<float>(value), data<float>());
    if (dtype() == DType::F64) return KD_KERNEL(b, double, fill)(n, value, data<double>());
    Tensor host = full(shape(), value, dtype(), Device::cpu());  // integer fills are rare
    copy_from(host);
    return;
  }
  if (value == 0.0) record_memset(device(), double(nbytes()));
  switch (dtype()) {
    // Gradient buffers are zeroed every step: the threaded kernel, not a single-core fill.
    case DType::F32: cpu::fill<float>(n, static_cast<float>(value), data<float>()); break;
    case DType::F64: cpu::fill<double>(n, value, data<double>()); break;
    case DType::I32: std::fill_n(data<int32_t>(), n, static_cast<int32_t>(value)); break;
    case DType::I64: std::fill_n(data<int64_t>(), n, static_cast<int64_t>(value)); break;
    case DType::U8: std::fill_n(data<uint8_t>(), n, static_cast<uint8_t>(value)); break;
    case DType::BF16: std::fill_n(data<bf16>(), n, bf16_from_double(value)); break;
  }
}

Tensor& Tensor::set_requires_grad(bool on) {
  KD_CHECK(!on || dtype() == DType::F32 || dtype() == DType::F64 || dtype() == DType::BF16,
           "only floating tensors can require gradients: " << describe(*this));
  impl().requires_grad = on;
  return *this;
}

namespace {

// Before a write into a shared gradient: copies it unless no other tensor (or view) holds it.
void own_gradient(TensorImpl& self) {
  if (!self.grad_shared) return;
  if (self.grad.use_count() > 1 || self.grad->storage.use_count() > 1)
    self.grad = Tensor(self.grad).clone().impl_ptr();
  self.grad_shared = false;
}

}  // namespace

Tensor Tensor::grad_or_zeros() {
  TensorImpl& self = impl();
  if (self.grad) own_gradient(self);
  if (!self.grad) self.grad = zeros(self.shape, self.dtype, device()).impl_ptr();
  return Tensor(self.grad);
}

Tensor Tensor::grad_for_write(bool* accumulate) {
  TensorImpl& self = impl();
  if (self.grad) own_gradient(self);
  *accumulate = self.grad != nullptr;
  if (!self.grad) self.grad = empty(self.shape, self.dtype, device()).impl_ptr();
  return Tensor(self.grad);
}

void Tensor::set_grad(const Tensor& g, bool shared) {
  KD_CHECK(g.defined() && g.shape() == shape() && g.dtype() == dtype() && g.device() == device(),
           "set_grad: " << (g.defined() ? describe(g) : std::string("undefined")) << " for "
                        << describe(*this));
  impl().grad = g.impl_ptr();
  impl().grad_shared = shared;
}

Tensor Tensor::slice_flat(int64_t offset, const Shape& new_shape) const {
  KD_CHECK(offset >= 0 && offset + shape_numel(new_shape) <= numel(),
           "slice_flat " << shape_str(new_shape) << " at " << offset << " of " << describe(*this));
  auto impl = std::make_shared<TensorImpl>();
  const size_t elem = dtype_size(dtype());
  // The region of the root storage, so that nested slices never chain.
  const Storage& base = *impl_->storage;
  const size_t base_offset =
      base.parent ? size_t(static_cast<char*>(base.data) - static_cast<char*>(base.parent->data)) : 0;
  impl->storage = std::make_shared<Storage>(base.parent ? base.parent : impl_->storage,
                                            base_offset + size_t(offset) * elem,
                                            size_t(shape_numel(new_shape)) * elem);
  impl->shape = new_shape;
  impl->dtype = dtype();
  return Tensor(impl);
}

Tensor Tensor::view(const Shape& new_shape) const {
  KD_CHECK(shape_numel(new_shape) == numel(),
           "view " << shape_str(new_shape) << " of " << describe(*this));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = new_shape;
  impl->dtype = dtype();
  return Tensor(impl);
}

#define KD_INSTANTIATE(T)                                                        \
  template Tensor Tensor::from_vector<T>(const Shape&, const std::vector<T>&); \
  template T* Tensor::data<T>() const;                                           \
  template std::vector<T> Tensor::to_vector<T>() const;
KD_INSTANTIATE(float)
KD_INSTANTIATE(double)
KD_INSTANTIATE(int32_t)
KD_INSTANTIATE(int64_t)
KD_INSTANTIATE(uint8_t)
KD_INSTANTIATE(bf16)
#undef KD_INSTANTIATE

}  // namespace kd
