// Internal to kernels/cpu/conv2d.cpp: direct float convolution (register-tiled AVX2 sums, no
// im2col) for stride-1 layers with few filters and short filters (k <= 16, c*r*s <= 512 taps, not
// 1x1): LeNet-5's 5x5 convolutions and the RGB stems. There im2col + GEMM gives OpenBLAS a GEMM of 6 or 16 rows,
// which it runs far below the core's FMA rate, and the column matrix costs a pass over memory.
// Contract as kernels/conv2d.h: forward ASSIGNS y, backward_data ASSIGNS or ACCUMULATES dx,
// backward_weight ACCUMULATES into dw. Results are bitwise independent of the batch an image sits
// in and of the OpenMP thread count; they differ from the GEMM path by rounding, which
// tests/test_conv_direct.cpp bounds.
#pragma once
#include "kernels/conv2d.h"

namespace kd::cpu::direct {

// Stride 1, k <= 16, 2 <= r*s, c*r*s <= 512.
bool applies(const ConvGeom& g);

// y = conv(x, w) + bias (bias may be null).
void forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y);

// Backward data needs at least 6 input channels besides: each vector of dy feeds one FMA per
// channel, and with the RGB stem's 3 (or 1) the loads outweigh the sums (measured: 2x slower
// than im2col + GEMM there; 1.5x faster on LeNet's 6).
bool backward_data_applies(const ConvGeom& g);

// dx = dL/dx (accumulate: dx +=), vectorised across 8 images (conv2d_direct_data.cpp).
void backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx, bool accumulate);

// dw += dL/dw. (The bias gradient does not depend on the algorithm; conv2d.cpp adds it.)
void backward_weight(const ConvGeom& g, const float* x, const float* dy, float* dw);

}  // namespace kd::cpu::direct
