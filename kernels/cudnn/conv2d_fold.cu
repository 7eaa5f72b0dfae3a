// The residual folded into cuDNN's convolution (contract: kernels/conv2d.h's
// conv2d_forward_residual, which ASSIGNS y): y = conv(x) + residual as one
// cudnnConvolutionBiasActivationForward with z = residual (alpha2 = 1), a zero bias and the
// identity activation, where the two-call path is the convolution and then our elementwise add, a
// second launch and a second pass over y. cuDNN runs the identity activation with
// IMPLICIT_PRECOMP_GEMM only, so the fold fixes that algorithm in place of the heuristic's or
// --cudnn-find's choice; KDLAB_CUDNN_RESIDUAL=separate turns it off (the A/B,
// tools/gpu-check.sh's bench-cudnn-residual-separate stage). Float only: the fused call has no
// double configuration. A shape cuDNN refuses is remembered and takes the two calls.
#include <cudnn.h>

#include <array>
#include <cstddef>
#include <map>
#include <mutex>

#include "base/check.h"
#include "kernels/backend.h"
#include "kernels/cuda/env_switch.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cudnn/conv_shared.h"

namespace kd {
namespace cudnn {

namespace {

// Read by the fold as its bias: cuDNN's fused call adds one, and a zero one adds nothing. Grows
// to the widest output seen; the first call of a shape comes from an eager step, before any
// capture (as cuda::workspace's growth does).
const float* zero_bias(int k) {
  static std::mutex mutex;
  static float* zeros = nullptr;
  static int capacity = 0;
  std::lock_guard<std::mutex> lock(mutex);
  if (k > capacity) {
    if (zeros) cuda::free_device(zeros);
    zeros = static_cast<float*>(cuda::malloc_device(size_t(k) * sizeof(float)));
    KD_CHECK(zeros, "cudnn conv2d: no device memory for the residual fold's zero bias");
    cuda::memset_device(zeros, 0, size_t(k) * sizeof(float));
    capacity = k;
  }
  return zeros;
}

// Per (shape, math): whether cuDNN runs the fold, and its workspace. Guarded by g_plans_mutex.
struct FoldPlan {
  bool usable = false;
  size_t workspace_bytes = 0;
};
std::mutex g_plans_mutex;
std::map<std::array<int, 10>, FoldPlan> g_fold_plans;

}  // namespace

bool conv2d_forward_residual_folded(const ConvGeom& g, const float* x, const float* w,
                                    const float* residual, float* y) {
  if (!cuda::cudnn_residual_folded()) return false;
  ConvDescs& d = descriptors_for(g, CUDNN_DATA_FLOAT);
  const MathMode mode = cuda::math_mode();
  const cudnnMathType_t math =
      to_cudnn(algo_policy::descriptor_math(false, mode.tf32, mode.deterministic));
  const std::array<int, 10> key{g.n, g.c, g.h, g.w, g.k, g.r, g.s, g.stride, g.pad, int(math)};
  // cuDNN runs the identity activation on this algorithm only (its API reference).
  const cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
  d.conv.set_math(math);
  FoldPlan plan;
  {
    std::lock_guard<std::mutex> lock(g_plans_mutex);
    auto found = g_fold_plans.find(key);
    if (found == g_fold_plans.end()) {
      FoldPlan fresh;
      fresh.usable = cudnnGetConvolutionForwardWorkspaceSize(handle(), d.x.get(), d.w.get(),
                                                             d.conv.get(), d.y.get(), algo,
                                                             &fresh.workspace_bytes) ==
                     CUDNN_STATUS_SUCCESS;
      found = g_fold_plans.emplace(key, fresh).first;
    }
    plan = found->second;
  }
  if (!plan.usable) return false;
  thread_local IdentityActivation identity;  // handle.h
  const float one = 1.f;
  void* workspace = plan.workspace_bytes ? cuda::workspace(plan.workspace_bytes) : nullptr;
  const cudnnStatus_t status = cudnnConvolutionBiasActivationForward(
      handle(), &one, d.x.get(), x, d.w.get(), w, d.conv.get(), algo, workspace,
      plan.workspace_bytes, &one, d.y.get(), residual, d.bias.get(), zero_bias(g.k),
      identity.get(), d.y.get(), y);
  if (status == CUDNN_STATUS_SUCCESS) {
    cuda::count_launch();
    return true;
  }
  if (!refused_before_launch(status))
    ::kd::detail::throw_library<::kd::CudnnError>("cudnn conv2d forward + residual (fold)",
                                                  cudnnGetErrorString(status), int(status),
                                                  __FILE__, __LINE__);
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  g_fold_plans[key].usable = false;
  return false;
}

}  // namespace cudnn
}  // namespace kd
