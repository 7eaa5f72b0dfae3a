// Front door for dropout (ops.h): checks p and the key's range, draws nothing itself (the
// kernels compute the mask from the key), records a backward that regenerates the same mask.
#include "engine/ops.h"
#include "engine/ops/bf16_operands.h"
#include "engine/ops/dispatch.h"
#include "kernels/elementwise.h"

namespace kd {
namespace ops {
using namespace detail;

Tensor dropout(const Tensor& x, double p, const DropoutKey& key, bool training) {
  const DType compute = compute_dtype("dropout", {x});
  KD_CHECK(p >= 0 && p < 1, "dropout: p must be in [0, 1), got " << p);
  if (!training || p == 0) return x;
  KD_CHECK(x.numel() <= kDropoutMaxElements,
           "dropout: " << describe(x) << " has more than 2^34 elements (the mask's counter range)");
  KD_CHECK(key.step < kDropoutMaxStep,
           "dropout: step " << key.step << " is past 2^32 (the mask's counter range)");
  const DropoutMask mask{key, dropout_threshold(p)};
  const double scale = 1.0 / (1.0 - p);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_compute("dropout", compute, [&](auto tag) {
    using T = decltype(tag);
    Out<T> out(y);
    kernels<T>(x).dropout_forward(x.numel(), mask, T(scale), In<T>(x).get(), out.get());
    out.commit();
  });
  if (should_record({x})) {
    record_node("dropout", {x}, {y}, [x, y, mask, scale, compute]() {
      dispatch_compute("dropout", compute, [&](auto tag) {
        using T = decltype(tag);
        GradAccumulate<T> dx(x);
        kernels<T>(x).dropout_backward(y.numel(), mask, T(scale), In<T>(y.grad()).get(), dx.get());
        dx.commit();
      });
    });
  }
  return y;
}

}  // namespace ops
}  // namespace kd
