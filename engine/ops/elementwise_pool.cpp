// Front doors for relu, add, scale, reshape/flatten and the pooling ops.
#include <memory>
#include <vector>

#include "engine/ops.h"
#include "engine/ops/bf16_operands.h"
#include "engine/ops/dispatch.h"
#include "kernels/elementwise.h"
#include "kernels/pool.h"

namespace kd {
namespace ops {
using namespace detail;

Tensor relu(const Tensor& x) {
  const DType compute = compute_dtype("relu", {x});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_compute("relu", compute, [&](auto tag) {
    using T = decltype(tag);
    Out<T> out(y);
    kernels<T>(x).relu_forward(x.numel(), In<T>(x).get(), out.get());
    out.commit();
  });
  if (should_record({x})) {
    record_node("relu", {x}, {y}, [x, y, compute]() {
      dispatch_compute("relu", compute, [&](auto tag) {
        using T = decltype(tag);
        GradWrite<T> dx(x);
        kernels<T>(x).relu_backward(y.numel(), In<T>(y).get(), In<T>(y.grad()).get(), dx.get(),
                                    dx.accumulate());
        dx.commit();
      });
    });
  }
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
  check_operands("add", {a, b});
  const DType compute = compute_dtype("add", {a, b});
  KD_CHECK(a.shape() == b.shape(), "add: shapes differ: " << describe(a) << " + " << describe(b));
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  dispatch_compute("add", compute, [&](auto tag) {
    using T = decltype(tag);
    Out<T> out(y);
    kernels<T>(a).add_forward(a.numel(), In<T>(a).get(), In<T>(b).get(), out.get());
    out.commit();
  });
  if (should_record({a, b})) {
    // Pass-through backward: dy becomes the gradient of each input that has none, not copied (no
    // pass over memory). When both take it they share it, marked so: the first later write into
    // either copies it unless the other holder is gone by then (a residual block's shortcut and
    // branch outputs are, once their nodes have run: no copy at all). An input that already holds
    // a gradient accumulates. y's node has run by then, so nothing reads y's gradient again.
    record_node("add", {a, b}, {y}, [a, b, y, compute]() {
      const Tensor dy = y.grad();
      auto takes_dy = [](const Tensor& in) { return in.requires_grad() && !in.grad().defined(); };
      const bool both = takes_dy(a) && takes_dy(b) && !a.same(b);
      for (Tensor in : {a, b}) {
        if (!in.requires_grad()) continue;
        if (!in.grad().defined()) {
          in.set_grad(dy, both || y.grad_shared());  // y's own may be shared further down
          continue;
        }
        dispatch_compute("add", compute, [&](auto tag) { add_to_grad<decltype(tag)>(in, dy); });
      }
    });
  }
  return y;
}

Tensor scale(const Tensor& x, double alpha) {
  check_operands("scale", {x});
  Tensor y = Tensor::zeros(x.shape(), x.dtype(), x.device());
  dispatch_floating("scale", x, [&](auto tag) {
    using T = decltype(tag);
    kernels<T>(x).accumulate(x.numel(), T(alpha), x.data<T>(), y.data<T>());
  });
  if (should_record({x})) {
    record_node("scale", {x}, {y}, [x, y, alpha]() {
      dispatch_floating("scale", x, [&](auto tag) {
        using T = decltype(tag);
        kernels<T>(x).accumulate(y.numel(), T(alpha), y.grad().data<T>(), grad_ptr<T>(x));
      });
    });
  }
  return y;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  check_operands("reshape", {x});
  KD_CHECK(shape_numel(shape) == x.numel(),
           "reshape: " << describe(x) << " to " << shape_str(shape));
  Tensor y = x.view(shape);
  if (should_record({x})) {
    record_node("reshape", {x}, {y}, [x, y]() {
      if (!x.grad().defined()) {  // pass-through: y's gradient, viewed in x's shape
        Tensor(x).set_grad(y.grad().view(x.shape()), y.grad_shared());
        return;
      }
      dispatch_compute("reshape", compute_dtype("reshape", {x}),
                       [&](auto tag) { add_to_grad<decltype(tag)>(x, y.grad()); });
    });
  }
  return y;
}

Tensor flatten(const Tensor& x) {
  KD_CHECK(x.dim() >= 1, "flatten: " << describe(x));
  int64_t n = x.size(0);
  return reshape(x, {n, n ? x.numel() / n : 0});
}

namespace {
PoolGeom pool_geom(const char* op, const Tensor& x, int kernel, int stride, int pad) {
  check_operands(op, {x});
  KD_CHECK(x.dim() == 4, op << ": expected [n,c,h,w], got " << describe(x));
  KD_CHECK(kernel >= 1 && stride >= 1 && pad >= 0 && 2 * pad <= kernel,
           op << ": kernel " << kernel << ", stride " << stride << ", pad " << pad);
  PoolGeom g;
  g.n = int(x.size(0)), g.c = int(x.size(1)), g.h = int(x.size(2)), g.w = int(x.size(3));
  g.kh = g.kw = kernel, g.stride = stride, g.pad = pad;
  KD_CHECK(g.h + 2 * pad >= kernel && g.w + 2 * pad >= kernel,
           op << ": window " << kernel << " larger than padded input " << describe(x));
  return g;
}
}  // namespace

Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int pad) {
  PoolGeom g = pool_geom("avg_pool2d", x, kernel, stride, pad);
  Tensor y = Tensor::empty({g.n, g.c, g.p(), g.q()}, x.dtype(), x.device());
  const DType compute = compute_dtype("avg_pool2d", {x});
  dispatch_compute("avg_pool2d", compute, [&](auto tag) {
    using T = decltype(tag);
    Out<T> out(y);
    kernels<T>(x).avg_pool2d_forward(g, In<T>(x).get(), out.get());
    out.commit();
  });
  if (should_record({x})) {
    record_node("avg_pool2d", {x}, {y}, [x, y, g, compute]() {
      dispatch_compute("avg_pool2d", compute, [&](auto tag) {
        using T = decltype(tag);
        GradAccumulate<T> dx(x);
        kernels<T>(x).avg_pool2d_backward(g, In<T>(y.grad()).get(), dx.get());
        dx.commit();
      });
    });
  }
  return y;
}

Tensor max_pool2d(const Tensor& x, int kernel, int stride, int pad) {
  PoolGeom g = pool_geom("max_pool2d", x, kernel, stride, pad);
  Tensor y = Tensor::empty({g.n, g.c, g.p(), g.q()}, x.dtype(), x.device());
  Tensor argmax = Tensor::empty(y.shape(), DType::I32, x.device());
  const DType compute = compute_dtype("max_pool2d", {x});
  dispatch_compute("max_pool2d", compute, [&](auto tag) {
    using T = decltype(tag);
    Out<T> out(y);
    kernels<T>(x).max_pool2d_forward(g, In<T>(x).get(), out.get(), argmax.data<int32_t>());
    out.commit();
  });
  if (should_record({x})) {
    record_node("max_pool2d", {x}, {y}, [x, y, argmax, g, compute]() {
      dispatch_compute("max_pool2d", compute, [&](auto tag) {
        using T = decltype(tag);
        GradAccumulate<T> dx(x);
        kernels<T>(x).max_pool2d_backward(g, In<T>(y.grad()).get(), argmax.data<int32_t>(),
                                          dx.get());
        dx.commit();
      });
    });
  }
  return y;
}

Tensor global_avg_pool(const Tensor& x) {
  const DType compute = compute_dtype("global_avg_pool", {x});
  KD_CHECK(x.dim() == 4, "global_avg_pool: expected [n,c,h,w], got " << describe(x));
  int n = int(x.size(0)), c = int(x.size(1)), hw = int(x.size(2) * x.size(3));
  Tensor y = Tensor::empty({n, c}, x.dtype(), x.device());
  dispatch_compute("global_avg_pool", compute, [&](auto tag) {
    using T = decltype(tag);
    Out<T> out(y);
    kernels<T>(x).global_avg_pool_forward(n, c, hw, In<T>(x).get(), out.get());
    out.commit();
  });
  if (should_record({x})) {
    record_node("global_avg_pool", {x}, {y}, [x, y, n, c, hw, compute]() {
      dispatch_compute("global_avg_pool", compute, [&](auto tag) {
        using T = decltype(tag);
        GradAccumulate<T> dx(x);
        kernels<T>(x).global_avg_pool_backward(n, c, hw, In<T>(y.grad()).get(), dx.get());
        dx.commit();
      });
    });
  }
  return y;
}

}  // namespace ops
}  // namespace kd
