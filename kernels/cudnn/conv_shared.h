// What the cuDNN convolution's calls (conv2d.cu) and its residual fold (conv2d_fold.cu) share:
// the per-shape descriptors, the math-type mapping, which refusals leave nothing enqueued, and
// the fold's entry. CUDA/cuDNN-only: included by kernels/cudnn/*.cu.
#pragma once
#include <cudnn.h>

#include <array>

#include "kernels/conv2d.h"
#include "kernels/cudnn/algo_policy.h"
#include "kernels/cudnn/handle.h"

namespace kd {
namespace cudnn {

inline cudnnMathType_t to_cudnn(algo_policy::Math m) {
  switch (m) {
    case algo_policy::Math::tensor_op: return CUDNN_TENSOR_OP_MATH;
    case algo_policy::Math::tensor_op_allow_conversion:
      return CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    case algo_policy::Math::fma: return CUDNN_FMA_MATH;
    default: return CUDNN_DEFAULT_MATH;
  }
}

// The descriptors of one convolution shape (and its bias, [1, k, 1, 1]).
struct ConvDescs {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  TensorDesc bias;
  ConvDescs(const ConvGeom& g, cudnnDataType_t type)
      : x(type, g.n, g.c, g.h, g.w),
        y(type, g.n, g.k, g.p(), g.q()),
        w(type, g.k, g.c, g.r, g.s),
        conv(type, g.pad, g.stride),
        bias(type, 1, g.k, 1, 1) {}
};

// Cached per shape (descriptors_for_shape, handle.h): about 170 convolution calls per
// PreResNet-56 step. Only the math type changes between calls, and every use sets it first
// (make_choices, run_convolution).
inline ConvDescs& descriptors_for(const ConvGeom& g, cudnnDataType_t type) {
  return descriptors_for_shape<ConvDescs>(
      std::array<int, 10>{g.n, g.c, g.h, g.w, g.k, g.r, g.s, g.stride, g.pad, int(type)}, g, type);
}

// Refusals returned while the call is still being configured, before any kernel is enqueued,
// so retrying cannot add twice into an accumulating output. BAD_LAUNCH_PARAM is left out: it
// names a launch attempt, after which part of the work may already be queued.
inline bool refused_before_launch(cudnnStatus_t status) {
  return int(CUDNN_STATUS_CATEGORY(status)) == int(CUDNN_STATUS_NOT_SUPPORTED) &&
         status != CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM;
}

// y = conv(x) + residual in one cuDNN call (conv2d_fold.cu). False, with nothing enqueued, where
// KDLAB_CUDNN_RESIDUAL=separate or cuDNN refuses the fold: the caller then runs the two launches.
bool conv2d_forward_residual_folded(const ConvGeom& g, const float* x, const float* w,
                                    const float* residual, float* y);

}  // namespace cudnn
}  // namespace kd
