// Front doors for batch_norm and group_norm. Saved statistics live in tensors captured by the
// backward closure, so they are freed with the tape node. On the GPU, batchnorm runs our kernels
// or cuDNN's (--bn); the choice made at forward time is the one the backward uses.
#include <memory>

#include "engine/ops.h"
#include "engine/ops/bf16_operands.h"
#include "engine/ops/dispatch.h"
#include "kernels/normalization.h"

namespace kd {
namespace ops {
using namespace detail;

namespace {
NormGeom norm_geom(const char* op, const Tensor& x, const Tensor& gamma, const Tensor& beta) {
  KD_CHECK(x.dim() == 4 || x.dim() == 2, op << ": expected [n,c,h,w] or [n,c], got " << describe(x));
  NormGeom g;
  g.n = int(x.size(0)), g.c = int(x.size(1));
  g.hw = x.dim() == 4 ? int(x.size(2) * x.size(3)) : 1;
  for (const Tensor* p : {&gamma, &beta})
    KD_CHECK(p->defined() && p->dim() == 1 && p->size(0) == g.c,
             op << ": affine parameter " << describe(*p) << " for input " << describe(x));
  return g;
}
}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean,
                  Tensor running_var, bool training, double momentum, double eps, bool relu,
                  Tensor batches_tracked) {
  const DType compute =
      compute_dtype("batch_norm", {x, gamma, beta, running_mean, running_var});
  check_parameters("batch_norm", compute, {&gamma, &beta, &running_mean, &running_var});
  KD_CHECK(!batches_tracked.defined() ||
               (batches_tracked.dtype() == DType::I64 && batches_tracked.numel() == 1 &&
                batches_tracked.device() == x.device()),
           "batch_norm: batches_tracked " << describe(batches_tracked)
                                          << " (expected one i64 beside the input)");
  int64_t* tracked =
      training && batches_tracked.defined() ? batches_tracked.data<int64_t>() : nullptr;
  NormGeom g = norm_geom("batch_norm", x, gamma, beta);
  KD_CHECK(running_mean.defined() == running_var.defined(),
           "batch_norm: give both running statistics or neither");
  KD_CHECK(training || running_mean.defined(), "batch_norm: eval mode needs running statistics");
  KD_CHECK(!training || int64_t(g.n) * g.hw > 1,
           "batch_norm: training needs more than one value per channel, got " << describe(x));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor save_mean, save_invstd;
  if (training) {
    save_mean = Tensor::empty({g.c}, compute, x.device());
    save_invstd = Tensor::empty({g.c}, compute, x.device());
  }
  const bool on_gpu = x.is_cuda();
  const bool use_cudnn = on_gpu && runtime_config().gpu_kernels.bn == GpuImpl::Cudnn;
  // --precision bf16 on our training kernels: one pass over bf16 memory (their _bf16 entries).
  // cuDNN and eval mode go through fp32 views (bf16_operands.h), the same values.
  const bool bf16_kernels = training && !use_cudnn && x.dtype() == DType::BF16;
  dispatch_compute("batch_norm", compute, [&](auto tag) {
    using T = decltype(tag);
    if (bf16_kernels) {
      kernels<T>(x).batchnorm_forward_train_bf16(
          g, x.data<bf16>(), gamma.data<T>(), beta.data<T>(), T(eps), T(momentum),
          y.data<bf16>(), save_mean.data<T>(), save_invstd.data<T>(), ptr_or_null<T>(running_mean),
          ptr_or_null<T>(running_var), tracked, relu);
      return;
    }
    const In<T> xin(x);
    Out<T> out(y);
    if (training && use_cudnn)
      cudnn_kernels<T>(x).batchnorm_forward_train(
          g, xin.get(), gamma.data<T>(), beta.data<T>(), T(eps), T(momentum), out.get(),
          save_mean.data<T>(), save_invstd.data<T>(), ptr_or_null<T>(running_mean),
          ptr_or_null<T>(running_var), tracked, relu);
    else if (training)
      kernels<T>(x).batchnorm_forward_train(g, xin.get(), gamma.data<T>(), beta.data<T>(),
                                            T(eps), T(momentum), out.get(), save_mean.data<T>(),
                                            save_invstd.data<T>(), ptr_or_null<T>(running_mean),
                                            ptr_or_null<T>(running_var), tracked, relu);
    else if (use_cudnn)
      cudnn_kernels<T>(x).batchnorm_forward_eval(
          g, xin.get(), gamma.data<T>(), beta.data<T>(), running_mean.data<T>(),
          running_var.data<T>(), T(eps), out.get());
    else
      kernels<T>(x).batchnorm_forward_eval(g, xin.get(), gamma.data<T>(), beta.data<T>(),
                                           running_mean.data<T>(), running_var.data<T>(), T(eps),
                                           out.get());
    if (!training && relu) kernels<T>(x).relu_forward(y.numel(), out.get(), out.get());
    out.commit();
  });
  if (should_record({x, gamma, beta})) {
    // Eval mode reads the running statistics at backward time; snapshot them so a later
    // update cannot change this node's gradient.
    Tensor rm = training ? Tensor() : running_mean.clone();
    Tensor rv = training ? Tensor() : running_var.clone();
    record_node("batch_norm", {x, gamma, beta}, {y}, [x, gamma, beta, y, g, training, save_mean, save_invstd, rm,
                                   rv, eps, compute, use_cudnn, relu, bf16_kernels]() {
      dispatch_compute("batch_norm", compute, [&](auto tag) {
        using T = decltype(tag);
        const GradOrScratch<T> dgamma(gamma), dbeta(beta);  // f32: nothing to commit
        if (bf16_kernels) {
          bool accumulate = false;
          Tensor dx = x.requires_grad() ? Tensor(x).grad_for_write(&accumulate)
                                        : Tensor::empty(x.shape(), DType::BF16, x.device());
          kernels<T>(x).batchnorm_backward_train_bf16(
              g, x.data<bf16>(), y.grad().data<bf16>(), gamma.data<T>(), save_mean.data<T>(),
              save_invstd.data<T>(), dx.data<bf16>(), dgamma.get(), dbeta.get(), accumulate,
              relu ? y.data<bf16>() : nullptr);
          return;
        }
        // Training: dx is assigned when x has no gradient yet (no zeroing, no read), and goes to
        // an unzeroed scratch when x needs none. Eval's backward accumulates.
        bool accumulate_dx = true;
        T* dx = nullptr;
        Tensor dx_scratch;
        std::unique_ptr<GradOrScratch<T>> eval_dx;
        std::unique_ptr<GradWrite<T>> train_dx;
        if (!training) {
          eval_dx = std::make_unique<GradOrScratch<T>>(x);
          dx = eval_dx->get();
        } else if (x.requires_grad()) {
          train_dx = std::make_unique<GradWrite<T>>(x);
          dx = train_dx->get();
          accumulate_dx = train_dx->accumulate();
        } else {
          dx_scratch = Tensor::empty(x.shape(), compute, x.device());
          dx = dx_scratch.data<T>();
          accumulate_dx = false;
        }
        const In<T> dy_in(y.grad());
        const In<T> x_in(x);
        const T* dy = dy_in.get();
        // The fused ReLU's backward: inside our training kernel (it reads y for the mask);
        // elsewhere dy is masked into a scratch first.
        const bool fused = relu && training && !use_cudnn;
        const In<T> y_in(relu ? y : Tensor());
        Tensor masked;
        if (relu && !fused) {
          masked = Tensor::empty(y.shape(), compute, y.device());
          kernels<T>(x).relu_backward(y.numel(), y_in.get(), dy, masked.data<T>(), false);
          dy = masked.data<T>();
        }
        const T* relu_out = fused ? y_in.get() : nullptr;
        if (training && use_cudnn)
          cudnn_kernels<T>(x).batchnorm_backward_train(
              g, x_in.get(), dy, gamma.data<T>(), save_mean.data<T>(), save_invstd.data<T>(), dx,
              dgamma.get(), dbeta.get(), accumulate_dx, nullptr);
        else if (training)
          kernels<T>(x).batchnorm_backward_train(g, x_in.get(), dy, gamma.data<T>(),
                                                     save_mean.data<T>(), save_invstd.data<T>(),
                                                     dx, dgamma.get(), dbeta.get(), accumulate_dx,
                                                     relu_out);
        else  // cuDNN has no eval-mode backward: ours serves both paths
          kernels<T>(x).batchnorm_backward_eval(g, x_in.get(), dy, gamma.data<T>(),
                                                    rm.data<T>(), rv.data<T>(), T(eps), dx,
                                                    dgamma.get(), dbeta.get());
        if (eval_dx) eval_dx->commit();
        if (train_dx) train_dx->commit();
      });
    });
  }
  return y;
}

Tensor group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups,
                  double eps) {
  const DType compute = compute_dtype("group_norm", {x, gamma, beta});
  check_parameters("group_norm", compute, {&gamma, &beta});
  NormGeom g = norm_geom("group_norm", x, gamma, beta);
  KD_CHECK(groups >= 1 && g.c % groups == 0,
           "group_norm: " << g.c << " channels do not split into " << groups << " groups");
  g.groups = groups;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor save_mean = Tensor::empty({int64_t(g.n) * groups}, compute, x.device());
  Tensor save_invstd = Tensor::empty({int64_t(g.n) * groups}, compute, x.device());
  dispatch_compute("group_norm", compute, [&](auto tag) {
    using T = decltype(tag);
    Out<T> out(y);
    kernels<T>(x).groupnorm_forward(g, In<T>(x).get(), gamma.data<T>(), beta.data<T>(), T(eps),
                                    out.get(), save_mean.data<T>(), save_invstd.data<T>());
    out.commit();
  });
  if (should_record({x, gamma, beta})) {
    record_node("group_norm", {x, gamma, beta}, {y}, [x, gamma, beta, y, g, save_mean, save_invstd,
                                                      compute]() {
      dispatch_compute("group_norm", compute, [&](auto tag) {
        using T = decltype(tag);
        const GradOrScratch<T> dx(x), dgamma(gamma), dbeta(beta);
        kernels<T>(x).groupnorm_backward(g, In<T>(x).get(), In<T>(y.grad()).get(),
                                         gamma.data<T>(), save_mean.data<T>(),
                                         save_invstd.data<T>(), dx.get(), dgamma.get(),
                                         dbeta.get());
        dx.commit();
      });
    });
  }
  return y;
}

}  // namespace ops
}  // namespace kd
