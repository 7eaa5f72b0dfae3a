// Front door for casts between a floating dtype (f32, f64) and bf16 storage (kernels/cast.h):
// the bf16 precision's weight copies (fp32 master weights to bf16, their gradients back into
// fp32) and its bf16 activations to fp32 where the maths must be fp32 (losses, metrics).
// The gradient of a cast is the reverse cast of the incoming gradient (straight-through, as
// PyTorch's .to()): rounding has a zero derivative almost everywhere, so a finite-difference
// check does not apply; tests/test_cast.cpp asserts the gradient's values instead.
#include "engine/ops.h"
#include "engine/ops/dispatch.h"
#include "kernels/cast.h"

namespace kd {
namespace ops {
using namespace detail;

Tensor cast(const Tensor& x, DType dtype) {
  check_operands("cast", {x});
  if (x.dtype() == dtype) return x;
  const bool narrowing = dtype == DType::BF16;
  KD_CHECK((narrowing && (x.dtype() == DType::F32 || x.dtype() == DType::F64)) ||
               (x.dtype() == DType::BF16 && (dtype == DType::F32 || dtype == DType::F64)),
           "cast: from " << dtype_name(x.dtype()) << " to " << dtype_name(dtype)
                         << " is not an op (F32 or F64 to BF16 and back; Tensor::to copies "
                            "other dtypes without autograd)");
  Tensor y = Tensor::empty(x.shape(), dtype, x.device());
  const Tensor& wide = narrowing ? x : y;  // the f32 or f64 side picks the kernels
  const int64_t n = x.numel();
  dispatch_floating("cast", wide, [&](auto tag) {
    using T = decltype(tag);
    if (narrowing) kernels<T>(wide).to_bf16(n, x.data<T>(), y.data<bf16>(), false);
    else kernels<T>(wide).from_bf16(n, x.data<bf16>(), y.data<T>(), false);
  });
  if (should_record({x})) {
    record_node("cast", {x}, {y}, [x, y, narrowing, n]() {
      const Tensor& wide_side = narrowing ? x : y;
      dispatch_floating("cast", wide_side, [&](auto tag) {
        using T = decltype(tag);
        bool accumulate = false;
        Tensor dx = Tensor(x).grad_for_write(&accumulate);
        if (narrowing)
          kernels<T>(wide_side).from_bf16(n, y.grad().data<bf16>(), dx.data<T>(), accumulate);
        else
          kernels<T>(wide_side).to_bf16(n, y.grad().data<T>(), dx.data<bf16>(), accumulate);
      });
    });
  }
  return y;
}

namespace {
// 256 bytes of bf16: each copy is as aligned as the buffer (up to 256 bytes), as its own
// allocation would be.
constexpr int64_t kCopyAlignElems = 128;
int64_t aligned_up(int64_t n) {
  return (n + kCopyAlignElems - 1) / kCopyAlignElems * kCopyAlignElems;
}
}  // namespace

std::vector<Tensor> cast_to_bf16(const std::vector<Tensor>& xs) {
  if (xs.empty()) return {};
  const Tensor& first = xs.front();
  int64_t total = 0;
  std::vector<int64_t> offsets, sizes;
  bool record = false;
  for (const Tensor& x : xs) {
    check_operands("cast_to_bf16", {x});
    KD_CHECK((x.dtype() == DType::F32 || x.dtype() == DType::F64) && x.dtype() == first.dtype() &&
                 x.device() == first.device(),
             "cast_to_bf16: expected F32 or F64 tensors of one dtype and device, got "
                 << describe(first) << " and " << describe(x));
    offsets.push_back(total);
    sizes.push_back(x.numel());
    total += aligned_up(x.numel());
    record = record || should_record({x});
  }
  const Tensor copies = Tensor::empty({total}, DType::BF16, first.device());
  std::vector<Tensor> ys;
  for (size_t i = 0; i < xs.size(); ++i)
    ys.push_back(copies.slice_flat(offsets[i], xs[i].shape()));
  const int count = static_cast<int>(xs.size());
  dispatch_floating("cast_to_bf16", first, [&](auto tag) {
    using T = decltype(tag);
    std::vector<const T*> from;
    std::vector<bf16*> to;
    for (size_t i = 0; i < xs.size(); ++i)
      from.push_back(xs[i].data<T>()), to.push_back(ys[i].data<bf16>());
    kernels<T>(first).to_bf16_multi(count, sizes.data(), from.data(), to.data());
  });
  if (!record) return ys;
  // The copies' gradients: one buffer, zeroed once, so the kernels that add into a fresh
  // gradient (the bf16 weight passes) need no memset each.
  Tensor grads = Tensor::empty({total}, DType::BF16, first.device());
  grads.zero_();
  for (size_t i = 0; i < xs.size(); ++i)
    ys[i].set_grad(grads.slice_flat(offsets[i], xs[i].shape()));
  record_node("cast_to_bf16", xs, ys, [xs, ys, sizes]() {
    dispatch_floating("cast_to_bf16", xs.front(), [&](auto tag) {
      using T = decltype(tag);
      // The inputs' gradients: added into where they exist (the optimizer's arena), else
      // assigned; one call for each kind ([1]: added, [0]: assigned).
      struct Targets {
        std::vector<int64_t> n;
        std::vector<const bf16*> from;
        std::vector<T*> to;
      } targets[2];
      for (size_t i = 0; i < xs.size(); ++i) {
        if (!xs[i].requires_grad() || !ys[i].grad().defined()) continue;
        bool accumulate = false;
        Tensor dx = Tensor(xs[i]).grad_for_write(&accumulate);
        Targets& t = targets[accumulate];
        t.n.push_back(sizes[i]);
        t.from.push_back(ys[i].grad().data<bf16>());
        t.to.push_back(dx.data<T>());
      }
      for (bool accumulate : {true, false}) {
        const Targets& t = targets[accumulate];
        if (t.n.empty()) continue;
        kernels<T>(xs.front()).from_bf16_multi(static_cast<int>(t.n.size()), t.n.data(),
                                               t.from.data(), t.to.data(), accumulate);
      }
    });
  });
  return ys;
}

}  // namespace ops
}  // namespace kd
