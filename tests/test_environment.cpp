// Every suite runs under the engine's own threading set-up (OpenMP on all cores, OpenBLAS
// single-threaded inside the kernels), as the kdlab binary does.
#include <gtest/gtest.h>

#include "engine/runtime_config.h"

namespace {
class EngineThreads : public ::testing::Environment {
 public:
  void SetUp() override { kd::set_runtime_config(kd::RuntimeConfig{}); }
};
const bool kRegistered = (::testing::AddGlobalTestEnvironment(new EngineThreads), true);
}  // namespace
