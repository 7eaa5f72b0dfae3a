// The model interface the experiment layer sees, and the one factory that builds a model from
// its name (the names are those of models/registry.h: "lenet5", "preresnet<depth>[-ln]", ...).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/check.h"
#include "engine/nn/module.h"

namespace kd {
namespace models {

class Classifier : public nn::Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;  // images [n, c, h, w] -> logits [n, classes]

  // Per-stage representations for CKA (paper Table 1): the forward pass, whose logits go to
  // `logits` when it is given, and each stage's output average-pooled over H and W, [n, channels],
  // in stage order. Only models with stages (PreResNet) override it; the rest refuse.
  virtual bool has_stages() const { return false; }
  virtual std::vector<Tensor> forward_stages(const Tensor& x, Tensor* logits) {
    (void)x, (void)logits;
    KD_INPUT_CHECK(false, "model " << arch << " has no stages (CKA compares PreResNet stages)");
    return {};
  }

  std::string arch;
  int num_classes = 0;
  int in_channels = 0;
  int image_size = 0;  // the input height = width the architecture expects
};

// --precision's ends of a forward pass (engine/runtime_config.h). Under bf16, an f32 input enters
// as bf16 (enter_precision) and what leaves the model (logits, stage outputs) is cast back to the
// input's dtype (leave_precision), so losses, metrics, CKA and cached teacher logits stay f32.
// Under fp32, and for f64 inputs (the gradient checks), both return their tensor unchanged.
Tensor enter_precision(const Tensor& images);
Tensor leave_precision(const Tensor& t, const Tensor& images);

// An InputError naming --model and the known names when `arch` is not one of them.
std::shared_ptr<Classifier> make_model(const std::string& arch, int num_classes, int in_channels,
                                       uint64_t seed);

}  // namespace models
}  // namespace kd
