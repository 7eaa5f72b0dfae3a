// Batch normalization through cuDNN 9 (contract: kernels/normalization.h), CUDNN_BATCHNORM_SPATIAL
// over NCHW with the plane flattened (x is described as [n, c, 1, hw]). Forward ASSIGNS y, the
// saved mean and inverse std; backward ACCUMULATES into dx, dgamma, dbeta (cuDNN's beta blend
// factors set to 1). Parameters and statistics are float for float x, double for double x.
// Conventions checked against the contract (and by tests/test_cuda_cudnn.cpp on a device):
//  - resultSaveInvVariance is 1/sqrt(var + eps) with the biased batch variance: our save_invstd.
//  - exponentialAverageFactor = momentum gives r = (1 - momentum) r + momentum stat, and cuDNN
//    blends the UNBIASED variance (m/(m-1)) into the running variance, as PyTorch does.
//  - the backward is given the saved statistics, so cuDNN does not recompute them and its epsilon
//    argument has no effect (our contract's backward carries none).
// The legacy BN API is deprecated in cuDNN 9 but still shipped; its deprecation attribute is only
// active when CUDNN_WARN_DEPRECATED is defined, which kdlab does not do, so -Werror is unaffected.
#include <cudnn.h>

#include <array>
#include <cstdint>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cudnn/handle.h"
#include "kernels/elementwise.h"
#include "kernels/normalization.h"

namespace kd {
namespace cudnn {

namespace {

// Passed where cuDNN wants an epsilon it will not use (backward with saved statistics); any value
// >= CUDNN_BN_MIN_EPSILON is valid, and 1e-5 is that minimum in older cuDNN releases too.
constexpr double kUnusedBackwardEpsilon = 1e-5;

void check_geom(const NormGeom& g, const char* what) {
  KD_CHECK(g.n > 0 && g.c > 0 && g.hw > 0,
           what << ": bad geometry n=" << g.n << " c=" << g.c << " hw=" << g.hw);
}

void check_eps(double eps, const char* what) {
  KD_CHECK(eps >= CUDNN_BN_MIN_EPSILON,
           what << ": epsilon " << eps << " below cuDNN's minimum " << CUDNN_BN_MIN_EPSILON);
}

// x's [n, c, 1, hw] descriptor and the parameters' [1, c, 1, 1] one, cached per shape
// (descriptors_for_shape, handle.h): about 110 batchnorm calls per PreResNet-56 step.
struct BatchNormDescs {
  TensorDesc x;
  BatchNormParamDesc param;
  BatchNormDescs(cudnnDataType_t type, const NormGeom& g) : x(type, g.n, g.c, 1, g.hw), param(x) {}
};

const BatchNormDescs& descriptors_for(const NormGeom& g, cudnnDataType_t type) {
  return descriptors_for_shape<BatchNormDescs>(std::array<int, 4>{g.n, g.c, g.hw, int(type)}, type,
                                               g);
}

}  // namespace

template <class T>
void batchnorm_forward_train(const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps,
                             T momentum, T* y, T* save_mean, T* save_invstd, T* running_mean,
                             T* running_var, int64_t* batches_tracked, bool relu) {
  const char* what = "cudnn batchnorm (train)";
  check_geom(g, what);
  KD_CHECK(int64_t(g.n) * g.hw > 1, what << ": need more than one value per channel, got n="
                                         << g.n << " hw=" << g.hw);
  check_eps(double(eps), what);
  const BatchNormDescs& descs = descriptors_for(g, DataType<T>::value);
  const TensorDesc& x_desc = descs.x;
  const BatchNormParamDesc& param_desc = descs.param;
  // cuDNN takes both running pointers or neither; a lone one gets a scratch partner.
  if ((running_mean == nullptr) != (running_var == nullptr)) {
    T* scratch = static_cast<T*>(cuda::workspace(size_t(g.c) * sizeof(T)));
    if (!running_mean) running_mean = scratch;
    if (!running_var) running_var = scratch;
  }
  const T one = T(1), zero = T(0);
  CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
      handle(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, x_desc.get(), x, x_desc.get(), y,
      param_desc.get(), gamma, beta, double(momentum), running_mean, running_var, double(eps),
      save_mean, save_invstd));
  cuda::count_launch();
  // This cuDNN call has no fused activation nor a batch count: one kernel of ours does both (the
  // ReLU in place, a second pass), or the count alone.
  if (relu) cuda::relu_forward_and_count<T>(int64_t(g.n) * g.c * g.hw, y, y, batches_tracked);
  else if (batches_tracked) cuda::counter_add(batches_tracked, 1);
}

template <class T>
void batchnorm_forward_eval(const NormGeom& g, const T* x, const T* gamma, const T* beta,
                            const T* running_mean, const T* running_var, T eps, T* y) {
  const char* what = "cudnn batchnorm (eval)";
  check_geom(g, what);
  check_eps(double(eps), what);
  const BatchNormDescs& descs = descriptors_for(g, DataType<T>::value);
  const TensorDesc& x_desc = descs.x;
  const BatchNormParamDesc& param_desc = descs.param;
  const T one = T(1), zero = T(0);
  CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
      handle(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, x_desc.get(), x, x_desc.get(), y,
      param_desc.get(), gamma, beta, running_mean, running_var, double(eps)));
  cuda::count_launch();
}

template <class T>
void batchnorm_backward_train(const NormGeom& g, const T* x, const T* dy, const T* gamma,
                              const T* save_mean, const T* save_invstd, T* dx, T* dgamma,
                              T* dbeta, bool accumulate, const T* relu_out) {
  const char* what = "cudnn batchnorm (backward)";
  check_geom(g, what);
  KD_CHECK(save_mean && save_invstd, what << ": needs the saved statistics of the forward");
  KD_CHECK(!relu_out, what << ": no fused ReLU here; mask dy with relu_backward first");
  const BatchNormDescs& descs = descriptors_for(g, DataType<T>::value);
  const TensorDesc& x_desc = descs.x;
  const BatchNormParamDesc& param_desc = descs.param;
  const T one = T(1), zero = T(0);
  CUDNN_CHECK(cudnnBatchNormalizationBackward(
      handle(), CUDNN_BATCHNORM_SPATIAL, &one, /*betaDataDiff=*/accumulate ? &one : &zero, &one,
      /*betaParamDiff=*/&one, x_desc.get(), x, x_desc.get(), dy, x_desc.get(), dx,
      param_desc.get(), gamma, dgamma, dbeta, kUnusedBackwardEpsilon, save_mean, save_invstd));
  cuda::count_launch();
}

KD_DEFINE_REGISTRAR(register_batchnorm, KD_BATCHNORM_KERNELS)

}  // namespace cudnn
}  // namespace kd
