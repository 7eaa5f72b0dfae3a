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

}  // namespace ops
}  // namespace kd
