// The one cuDNN handle of the process (bound to the compute stream) and owning wrappers for the
// descriptors kdlab uses: packed NCHW tensors, KCRS filters, 2-D cross-correlation, the identity
// activation, and the per-shape cache the convolution and batchnorm calls keep them in
// (descriptors_for_shape). Each wrapper destroys its own. CUDA/cuDNN-only: included by
// kernels/cudnn/*.cu. Every cuDNN call goes through CUDNN_CHECK; calls that enqueue GPU work are
// counted with cuda::count_launch() by their callers.
#pragma once
#include <cudnn.h>

#include <array>
#include <cstddef>
#include <map>
#include <memory>

#include "base/check.h"

namespace kd {
namespace cudnn {

cudnnHandle_t handle();

template <class T>
struct DataType;
template <>
struct DataType<float> {
  static constexpr cudnnDataType_t value = CUDNN_DATA_FLOAT;
};
template <>
struct DataType<double> {
  static constexpr cudnnDataType_t value = CUDNN_DATA_DOUBLE;
};

class TensorDesc {
 public:
  TensorDesc() { CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc_)); }
  // Packed NCHW.
  TensorDesc(cudnnDataType_t type, int n, int c, int h, int w) : TensorDesc() {
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NCHW, type, n, c, h, w));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(desc_); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

// The per-channel [1, c, 1, 1] descriptor of batch-norm scale, bias, means and variances, in the
// type cuDNN wants for x (float for float, double for double).
class BatchNormParamDesc {
 public:
  explicit BatchNormParamDesc(const TensorDesc& x) {
    CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(desc_.get(), x.get(), CUDNN_BATCHNORM_SPATIAL));
  }
  cudnnTensorDescriptor_t get() const { return desc_.get(); }

 private:
  TensorDesc desc_;
};

class FilterDesc {
 public:
  FilterDesc(cudnnDataType_t type, int k, int c, int r, int s) {
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&desc_));
    const cudnnStatus_t status =
        cudnnSetFilter4dDescriptor(desc_, type, CUDNN_TENSOR_NCHW, k, c, r, s);
    if (status != CUDNN_STATUS_SUCCESS) cudnnDestroyFilterDescriptor(desc_);
    CUDNN_CHECK(status);
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(desc_); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  cudnnFilterDescriptor_t get() const { return desc_; }

 private:
  cudnnFilterDescriptor_t desc_ = nullptr;
};

// Square padding and stride, no dilation, one group, computing in `type`.
class ConvDesc {
 public:
  ConvDesc(cudnnDataType_t type, int pad, int stride) {
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&desc_));
    const cudnnStatus_t status = cudnnSetConvolution2dDescriptor(
        desc_, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION, type);
    if (status != CUDNN_STATUS_SUCCESS) cudnnDestroyConvolutionDescriptor(desc_);
    CUDNN_CHECK(status);
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(desc_); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  cudnnConvolutionDescriptor_t get() const { return desc_; }
  void set_math(cudnnMathType_t math) { CUDNN_CHECK(cudnnSetConvolutionMathType(desc_, math)); }

 private:
  cudnnConvolutionDescriptor_t desc_ = nullptr;
};

// The identity activation (the residual fold's, conv2d_fold.cu), propagating NaN.
class IdentityActivation {
 public:
  IdentityActivation() {
    CUDNN_CHECK(cudnnCreateActivationDescriptor(&desc_));
    const cudnnStatus_t status =
        cudnnSetActivationDescriptor(desc_, CUDNN_ACTIVATION_IDENTITY, CUDNN_PROPAGATE_NAN, 0.0);
    if (status != CUDNN_STATUS_SUCCESS) cudnnDestroyActivationDescriptor(desc_);
    CUDNN_CHECK(status);
  }
  ~IdentityActivation() { cudnnDestroyActivationDescriptor(desc_); }
  IdentityActivation(const IdentityActivation&) = delete;
  IdentityActivation& operator=(const IdentityActivation&) = delete;
  cudnnActivationDescriptor_t get() const { return desc_; }

 private:
  cudnnActivationDescriptor_t desc_ = nullptr;
};

// The descriptors of one shape (Descs built from args), made on the shape's first call and kept for
// the calling thread's lifetime: creating, setting and destroying them on every call of a step's
// convolutions and batchnorms is host time the GPU waits for. Thread-local, so state one call
// sets on them (the convolution's math type) never meets another thread's call. A constructor
// that throws leaves the slot empty, so the next call tries again.
template <class Descs, size_t N, class... Args>
Descs& descriptors_for_shape(const std::array<int, N>& shape, const Args&... args) {
  thread_local std::map<std::array<int, N>, std::unique_ptr<Descs>> cache;
  std::unique_ptr<Descs>& slot = cache[shape];
  if (!slot) slot = std::make_unique<Descs>(args...);
  return *slot;
}

}  // namespace cudnn
}  // namespace kd
