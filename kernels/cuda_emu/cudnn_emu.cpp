// The cuDNN paths (--conv cudnn, --bn cudnn) on the emulated CUDA device: each cudnn:: entry point
// runs its cpu:: twin on the emulated device's (host) memory, inside an emu::Launch (counted; its
// pointer arguments must be live device blocks, opened in guard mode). cuDNN is a library we do
// not write, so there is nothing of ours to emulate in it; our own CUDA kernels run from their
// source on the grid emulator (kernels/cuda_grid/).
#include <cstdint>

#include "kernels/conv2d.h"
#include "kernels/cuda_emu/emu.h"
#include "kernels/normalization.h"

namespace kd {
namespace cudnn {

template <class T>
void conv2d_forward(const ConvGeom& g, const T* x, const T* w, const T* bias, T* y) {
  cuda::emu::Launch launch("cudnn::conv2d_forward", x, w, bias, y);
  cpu::conv2d_forward<T>(g, x, w, bias, y);
}
template <class T>
void conv2d_backward_data(const ConvGeom& g, const T* dy, const T* w, T* dx) {
  cuda::emu::Launch launch("cudnn::conv2d_backward_data", dy, w, dx);
  cpu::conv2d_backward_data<T>(g, dy, w, dx);
}
template <class T>
void conv2d_backward_weight(const ConvGeom& g, const T* x, const T* dy, T* dw, T* dbias) {
  cuda::emu::Launch launch("cudnn::conv2d_backward_weight", x, dy, dw, dbias);
  cpu::conv2d_backward_weight<T>(g, x, dy, dw, dbias);
}
template <class T>
void batchnorm_forward_train(const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps,
                             T momentum, T* y, T* save_mean, T* save_invstd, T* running_mean,
                             T* running_var) {
  cuda::emu::Launch launch("cudnn::batchnorm_forward_train", x, gamma, beta, y, save_mean,
                           save_invstd, running_mean, running_var);
  cpu::batchnorm_forward_train<T>(g, x, gamma, beta, eps, momentum, y, save_mean, save_invstd,
                                  running_mean, running_var);
}
template <class T>
void batchnorm_forward_eval(const NormGeom& g, const T* x, const T* gamma, const T* beta,
                            const T* running_mean, const T* running_var, T eps, T* y) {
  cuda::emu::Launch launch("cudnn::batchnorm_forward_eval", x, gamma, beta, running_mean,
                           running_var, y);
  cpu::batchnorm_forward_eval<T>(g, x, gamma, beta, running_mean, running_var, eps, y);
}
template <class T>
void batchnorm_backward_train(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                              const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                              T* dbeta) {
  cuda::emu::Launch launch("cudnn::batchnorm_backward_train", x, dy, gamma, save_mean,
                           save_invstd, dx, dgamma, dbeta);
  cpu::batchnorm_backward_train<T>(g, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}

#define KD_INSTANTIATE(T)                                                                        \
  template void conv2d_forward<T>(const ConvGeom&, const T*, const T*, const T*, T*);           \
  template void conv2d_backward_data<T>(const ConvGeom&, const T*, const T*, T*);               \
  template void conv2d_backward_weight<T>(const ConvGeom&, const T*, const T*, T*, T*);         \
  template void batchnorm_forward_train<T>(const NormGeom&, const T*, const T*, const T*, T, T, \
                                           T*, T*, T*, T*, T*);                                 \
  template void batchnorm_forward_eval<T>(const NormGeom&, const T*, const T*, const T*,        \
                                          const T*, const T*, T, T*);                           \
  template void batchnorm_backward_train<T>(const NormGeom&, const T*, const T*, const T*,      \
                                            const T*, const T*, T*, T*, T*);
KD_INSTANTIATE(float)
KD_INSTANTIATE(double)
#undef KD_INSTANTIATE

}  // namespace cudnn
}  // namespace kd
