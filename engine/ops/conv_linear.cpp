// Front doors for conv2d and linear: shape checks, dispatch to the CPU kernels, our CUDA kernels
// or cuDNN (--conv; the forward's choice is kept for the backward), backward recording.
#include <memory>
#include <vector>

#include "engine/ops.h"
#include "engine/ops/bf16_operands.h"
#include "engine/ops/dispatch.h"
#include "kernels/conv2d.h"
#include "kernels/linear.h"

namespace kd {
namespace ops {
using namespace detail;

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int stride, int pad,
              const Tensor& residual) {
  const DType compute = compute_dtype("conv2d", {x, w, bias, residual});
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
  KD_CHECK(!residual.defined() ||
               (residual.shape() == y.shape() && residual.dtype() == y.dtype() && !bias.defined()),
           "conv2d: residual " << describe(residual) << " for output " << describe(y)
                               << (bias.defined() ? " (and a bias: not supported together)" : ""));
  const bool on_gpu = x.is_cuda();
  const bool use_cudnn = on_gpu && runtime_config().gpu_kernels.conv == GpuImpl::Cudnn;
  // --precision bf16 on our kernels: one pass over the bf16 operands (the _bf16 entries; under
  // --tf32 on tensor cores, with the fp32 kernels' bits on the widened operands). Elsewhere
  // (cuDNN) the fp32 views.
  const bool bf16_kernels = !use_cudnn && x.dtype() == DType::BF16 && w.dtype() == DType::BF16;
  dispatch_compute("conv2d", compute, [&](auto tag) {
    using T = decltype(tag);
    const KernelTable<T>& table = use_cudnn ? cudnn_kernels<T>(x) : kernels<T>(x);
    if (bf16_kernels) {
      if (residual.defined())
        table.conv2d_forward_residual_bf16(g, x.data<bf16>(), w.data<bf16>(),
                                           residual.data<bf16>(), y.data<bf16>());
      else
        table.conv2d_forward_bf16(g, x.data<bf16>(), w.data<bf16>(), ptr_or_null<T>(bias),
                                  y.data<bf16>());
      return;
    }
    Out<T> out(y);
    if (residual.defined())
      table.conv2d_forward_residual(g, In<T>(x).get(), In<T>(w).get(), In<T>(residual).get(),
                                    out.get());
    else
      table.conv2d_forward(g, In<T>(x).get(), In<T>(w).get(), In<T>(bias).get(), out.get());
    out.commit();
  });
  if (should_record({x, w, bias, residual})) {
    record_node("conv2d", {x, w, bias, residual}, {y}, [x, w, bias, residual, y, g, compute,
                                                        use_cudnn, bf16_kernels]() {
      dispatch_compute("conv2d", compute, [&](auto tag) {
        using T = decltype(tag);
        const KernelTable<T>& table = use_cudnn ? cudnn_kernels<T>(x) : kernels<T>(x);
        if (bf16_kernels && w.requires_grad()) {  // both passes over bf16, one launch on a GPU
          bool accumulate = false;
          Tensor dx;
          if (x.requires_grad()) dx = Tensor(x).grad_for_write(&accumulate);
          table.conv2d_backward_bf16(g, x.data<bf16>(), w.data<bf16>(), y.grad().data<bf16>(),
                                     dx.defined() ? dx.data<bf16>() : nullptr, accumulate,
                                     Tensor(w).grad_or_zeros().data<bf16>(), grad_ptr<T>(bias));
          return;
        }
        const In<T> dy(y.grad());
        const In<T> w_in(w);
        // dx is assigned when x has no gradient yet: no zeroing, no read.
        std::unique_ptr<GradWrite<T>> dx;
        if (x.requires_grad()) dx = std::make_unique<GradWrite<T>>(x);
        T* dx_ptr = dx ? dx->get() : nullptr;
        const bool accumulate = dx && dx->accumulate();
        GradAccumulate<T> dbias(bias);
        // Both passes in one call: on our GPU kernels, one launch.
        if (w.requires_grad() || dbias.get()) {
          GradOrScratch<T> dw(w);
          table.conv2d_backward(g, In<T>(x).get(), w_in.get(), dy.get(), dx_ptr, accumulate,
                                dw.get(), dbias.get());
          dw.commit();
        } else if (dx) {
          table.conv2d_backward_data(g, dy.get(), w_in.get(), dx_ptr, accumulate);
        }
        if (dx) dx->commit();
        dbias.commit();
      });
      // The residual's gradient is dy, handed on as add's backward does (after the convolution's
      // passes have read it; nothing reads y's gradient again).
      if (residual.defined() && residual.requires_grad()) {
        Tensor in = residual;
        if (!in.grad().defined()) {
          in.set_grad(y.grad(), y.grad_shared());
        } else {
          dispatch_compute("conv2d", compute,
                           [&](auto tag) { add_to_grad<decltype(tag)>(in, y.grad()); });
        }
      }
    });
  }
  return y;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const DType compute = compute_dtype("linear", {x, w, bias});
  KD_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1),
           "linear: input " << describe(x) << " and weight " << describe(w)
                            << " (expected [b,in] and [out,in])");
  KD_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == w.size(0)),
           "linear: bias " << describe(bias) << " for weight " << describe(w));
  LinearGeom g;
  g.batch = int(x.size(0)), g.in = int(x.size(1)), g.out = int(w.size(0));
  Tensor y = Tensor::empty({g.batch, g.out}, x.dtype(), x.device());
  dispatch_compute("linear", compute, [&](auto tag) {
    using T = decltype(tag);
    Out<T> out(y);
    kernels<T>(x).linear_forward(g, In<T>(x).get(), In<T>(w).get(), In<T>(bias).get(), out.get());
    out.commit();
  });
  if (should_record({x, w, bias})) {
    record_node("linear", {x, w, bias}, {y}, [x, w, bias, y, g, compute]() {
      dispatch_compute("linear", compute, [&](auto tag) {
        using T = decltype(tag);
        const In<T> dy(y.grad());
        GradAccumulate<T> dx(x);
        if (dx.get()) kernels<T>(x).linear_backward_data(g, dy.get(), In<T>(w).get(), dx.get());
        dx.commit();
        GradAccumulate<T> dbias(bias);
        if (w.requires_grad() || dbias.get()) {
          GradOrScratch<T> dw(w);
          kernels<T>(x).linear_backward_weight(g, In<T>(x).get(), dy.get(), dw.get(), dbias.get());
          dw.commit();
        }
        dbias.commit();
      });
    });
  }
  return y;
}

}  // namespace ops
}  // namespace kd
