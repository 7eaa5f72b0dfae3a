// Stage CKA (apps/cka.h) on the GPU path: both PreResNets on the emulated CUDA device (our CUDA
// kernels on the grid emulator; ctest name grid/EmulatedGpuCka.*) give the CPU's per-stage CKA
// within float rounding. The stage features come from kernels that sum in another order than the
// CPU's, so the comparison is relative 1e-5, far below what a wrong stage or pooling would move.
#include <gtest/gtest.h>

#include <cmath>

#include "apps/cka.h"
#include "models/classifier.h"
#include "tests/cuda_testing.h"
#include "tests/data_testing.h"

namespace kd {
namespace {

TEST(EmulatedGpuCka, StageCkaMatchesCpu) {
  KD_REQUIRE_EMULATED_GPU();
  cuda_testing::WholeModelSchedule schedule;
  const data::Dataset ds = data_testing::random_dataset(20, 1, 32, 32, 10);
  const data::Normalization norm = data::Normalization::unitcube(1);
  apps::StageCka result[2];
  int i = 0;
  for (Device device : {Device::cpu(), Device::cuda()}) {
    auto student = models::make_model("preresnet8", 10, 1, 1);
    auto teacher = models::make_model("preresnet8", 10, 1, 2);
    student->to(device);
    teacher->to(device);
    result[i++] = apps::measure_stage_cka(*student, *teacher, ds, norm, device, 8);
  }
  ASSERT_EQ(result[0].per_stage.size(), 3u);
  ASSERT_EQ(result[1].per_stage.size(), 3u);
  EXPECT_EQ(result[1].batches, 3);
  for (size_t k = 0; k < 3; ++k)
    EXPECT_NEAR(result[1].per_stage[k], result[0].per_stage[k], 1e-5 * result[0].per_stage[k])
        << "stage " << k + 1;
}

}  // namespace
}  // namespace kd
