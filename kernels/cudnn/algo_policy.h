// Which cuDNN convolution algorithm kdlab runs, as a rule over cuDNN's heuristic list. Plain C++
// without cuDNN types (kernels/cudnn/conv2d.cu maps cudnnConvolution*AlgoPerf_t onto Candidate),
// so a host test checks the rule in every build, with or without a GPU.
// The rule: walk cuDNN's list in its own order (best expected speed first, or with --cudnn-find
// the measured order of cudnnFind*AlgorithmEx, fastest first) and take the first
// entry that is supported, deterministic when cuda::math_mode().deterministic, and within the
// precision we allow: float without TF32 (tf32 off or deterministic) queries and runs with
// CUDNN_FMA_MATH and refuses tensor-op entries; float with TF32 queries with CUDNN_DEFAULT_MATH
// (TF32 allowed); double queries with DEFAULT (no TF32 exists for double). Entries that may
// down-convert (TENSOR_OP_MATH_ALLOW_CONVERSION) are always refused.
#pragma once
#include <vector>

namespace kd {
namespace cudnn {
namespace algo_policy {

enum class Math { default_math, tensor_op, tensor_op_allow_conversion, fma };

struct Candidate {
  int algo = 0;
  bool supported = false;      // status == CUDNN_STATUS_SUCCESS
  bool deterministic = false;  // determinism == CUDNN_DETERMINISTIC
  Math math = Math::default_math;
};

struct Request {
  bool deterministic = false;
  Math descriptor_math = Math::fma;  // what the convolution descriptor is queried with
  bool find = false;  // the list comes from timing every algorithm (fastest first), not heuristics
};

inline Math descriptor_math(bool is_double, bool tf32, bool deterministic) {
  if (is_double) return Math::default_math;
  return (tf32 && !deterministic) ? Math::default_math : Math::fma;
}

inline bool acceptable(const Candidate& c, const Request& r) {
  if (!c.supported) return false;
  if (r.deterministic && !c.deterministic) return false;
  if (c.math == Math::tensor_op_allow_conversion) return false;
  if (r.descriptor_math == Math::fma && c.math == Math::tensor_op) return false;
  return true;
}

// The math type the chosen entry runs with: FMA stays FMA (so a DEFAULT-labelled entry cannot
// pick up TF32 at run time); otherwise a tensor-op entry runs as tensor-op, the rest as DEFAULT.
inline Math execution_math(const Candidate& c, const Request& r) {
  if (r.descriptor_math == Math::fma) return Math::fma;
  return c.math == Math::tensor_op ? Math::tensor_op : Math::default_math;
}

// Indices of the acceptable entries in cuDNN's order; the caller takes the first whose workspace
// query succeeds.
inline std::vector<int> ordered_choices(const std::vector<Candidate>& list, const Request& r) {
  std::vector<int> out;
  for (int i = 0; i < int(list.size()); ++i)
    if (acceptable(list[i], r)) out.push_back(i);
  return out;
}

}  // namespace algo_policy
}  // namespace cudnn
}  // namespace kd
