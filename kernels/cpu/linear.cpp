// Fully connected layer on the CPU, ref:: (plain loops) and cpu:: (OpenBLAS: a GEMV per row
// forward, one GEMM per backward pass).
// Layouts (PyTorch): x [b, in], w [out, in], bias [out] or null, y [b, out] = x w^T + bias.
// Forward ASSIGNS y. Backward ACCUMULATES: dx += dy w ; dw += dy^T x ; dbias += sum_b dy.
// ref:: sums every output element in double. cpu:: uses OpenBLAS GEMMs, so results depend on
// OpenBLAS's own thread count (the engine keeps it at 1; see kernels/cpu/conv2d.cpp for why); the
// bias gradient is a per-column double sum over rows in row order. The layers of the paper's
// models are small (LeNet 400x120x84x10, PreResNet 64x10/100), so no OpenMP here.
// The forward is batch-invariant: a row's output depends on that row alone, never on how many
// rows came with it or where it sits. OpenBLAS's AVX2 (Haswell, Zen) sgemm kernels give a row
// other bits at other positions of the same-shaped product, so each row is its own product
// y_row += w x_row (a GEMV, which also skips a GEMM's packing of w): the same shape, the same
// code path, for every row. Distillation's cached teacher logits rely on this: logits computed
// once in one batching equal those of any other batching, bit for bit.
#include "kernels/backend.h"
#include "kernels/linear.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "base/check.h"
#include "kernels/cpu/blas.h"

namespace kd {

namespace {
void check_geom(const LinearGeom& g) {
  KD_CHECK(g.batch >= 0 && g.in >= 0 && g.out >= 0,
           "linear: bad geometry batch=" << g.batch << " in=" << g.in << " out=" << g.out);
}
}  // namespace

namespace ref {

template <class T>
void linear_forward(const LinearGeom& g, const T* x, const T* w, const T* bias, T* y) {
  check_geom(g);
  for (int b = 0; b < g.batch; ++b)
    for (int o = 0; o < g.out; ++o) {
      double acc = bias ? static_cast<double>(bias[o]) : 0.0;
      for (int i = 0; i < g.in; ++i)
        acc += static_cast<double>(x[int64_t(b) * g.in + i]) * w[int64_t(o) * g.in + i];
      y[int64_t(b) * g.out + o] = static_cast<T>(acc);
    }
}

template <class T>
void linear_backward_data(const LinearGeom& g, const T* dy, const T* w, T* dx) {
  check_geom(g);
  for (int b = 0; b < g.batch; ++b)
    for (int i = 0; i < g.in; ++i) {
      double acc = 0.0;
      for (int o = 0; o < g.out; ++o)
        acc += static_cast<double>(dy[int64_t(b) * g.out + o]) * w[int64_t(o) * g.in + i];
      T& out = dx[int64_t(b) * g.in + i];
      out = static_cast<T>(out + acc);
    }
}

template <class T>
void linear_backward_weight(const LinearGeom& g, const T* x, const T* dy, T* dw, T* dbias) {
  check_geom(g);
  for (int o = 0; o < g.out; ++o) {
    for (int i = 0; i < g.in; ++i) {
      double acc = 0.0;
      for (int b = 0; b < g.batch; ++b)
        acc += static_cast<double>(dy[int64_t(b) * g.out + o]) * x[int64_t(b) * g.in + i];
      T& out = dw[int64_t(o) * g.in + i];
      out = static_cast<T>(out + acc);
    }
    if (dbias) {
      double acc = 0.0;
      for (int b = 0; b < g.batch; ++b) acc += dy[int64_t(b) * g.out + o];
      dbias[o] = static_cast<T>(dbias[o] + acc);
    }
  }
}

}  // namespace ref

namespace cpu {

template <class T>
void linear_forward(const LinearGeom& g, const T* x, const T* w, const T* bias, T* y) {
  check_geom(g);
  if (g.batch == 0 || g.out == 0) return;
  // y starts as the bias rows and the GEMM adds x w^T (beta = 1): one pass over y.
  for (int b = 0; b < g.batch; ++b)
    for (int o = 0; o < g.out; ++o) y[int64_t(b) * g.out + o] = bias ? bias[o] : T(0);
  if (g.in == 0) return;
  for (int b = 0; b < g.batch; ++b)
    cpu::gemv(g.out, g.in, T(1), w, g.in, x + int64_t(b) * g.in, T(1), y + int64_t(b) * g.out);
}

template <class T>
void linear_backward_data(const LinearGeom& g, const T* dy, const T* w, T* dx) {
  check_geom(g);
  if (g.batch == 0 || g.in == 0 || g.out == 0) return;
  cpu::gemm(false, false, g.batch, g.in, g.out, T(1), dy, g.out, w, g.in, T(1), dx, g.in);
}

template <class T>
void linear_backward_weight(const LinearGeom& g, const T* x, const T* dy, T* dw, T* dbias) {
  check_geom(g);
  if (g.batch == 0 || g.out == 0) return;
  if (g.in > 0)
    cpu::gemm(true, false, g.out, g.in, g.batch, T(1), dy, g.out, x, g.in, T(1), dw, g.in);
  if (!dbias) return;
  std::vector<double> sums(g.out, 0.0);  // row by row: contiguous reads, fixed order per column
  for (int b = 0; b < g.batch; ++b)
    for (int o = 0; o < g.out; ++o) sums[o] += dy[int64_t(b) * g.out + o];
  for (int o = 0; o < g.out; ++o) dbias[o] = static_cast<T>(dbias[o] + sums[o]);
}

}  // namespace cpu

namespace ref {
KD_DEFINE_REGISTRAR(register_linear, KD_LINEAR_KERNELS)
}
namespace cpu {
KD_DEFINE_REGISTRAR(register_linear, KD_LINEAR_KERNELS)
}

}  // namespace kd
