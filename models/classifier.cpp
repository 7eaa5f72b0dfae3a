// The precision's casts at a classifier's ends (classifier.h). The model's layers see the bf16
// activations; every op computes in fp32 on them (engine/ops/bf16_operands.h).
#include "models/classifier.h"

#include "engine/ops.h"
#include "engine/runtime_config.h"

namespace kd {
namespace models {

Tensor enter_precision(const Tensor& images) {
  if (runtime_config().precision != Precision::Bf16 || images.dtype() != DType::F32) return images;
  return ops::cast(images, DType::BF16);
}

Tensor leave_precision(const Tensor& t, const Tensor& images) {
  return t.dtype() == images.dtype() ? t : ops::cast(t, images.dtype());
}

}  // namespace models
}  // namespace kd
