// Contract: fully connected layer, PyTorch layout.
//   x [b, in]   w [out, in]   bias [out] or null   y [b, out] = x w^T + bias
// Forward ASSIGNS y. Backward ACCUMULATES: dx += dy w ; dw += dy^T x ; dbias += sum_b dy.
#pragma once

namespace kd {

struct LinearGeom {
  int batch = 0, in = 0, out = 0;
};

#define KD_LINEAR_DECLS                                                                      \
  template <class T>                                                                         \
  void linear_forward(const LinearGeom& g, const T* x, const T* w, const T* bias, T* y);     \
  template <class T>                                                                         \
  void linear_backward_data(const LinearGeom& g, const T* dy, const T* w, T* dx);            \
  template <class T>                                                                         \
  void linear_backward_weight(const LinearGeom& g, const T* x, const T* dy, T* dw, T* dbias);

namespace ref {
KD_LINEAR_DECLS
}  // namespace ref

namespace cpu {
KD_LINEAR_DECLS
}  // namespace cpu

// Device pointers on the compute stream; cuBLAS GEMMs (TF32 per cuda::math_mode()).
namespace cuda {
KD_LINEAR_DECLS
}  // namespace cuda
#undef KD_LINEAR_DECLS

}  // namespace kd
