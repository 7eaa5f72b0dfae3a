// A/B switches of the CUDA kernels, read from the environment at every call (so one process, a
// test or a benchmark, can run both sides): KDLAB_BN_CLUSTERS (normalization.cu),
// KDLAB_CONV_1X1 (conv2d_pointwise.cu), KDLAB_CONV_FOLD and KDLAB_CONV_MICRO (conv2d.cu) and
// KDLAB_CUDNN_RESIDUAL (kernels/cudnn/conv2d_fold.cu and its emulated stand-in). Plain C++; any
// other value is an InputError naming the variable.
#pragma once
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>

#include "base/check.h"

namespace kd {
namespace cuda {

// The index in `options` of the variable's value; `fallback` when it is unset.
inline int env_choice(const char* name, std::initializer_list<const char*> options,
                      int fallback) {
  const char* v = std::getenv(name);
  if (!v) return fallback;
  std::string expected;
  int index = 0;
  for (const char* option : options) {
    if (std::strcmp(v, option) == 0) return index;
    if (index > 0) expected += index + 1 == int(options.size()) ? " or " : ", ";
    expected += option;
    ++index;
  }
  throw InputError(std::string(name) + ": expected " + expected + ", got '" + v + "'");
}

// True for `on`, false for `off`, `fallback` when the variable is unset.
inline bool env_switch(const char* name, const char* off, const char* on, bool fallback) {
  return env_choice(name, {off, on}, fallback ? 1 : 0) == 1;
}

// KDLAB_CUDNN_RESIDUAL: `fold` (the default: float residual convolutions are one cuDNN call) or
// `separate`. Read by the cuDNN path and by its emulated stand-in, which must agree.
inline bool cudnn_residual_folded() {
  return env_switch("KDLAB_CUDNN_RESIDUAL", "separate", "fold", /*fallback=*/true);
}

}  // namespace cuda
}  // namespace kd
