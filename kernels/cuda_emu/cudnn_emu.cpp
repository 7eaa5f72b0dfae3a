// The cuDNN paths (--conv cudnn, --bn cudnn) on the emulated CUDA device: each cudnn:: entry point
// runs its CPU twin (from the host backend) on the emulated device's (host) memory as one stream
// operation (counted as one launch, recorded while a CUDA graph is captured; its pointer arguments
// must be live device blocks, opened in guard mode). cuDNN is a library we do not write, so there
// is nothing of ours to emulate in it; our own CUDA kernels run from their source on the grid
// emulator (kernels/cuda_grid/), including those kernels/cudnn/ itself adds around a cuDNN call
// (batchnorm's ReLU), so the emulated path issues the launches the real one does.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/backend.h"
#include "kernels/conv2d.h"
#include "kernels/cuda/env_switch.h"
#include "kernels/cuda_emu/emu.h"
#include "kernels/elementwise.h"
#include "kernels/normalization.h"

namespace kd {
namespace cuda {
namespace emu {
// The loading program's CPU backend (kdlab_gpu_backend's argument): cuDNN's stand-ins run its
// kernels, so this library carries no copy of the CPU kernels.
const Backend* g_host_backend = nullptr;
}  // namespace emu
}  // namespace cuda

namespace cudnn {
namespace {
template <class T>
const KernelTable<T>& host_kernels() {
  KD_CHECK(cuda::emu::g_host_backend, "emulated cuDNN: no host backend was given");
  return cuda::emu::g_host_backend->kernels<T>();
}
// Counted when issued; run now, or at each replay of a captured graph.
template <class Body>
void cudnn_call(const char* name, std::vector<const void*> pointers, Body body) {
  cuda::emu::stream_op([=] {
    cuda::emu::DeviceAccess access(name, pointers);
    body();
  });
  cuda::count_launch();
}
}  // namespace

// As kernels/cudnn/conv2d.cu: the convolution, then the bias as a second cuDNN call
// (cudnnAddTensor, y += bias broadcast over images and positions).
template <class T>
void conv2d_forward(const ConvGeom& g, const T* x, const T* w, const T* bias, T* y) {
  cudnn_call("cudnn::conv2d_forward", {x, w, y}, [=] {
    host_kernels<T>().conv2d_forward(g, x, w, nullptr, y);
  });
  if (!bias || g.n == 0) return;
  cudnn_call("cudnn::add_tensor", {bias, y}, [=] {
    const int64_t plane = int64_t(g.p()) * g.q();
    for (int64_t img = 0; img < g.n; ++img)
      for (int64_t ch = 0; ch < g.k; ++ch)
        for (int64_t j = 0; j < plane; ++j) y[(img * g.k + ch) * plane + j] += bias[ch];
  });
}
// As kernels/cudnn/conv2d.cu: float folds the residual into cuDNN's call (one launch) unless
// KDLAB_CUDNN_RESIDUAL=separate; double, or separate, is the convolution, then our kernel adds the
// residual in place.
template <class T>
void conv2d_forward_residual(const ConvGeom& g, const T* x, const T* w, const T* residual, T* y) {
  if (g.n == 0) return;
  if (std::is_same<T, float>::value && cuda::cudnn_residual_folded()) {
    cudnn_call("cudnn::conv2d_forward_residual", {x, w, residual, y}, [=] {
      host_kernels<T>().conv2d_forward_residual(g, x, w, residual, y);
    });
    return;
  }
  conv2d_forward(g, x, w, static_cast<const T*>(nullptr), y);
  cuda::accumulate(int64_t(g.n) * g.k * g.p() * g.q(), T(1), residual, y);
}
template <class T>
void conv2d_backward_data(const ConvGeom& g, const T* dy, const T* w, T* dx, bool accumulate) {
  cudnn_call("cudnn::conv2d_backward_data", {dy, w, dx}, [=] {
    host_kernels<T>().conv2d_backward_data(g, dy, w, dx, accumulate);
  });
}
// As kernels/cudnn/conv2d.cu: cuDNN's filter gradient, then our bias-gradient kernel.
template <class T>
void conv2d_backward_weight(const ConvGeom& g, const T* x, const T* dy, T* dw, T* dbias) {
  cudnn_call("cudnn::conv2d_backward_weight", {x, dy, dw}, [=] {
    host_kernels<T>().conv2d_backward_weight(g, x, dy, dw, nullptr);
  });
  if (dbias) cuda::conv2d_bias_grad(g, dy, dbias);
}
template <class T>
void batchnorm_forward_train(const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps,
                             T momentum, T* y, T* save_mean, T* save_invstd, T* running_mean,
                             T* running_var, int64_t* batches_tracked, bool relu) {
  cudnn_call("cudnn::batchnorm_forward_train",
             {x, gamma, beta, y, save_mean, save_invstd, running_mean, running_var}, [=] {
    host_kernels<T>().batchnorm_forward_train(g, x, gamma, beta, eps, momentum, y, save_mean,
                                              save_invstd, running_mean, running_var, nullptr,
                                              false);
  });
  // As kernels/cudnn/batchnorm.cu: cuDNN's call has no fused activation nor a batch count, so
  // one kernel of ours does both (the ReLU in place), a second launch.
  if (relu) cuda::relu_forward_and_count<T>(int64_t(g.n) * g.c * g.hw, y, y, batches_tracked);
  else if (batches_tracked) cuda::counter_add(batches_tracked, 1);
}
template <class T>
void batchnorm_forward_eval(const NormGeom& g, const T* x, const T* gamma, const T* beta,
                            const T* running_mean, const T* running_var, T eps, T* y) {
  cudnn_call("cudnn::batchnorm_forward_eval",
             {x, gamma, beta, running_mean, running_var, y}, [=] {
    host_kernels<T>().batchnorm_forward_eval(g, x, gamma, beta, running_mean, running_var, eps, y);
  });
}
template <class T>
void batchnorm_backward_train(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                              const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                              T* dbeta, bool accumulate, const T* relu_out) {
  KD_CHECK(!relu_out, "cudnn batchnorm (backward): no fused ReLU here; mask dy first");
  cudnn_call("cudnn::batchnorm_backward_train",
             {x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta}, [=] {
    host_kernels<T>().batchnorm_backward_train(g, x, dy, gamma, save_mean, save_invstd, dx, dgamma,
                                               dbeta, accumulate, nullptr);
  });
}

KD_CONV2D_BACKWARD_AS_TWO_PASSES

KD_DEFINE_REGISTRAR(register_conv2d, KD_CONV2D_KERNELS)
KD_DEFINE_REGISTRAR(register_batchnorm, KD_BATCHNORM_KERNELS)

}  // namespace cudnn
}  // namespace kd
