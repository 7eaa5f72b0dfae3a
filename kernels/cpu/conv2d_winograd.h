// Internal to kernels/cpu/conv2d.cpp: the Winograd F(4x4, 3x3) path for float 3x3, stride-1,
// pad-1 convolutions whose channel counts are multiples of 8 and at most 64 x 64 filter pairs
// (PreResNet's 16/32/64; wider layers stay with im2col + GEMM, which is faster there). Four times
// fewer multiplications than the GEMM path; the transforms are vectorised across channels (AVX2).
// Contract as kernels/conv2d.h: forward ASSIGNS y (or ACCUMULATES when asked: backward data runs
// through it), backward_weight ACCUMULATES into dw. Results are bitwise independent of
// the batch an image sits in and of the OpenMP thread count; they differ from the GEMM path by
// rounding (about 1e-5 of the largest output), which tests/test_conv_kernels.cpp bounds.
#pragma once
#include "kernels/conv2d.h"

namespace kd::cpu::winograd {

// 3x3, stride 1, pad 1, c and k multiples of 8, c * k <= 64 * 64.
bool applies(const ConvGeom& g);

// y = conv(x, w) + bias (bias may be null); accumulate: y += instead of y =.
void forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y,
             bool accumulate);

// dw += dL/dw. (The bias gradient does not depend on the algorithm; conv2d.cpp adds it.)
void backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw);

}  // namespace kd::cpu::winograd
