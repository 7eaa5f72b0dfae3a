// 2-D convolution through cuDNN 9 (contract: kernels/conv2d.h). NCHW activations, KCRS weights,
// square pad/stride, no dilation. Forward ASSIGNS y (alpha 1, beta 0, then the bias through
// cudnnAddTensor); the residual forward ASSIGNS y = conv + residual (conv2d_fold.cu's one call,
// or the convolution and our add); backward ACCUMULATES into dx and dw (beta = 1) and into dbias
// (our kernel).
// Descriptors: built once per shape and thread (descriptors_for). Algorithm: cuDNN's heuristics
// (cudnnGet*Algorithm_v7, no benchmarking: choices stay the same from run to run and cost no GPU
// time), or with --cudnn-find (MathMode::find) every algorithm timed once on the call's own
// buffers by cudnnFind*AlgorithmEx (outputs that accumulate are timed into a scratch copy, the
// workspace offered is the largest any heuristic choice asks for), filtered by
// kernels/cudnn/algo_policy.h, cached per (geometry, dtype, pass, deterministic, math type, find)
// as the ordered list of usable choices with their workspace sizes; a
// choice the execution call refuses (NOT_SUPPORTED) is dropped and the next one runs. The
// workspace is cuda::workspace(). The bias gradient is our native convolution's
// (cuda::conv2d_bias_grad: one block per channel, a fixed order, no atomics), so it runs on the
// grid emulator too.
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/conv2d.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cudnn/algo_policy.h"
#include "kernels/cudnn/conv_shared.h"
#include "kernels/cudnn/handle.h"

namespace kd {
namespace cudnn {

namespace {

namespace policy = algo_policy;

enum class Pass { forward = 0, backward_data = 1, backward_weight = 2 };

policy::Math from_cudnn(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_TENSOR_OP_MATH: return policy::Math::tensor_op;
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return policy::Math::tensor_op_allow_conversion;
    case CUDNN_FMA_MATH: return policy::Math::fma;
    default: return policy::Math::default_math;
  }
}

struct AlgoChoice {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace_bytes = 0;
};

// Every usable choice for one key, in cuDNN's order; `offered` describes cuDNN's whole list for
// the error message when none is left.
struct AlgoChoices {
  std::vector<AlgoChoice> usable;
  std::string offered;
};

using AlgoKey = std::array<int, 14>;

// The call's buffers, which Find times the algorithms on: forward x, w, y; backward data w, dy,
// dx; backward weight x, dy, dw (in ConvDescs' order: input, filter, output).
struct FindBuffers {
  const void* in = nullptr;
  const void* filter = nullptr;
  void* out = nullptr;
  size_t out_bytes = 0;
  bool out_is_live = false;  // the output accumulates: time into a scratch buffer instead
};

// The algorithms cuDNN's developer guide ("Reproducibility (Determinism)") names as
// non-reproducible (atomics). Refused in deterministic mode whatever the perf entry's determinism
// field says, so a mislabelled entry cannot break bitwise repeatability.
bool uses_atomics(Pass pass, int algo) {
  if (pass == Pass::backward_data) return algo == int(CUDNN_CONVOLUTION_BWD_DATA_ALGO_0);
  if (pass == Pass::backward_weight)
    return algo == int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0) ||
           algo == int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3);
  return false;
}

template <class Perf>
policy::Candidate candidate_of(Pass pass, const Perf& p) {
  policy::Candidate c;
  c.algo = int(p.algo);
  c.supported = p.status == CUDNN_STATUS_SUCCESS;
  c.deterministic = p.determinism == CUDNN_DETERMINISTIC && !uses_atomics(pass, c.algo);
  c.math = from_cudnn(p.mathType);
  return c;
}

// cuDNN's heuristic list for one pass, best expected first, as policy candidates.
std::vector<policy::Candidate> heuristics(Pass pass, const ConvDescs& d) {
  std::vector<policy::Candidate> out;
  int max_count = 0, returned = 0;
  if (pass == Pass::forward) {
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle(), &max_count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(size_t(max_count > 0 ? max_count : 1));
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle(), d.x.get(), d.w.get(),
                                                       d.conv.get(), d.y.get(), max_count,
                                                       &returned, perf.data()));
    for (int i = 0; i < returned; ++i) out.push_back(candidate_of(pass, perf[i]));
  } else if (pass == Pass::backward_data) {
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle(), &max_count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(size_t(max_count > 0 ? max_count : 1));
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle(), d.w.get(), d.y.get(),
                                                            d.conv.get(), d.x.get(), max_count,
                                                            &returned, perf.data()));
    for (int i = 0; i < returned; ++i) out.push_back(candidate_of(pass, perf[i]));
  } else {
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle(), &max_count));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(size_t(max_count > 0 ? max_count : 1));
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle(), d.x.get(), d.y.get(),
                                                              d.conv.get(), d.w.get(), max_count,
                                                              &returned, perf.data()));
    for (int i = 0; i < returned; ++i) out.push_back(candidate_of(pass, perf[i]));
  }
  return out;
}

// Every algorithm timed on the call's buffers (cudnnFind*AlgorithmEx), fastest first. Runs once
// per key, outside any CUDA graph capture (it synchronizes); costs one pass per algorithm.
std::vector<policy::Candidate> timed(Pass pass, const ConvDescs& d, const FindBuffers& b,
                                     size_t workspace_limit) {
  void* out = b.out;
  if (b.out_is_live) {  // the timing runs write the output; a live one must not see them
    out = cuda::malloc_device(b.out_bytes);
    KD_CHECK(out, "cudnn conv2d: no device memory for --cudnn-find's scratch output ("
                      << b.out_bytes << " bytes)");
  }
  void* ws = workspace_limit ? cuda::workspace(workspace_limit) : nullptr;
  std::vector<policy::Candidate> list;
  int returned = 0;
  cudnnStatus_t status;
  if (pass == Pass::forward) {
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
    status = cudnnFindConvolutionForwardAlgorithmEx(
        handle(), d.x.get(), b.in, d.w.get(), b.filter, d.conv.get(), d.y.get(), out,
        int(perf.size()), &returned, perf.data(), ws, workspace_limit);
    for (int i = 0; i < returned && status == CUDNN_STATUS_SUCCESS; ++i)
      list.push_back(candidate_of(pass, perf[i]));
  } else if (pass == Pass::backward_data) {
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
    status = cudnnFindConvolutionBackwardDataAlgorithmEx(
        handle(), d.w.get(), b.filter, d.y.get(), b.in, d.conv.get(), d.x.get(), out,
        int(perf.size()), &returned, perf.data(), ws, workspace_limit);
    for (int i = 0; i < returned && status == CUDNN_STATUS_SUCCESS; ++i)
      list.push_back(candidate_of(pass, perf[i]));
  } else {
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
    status = cudnnFindConvolutionBackwardFilterAlgorithmEx(
        handle(), d.x.get(), b.in, d.y.get(), b.filter, d.conv.get(), d.w.get(), out,
        int(perf.size()), &returned, perf.data(), ws, workspace_limit);
    for (int i = 0; i < returned && status == CUDNN_STATUS_SUCCESS; ++i)
      list.push_back(candidate_of(pass, perf[i]));
  }
  if (b.out_is_live) cuda::free_device(out);
  // A refused Find leaves the heuristic's order (the caller keeps it when the list is empty).
  if (status != CUDNN_STATUS_SUCCESS) list.clear();
  return list;
}

// Not CUDNN_CHECKed: a failing query means "this algorithm does not run here", and the caller
// moves on to the next candidate.
cudnnStatus_t workspace_size(Pass pass, const ConvDescs& d, int algo, size_t* bytes) {
  switch (pass) {
    case Pass::forward:
      return cudnnGetConvolutionForwardWorkspaceSize(handle(), d.x.get(), d.w.get(), d.conv.get(),
                                                     d.y.get(), cudnnConvolutionFwdAlgo_t(algo),
                                                     bytes);
    case Pass::backward_data:
      return cudnnGetConvolutionBackwardDataWorkspaceSize(
          handle(), d.w.get(), d.y.get(), d.conv.get(), d.x.get(),
          cudnnConvolutionBwdDataAlgo_t(algo), bytes);
    default:
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(
          handle(), d.x.get(), d.y.get(), d.conv.get(), d.w.get(),
          cudnnConvolutionBwdFilterAlgo_t(algo), bytes);
  }
}

const char* pass_name(Pass pass) {
  return pass == Pass::forward         ? "forward"
         : pass == Pass::backward_data ? "backward data"
                                       : "backward weight";
}

// Filters cuDNN's list by the policy and keeps each acceptable entry whose workspace query
// succeeds with the math type it will run with.
std::vector<AlgoChoice> usable_choices(Pass pass, const std::vector<policy::Candidate>& list,
                                       const policy::Request& request, ConvDescs& d) {
  std::vector<AlgoChoice> usable;
  for (int index : policy::ordered_choices(list, request)) {
    AlgoChoice choice;
    choice.algo = list[index].algo;
    choice.math = to_cudnn(policy::execution_math(list[index], request));
    d.conv.set_math(choice.math);
    if (workspace_size(pass, d, choice.algo, &choice.workspace_bytes) == CUDNN_STATUS_SUCCESS)
      usable.push_back(choice);
  }
  return usable;
}

AlgoChoices make_choices(Pass pass, const ConvGeom& g, const policy::Request& request,
                         ConvDescs& d, const FindBuffers& buffers) {
  AlgoChoices out;
  d.conv.set_math(to_cudnn(request.descriptor_math));
  std::vector<policy::Candidate> list = heuristics(pass, d);
  out.usable = usable_choices(pass, list, request, d);
  if (request.find && !out.usable.empty()) {
    size_t limit = 0;
    for (const AlgoChoice& c : out.usable) limit = std::max(limit, c.workspace_bytes);
    d.conv.set_math(to_cudnn(request.descriptor_math));
    list = timed(pass, d, buffers, limit);
    std::vector<AlgoChoice> fastest = usable_choices(pass, list, request, d);
    // Keep only what fits the workspace Find was offered; the heuristic's choices follow as
    // fallbacks should every timed one be refused at execution.
    std::vector<AlgoChoice> merged;
    for (const AlgoChoice& c : fastest)
      if (c.workspace_bytes <= limit) merged.push_back(c);
    for (const AlgoChoice& c : out.usable) merged.push_back(c);
    out.usable = merged;
  }
  std::ostringstream listed;
  listed << "cudnn conv2d " << pass_name(pass) << ": no usable algorithm for n=" << g.n
         << " c=" << g.c << " h=" << g.h << " w=" << g.w << " k=" << g.k << " r=" << g.r
         << " s=" << g.s << " stride=" << g.stride << " pad=" << g.pad
         << (request.deterministic ? " (deterministic)" : "") << "; heuristics offered:";
  for (const policy::Candidate& c : list)
    listed << " [algo " << c.algo << (c.supported ? "" : " unsupported")
           << (c.deterministic ? " deterministic" : "") << " math " << int(c.math) << "]";
  out.offered = listed.str();
  return out;
}

std::mutex g_cache_mutex;
std::map<AlgoKey, AlgoChoices> g_cache;

AlgoKey key_of(Pass pass, const ConvGeom& g, cudnnDataType_t type,
               const policy::Request& request) {
  return {g.n,       g.c,   g.h,       g.w,       g.k,
          g.r,       g.s,   g.stride,  g.pad,     int(type),
          int(pass), int(request.deterministic), int(request.descriptor_math),
          int(request.find)};
}

// The best remaining choice for this key (computed once, then cached).
AlgoChoice first_choice(Pass pass, const ConvGeom& g, const policy::Request& request,
                        const AlgoKey& key, ConvDescs& d, const FindBuffers& buffers) {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  auto found = g_cache.find(key);
  if (found == g_cache.end())
    found = g_cache.emplace(key, make_choices(pass, g, request, d, buffers)).first;
  KD_CHECK(!found->second.usable.empty(), found->second.offered);
  return found->second.usable.front();
}

// Forgets a choice cuDNN refused to execute, so this and later calls take the next one.
void drop_choice(const AlgoKey& key, const AlgoChoice& choice) {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  auto found = g_cache.find(key);
  if (found == g_cache.end()) return;
  std::vector<AlgoChoice>& usable = found->second.usable;
  for (auto it = usable.begin(); it != usable.end(); ++it)
    if (it->algo == choice.algo && it->math == choice.math) {
      usable.erase(it);
      break;
    }
  if (usable.empty()) found->second.offered += " (each usable one was refused at execution)";
}

void* workspace_for(const AlgoChoice& choice) {
  return choice.workspace_bytes ? cuda::workspace(choice.workspace_bytes) : nullptr;
}

// Runs `execute(choice, workspace)` (one cuDNN convolution call, returning its status) with the
// cached choice. A heuristic entry can report SUCCESS and the execution call still refuse the
// configuration; then the next choice is tried, as PyTorch's AlgoIterator does. Other failures
// throw.
template <class Execute>
void run_convolution(Pass pass, const ConvGeom& g, cudnnDataType_t type, ConvDescs& d,
                     const FindBuffers& buffers, Execute execute) {
  const MathMode mode = cuda::math_mode();
  policy::Request request;
  request.deterministic = mode.deterministic;
  request.find = mode.find;
  request.descriptor_math =
      policy::descriptor_math(type == CUDNN_DATA_DOUBLE, mode.tf32, mode.deterministic);
  const AlgoKey key = key_of(pass, g, type, request);
  for (;;) {
    const AlgoChoice choice = first_choice(pass, g, request, key, d, buffers);
    d.conv.set_math(choice.math);
    const cudnnStatus_t status = execute(choice, workspace_for(choice));
    if (status == CUDNN_STATUS_SUCCESS) {
      cuda::count_launch();
      return;
    }
    if (refused_before_launch(status)) {
      drop_choice(key, choice);
      continue;
    }
    std::ostringstream call;
    call << "cudnn conv2d " << pass_name(pass) << " (algo " << choice.algo << ", math "
         << int(choice.math) << ")";
    ::kd::detail::throw_library<::kd::CudnnError>(call.str().c_str(), cudnnGetErrorString(status),
                                                  int(status), __FILE__, __LINE__);
  }
}

void check_geom(const ConvGeom& g) { kd::detail::check_conv_geom(g); }

}  // namespace

template <class T>
void conv2d_forward(const ConvGeom& g, const T* x, const T* w, const T* bias, T* y) {
  check_geom(g);
  if (g.n == 0) return;
  const cudnnDataType_t type = DataType<T>::value;
  ConvDescs& d = descriptors_for(g, type);
  const T one = T(1), zero = T(0);
  // y is assigned below: Find may time into it.
  const FindBuffers buffers{x, w, y, 0, false};
  run_convolution(Pass::forward, g, type, d, buffers,
                  [&](const AlgoChoice& choice, void* workspace) {
                    return cudnnConvolutionForward(
                        handle(), &one, d.x.get(), x, d.w.get(), w, d.conv.get(),
                        cudnnConvolutionFwdAlgo_t(choice.algo), workspace,
                        choice.workspace_bytes, &zero, d.y.get(), y);
                  });
  if (bias) {
    // cudnnAddTensor broadcasts each size-1 dimension of A over C: [1, k, 1, 1] onto y.
    CUDNN_CHECK(cudnnAddTensor(handle(), &one, d.bias.get(), bias, &one, d.y.get(), y));
    cuda::count_launch();
  }
}

// Float: one launch, the residual folded into cuDNN's call (conv2d_fold.cu), where
// KDLAB_CUDNN_RESIDUAL allows it and cuDNN runs it. Otherwise, and for double, the convolution,
// then our elementwise kernel adds the residual in place.
template <class T>
void conv2d_forward_residual(const ConvGeom& g, const T* x, const T* w, const T* residual, T* y) {
  check_geom(g);
  if (g.n == 0) return;
  if constexpr (std::is_same<T, float>::value)
    if (conv2d_forward_residual_folded(g, x, w, residual, y)) return;
  conv2d_forward(g, x, w, static_cast<const T*>(nullptr), y);
  cuda::accumulate(int64_t(g.n) * g.k * g.p() * g.q(), T(1), residual, y);
}

template <class T>
void conv2d_backward_data(const ConvGeom& g, const T* dy, const T* w, T* dx,
                          bool accumulate) {
  check_geom(g);
  if (g.n == 0) return;
  const cudnnDataType_t type = DataType<T>::value;
  ConvDescs& d = descriptors_for(g, type);
  const T one = T(1), zero = T(0);
  const FindBuffers buffers{dy, w, dx, size_t(g.n) * g.c * g.h * g.w * sizeof(T), accumulate};
  run_convolution(Pass::backward_data, g, type, d, buffers,
                  [&](const AlgoChoice& choice, void* workspace) {
                    return cudnnConvolutionBackwardData(
                        handle(), &one, d.w.get(), w, d.y.get(), dy, d.conv.get(),
                        cudnnConvolutionBwdDataAlgo_t(choice.algo), workspace,
                        choice.workspace_bytes, accumulate ? &one : &zero, d.x.get(), dx);
                  });
}

template <class T>
void conv2d_backward_weight(const ConvGeom& g, const T* x, const T* dy, T* dw, T* dbias) {
  check_geom(g);
  if (g.n == 0) return;
  const cudnnDataType_t type = DataType<T>::value;
  ConvDescs& d = descriptors_for(g, type);
  const T one = T(1);
  const FindBuffers buffers{x, dy, dw, size_t(g.k) * g.c * g.r * g.s * sizeof(T), true};
  run_convolution(Pass::backward_weight, g, type, d, buffers,
                  [&](const AlgoChoice& choice, void* workspace) {
                    return cudnnConvolutionBackwardFilter(
                        handle(), &one, d.x.get(), x, d.y.get(), dy, d.conv.get(),
                        cudnnConvolutionBwdFilterAlgo_t(choice.algo), workspace,
                        choice.workspace_bytes, &one, d.w.get(), dw);
                  });
  if (dbias) cuda::conv2d_bias_grad(g, dy, dbias);  // our kernel: cuDNN has no bias gradient
}

KD_CONV2D_BACKWARD_AS_TWO_PASSES

KD_DEFINE_REGISTRAR(register_conv2d, KD_CONV2D_KERNELS)

}  // namespace cudnn
}  // namespace kd
