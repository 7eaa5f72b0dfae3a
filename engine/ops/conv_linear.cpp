// Front doors for conv2d and linear: shape checks, dispatch to the CPU kernels, our CUDA kernels
// or cuDNN (--conv; the forward's choice is kept for the backward), backward recording.
#include <vector>

#include "engine/ops.h"
#include "engine/ops/dispatch.h"
#include "kernels/conv2d.h"
#include "kernels/linear.h"

namespace kd {
namespace ops {
using namespace detail;

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int stride, int pad,
              const Tensor& residual) {
  check_operands("conv2d", {x, w, bias, residual});
  KD_CHECK(x.dim() == 4 && w.dim() == 4 && x.size(1) == w.size(1),
           "conv2d: input " << describe(x) << " and weight " << describe(w)
                            << " (expected [n,c,h,w] and [k,c,r,s])");
  KD_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == w.size(0)),
           "conv2d: bias " << describe(bias) << " for weight " << describe(w));
  KD_CHECK(stride >= 1 && pad >= 0, "conv2d: stride " << stride << ", pad " << pad);
  ConvGeom g;
  g.n = int(x.size(0)), g.c = int(x.size(1)), g.h = int(x.size(2)), g.w = int(x.size(3));
  g.k = int(w.size(0)), g.r = int(w.size(2)), g.s = int(w.size(3));
  g.stride = stride, g.pad = pad;
  KD_CHECK(g.h + 2 * pad >= g.r && g.w + 2 * pad >= g.s,
           "conv2d: kernel " << g.r << "x" << g.s << " larger than padded input " << describe(x));
  Tensor y = Tensor::empty({g.n, g.k, g.p(), g.q()}, x.dtype(), x.device());
  KD_CHECK(!residual.defined() || (residual.shape() == y.shape() && !bias.defined()),
           "conv2d: residual " << describe(residual) << " for output " << describe(y)
                               << (bias.defined() ? " (and a bias: not supported together)" : ""));
  const bool on_gpu = x.is_cuda();
  const bool use_cudnn = on_gpu && runtime_config().gpu_kernels.conv == GpuImpl::Cudnn;
  dispatch_floating("conv2d", x, [&](auto tag) {
    using T = decltype(tag);
    const KernelTable<T>& table = use_cudnn ? cudnn_kernels<T>(x) : kernels<T>(x);
    if (residual.defined())
      table.conv2d_forward_residual(g, x.data<T>(), w.data<T>(), residual.data<T>(), y.data<T>());
    else
      table.conv2d_forward(g, x.data<T>(), w.data<T>(), ptr_or_null<T>(bias), y.data<T>());
  });
  if (should_record({x, w, bias, residual})) {
    record_node("conv2d", {x, w, bias, residual}, {y}, [x, w, bias, residual, y, g, on_gpu,
                                                        use_cudnn]() {
      dispatch_floating("conv2d", x, [&](auto tag) {
        using T = decltype(tag);
        const KernelTable<T>& table = use_cudnn ? cudnn_kernels<T>(x) : kernels<T>(x);
        const T* dy = y.grad().data<T>();
        // dx is assigned when x has no gradient yet: no zeroing, no read.
        bool accumulate = false;
        T* dx = x.requires_grad() ? Tensor(x).grad_for_write(&accumulate).data<T>() : nullptr;
        T* dbias = grad_ptr<T>(bias);
        // Both passes in one call: on our GPU kernels, one launch.
        if (w.requires_grad() || dbias) {
          Tensor scratch;
          T* dw = grad_or_scratch<T>(w, scratch);
          table.conv2d_backward(g, x.data<T>(), w.data<T>(), dy, dx, accumulate, dw, dbias);
        } else if (dx) {
          table.conv2d_backward_data(g, dy, w.data<T>(), dx, accumulate);
        }
      });
      // The residual's gradient is dy, handed on as add's backward does (after the convolution's
      // passes have read it; nothing reads y's gradient again).
      if (residual.defined() && residual.requires_grad()) {
        Tensor in = residual;
        if (!in.grad().defined()) {
          in.set_grad(y.grad(), y.grad_shared());
        } else {
          dispatch_floating("conv2d", x, [&](auto tag) {
            using T = decltype(tag);
            kernels<T>(x).accumulate(y.numel(), T(1), y.grad().data<T>(), grad_ptr<T>(in));
          });
        }
      }
    });
  }
  return y;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_operands("linear", {x, w, bias});
  KD_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1),
           "linear: input " << describe(x) << " and weight " << describe(w)
                            << " (expected [b,in] and [out,in])");
  KD_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == w.size(0)),
           "linear: bias " << describe(bias) << " for weight " << describe(w));
  LinearGeom g;
  g.batch = int(x.size(0)), g.in = int(x.size(1)), g.out = int(w.size(0));
  Tensor y = Tensor::empty({g.batch, g.out}, x.dtype(), x.device());
  const bool on_gpu = x.is_cuda();
  dispatch_floating("linear", x, [&](auto tag) {
    using T = decltype(tag);
    kernels<T>(x).linear_forward(g, x.data<T>(), w.data<T>(), ptr_or_null<T>(bias),
                                     y.data<T>());
  });
  if (should_record({x, w, bias})) {
    record_node("linear", {x, w, bias}, {y}, [x, w, bias, y, g, on_gpu]() {
      dispatch_floating("linear", x, [&](auto tag) {
        using T = decltype(tag);
        const T* dy = y.grad().data<T>();
        if (T* dx = grad_ptr<T>(x)) kernels<T>(x).linear_backward_data(g, dy, w.data<T>(), dx);
        T* dbias = grad_ptr<T>(bias);
        if (w.requires_grad() || dbias) {
          Tensor scratch;
          T* dw = grad_or_scratch<T>(w, scratch);
          kernels<T>(x).linear_backward_weight(g, x.data<T>(), dy, dw, dbias);
        }
      });
    });
  }
  return y;
}

}  // namespace ops
}  // namespace kd
