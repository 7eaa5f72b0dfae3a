// The cuBLAS route of our CUDA convolution (kernels/cuda/conv2d.cu) for 1x1, stride-1, unpadded
// shapes, taken when KDLAB_CONV_1X1=cublas (an A/B switch read at every call; the default,
// native, keeps them on the implicit GEMM). Forward and backward data are one strided-batched
// cuBLAS GEMM each (the mapping: kernels/cuda/pointwise_gemm.h); the forward's bias or residual
// is a second launch of ours. Forward ASSIGNS y; backward data assigns or ACCUMULATES into dx.
// The weight pass has no cuBLAS form (it sums over images) and stays on the implicit GEMM.
// Plain C++ declarations; defined in kernels/cuda/conv2d_pointwise.cu.
#pragma once
#include "kernels/conv2d.h"

namespace kd {
namespace cuda {

// The shape applies and KDLAB_CONV_1X1=cublas asks for the route.
bool pointwise_on_cublas(const ConvGeom& g);

// y = conv(x, w) (+ bias[ch] when bias, + residual when residual; not both).
void pointwise_forward(const ConvGeom& g, const float* x, const float* w, const float* bias,
                       const float* residual, float* y);
void pointwise_forward(const ConvGeom& g, const double* x, const double* w, const double* bias,
                       const double* residual, double* y);

void pointwise_backward_data(const ConvGeom& g, const float* dy, const float* w, float* dx,
                             bool accumulate);
void pointwise_backward_data(const ConvGeom& g, const double* dy, const double* w, double* dx,
                             bool accumulate);

}  // namespace cuda
}  // namespace kd
