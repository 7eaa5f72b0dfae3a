// Gradient checks of whole PreResNet blocks (models::PreActBlock) in f64 and train mode: the
// input gradient and every parameter's, for basic and bottleneck blocks, with the identity and
// the 1x1-conv shortcut, with BatchNorm and with GroupNorm. Batch-norm in train mode updates its
// running statistics on every forward; the outputs do not read them, so the check is unaffected.
// Tolerance as in test_gradcheck_ops.cpp: max |a - n| / max(1, |n|) < 1e-6, step 1e-6.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/nn/init.h"
#include "models/classifier.h"
#include "models/preresnet.h"
#include "tests/gradcheck.h"

namespace kd {
namespace {

struct BlockCase {
  const char* name;
  int inplanes, planes, stride;
  bool bottleneck, group_norm;
  int n, h, w;
  bool expect_downsample;
};

void check_block(const BlockCase& bc) {
  SCOPED_TRACE(bc.name);
  nn::Initializer init(1234);
  models::PreActBlock block(bc.inplanes, bc.planes, bc.stride, bc.bottleneck, bc.group_norm, init);
  block.to(DType::F64);
  block.train();

  bool has_downsample = false;
  for (auto& kv : block.named_parameters())
    if (kv.first == "downsample.0.weight") has_downsample = true;
  EXPECT_EQ(has_downsample, bc.expect_downsample);

  // Non-trivial affine parameters so the checks reach every term of the norm backward.
  uint64_t seed = 500;
  for (auto& kv : block.named_parameters()) {
    Tensor p = kv.second;
    if (kv.first.find("bn") == 0) {
      bool is_weight = kv.first.find(".weight") != std::string::npos;
      Tensor v =
          testing::random_f64(p.shape(), seed++, is_weight ? 0.5 : -0.5, is_weight ? 1.5 : 0.5);
      p.copy_from(v);
    }
  }

  Tensor x = testing::random_f64({bc.n, bc.inplanes, bc.h, bc.w}, 42, -2.0, 2.0);
  x.set_requires_grad(true);
  std::vector<Tensor> inputs = {x};
  std::vector<std::string> names = {"input"};
  for (auto& kv : block.named_parameters()) {
    inputs.push_back(kv.second);
    names.push_back(kv.first);
  }

  Tensor probe;
  {
    NoGradGuard no_grad;
    probe = block.forward(x);
  }
  int out_h = (bc.h - 1) / bc.stride + 1, out_w = (bc.w - 1) / bc.stride + 1;
  ASSERT_EQ(probe.shape(), (Shape{bc.n, block.out_planes(), out_h, out_w}));
  Tensor weights = testing::random_f64(probe.shape(), 43, 0.5, 1.5);

  testing::GradCheckResult r = testing::gradcheck(
      [&](const std::vector<Tensor>& in) {
        return testing::weighted_sum(block.forward(in[0]), weights);
      },
      inputs);
  EXPECT_LT(r.max_error, 1e-6) << r.describe() << " ("
                               << (r.worst_input >= 0 ? names[r.worst_input] : "?") << ")";
  EXPECT_GT(r.max_numeric, 1e-3) << r.describe();
  // Every parameter must get a non-zero gradient from the tape.
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_TRUE(inputs[i].grad().defined()) << names[i];
    double norm = 0;
    for (double g : inputs[i].grad().to_vector<double>()) norm += g * g;
    EXPECT_GT(norm, 1e-12) << names[i] << " received no gradient";
  }
}

TEST(GradCheckBlocks, BasicIdentityShortcut) {
  check_block({"basic 3->3 stride 1", 3, 3, 1, false, false, 2, 5, 4, false});
}

TEST(GradCheckBlocks, BasicDownsampleStride2) {
  check_block({"basic 3->4 stride 2", 3, 4, 2, false, false, 2, 5, 6, true});
}

TEST(GradCheckBlocks, BasicChannelChangeStride1) {
  check_block({"basic 2->3 stride 1", 2, 3, 1, false, false, 1, 4, 3, true});
}

TEST(GradCheckBlocks, BottleneckDownsample) {
  // 4 -> planes 2 -> 8 channels: the shortcut conv is needed even at stride 1.
  check_block({"bottleneck 4->8 stride 1", 4, 2, 1, true, false, 2, 4, 5, true});
}

TEST(GradCheckBlocks, BottleneckIdentity) {
  check_block({"bottleneck 8->8 stride 1", 8, 2, 1, true, false, 2, 3, 4, false});
}

TEST(GradCheckBlocks, BottleneckStride2) {
  check_block({"bottleneck 8->12 stride 2", 8, 3, 2, true, false, 2, 5, 4, true});
}

TEST(GradCheckBlocks, GroupNormBasicAndBottleneck) {
  check_block({"basic group-norm 3->4 stride 2", 3, 4, 2, false, true, 2, 4, 5, true});
  check_block({"bottleneck group-norm 4->8", 4, 2, 1, true, true, 1, 4, 4, true});
}

}  // namespace
}  // namespace kd
