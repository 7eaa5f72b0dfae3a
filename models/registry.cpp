// The model registry (see registry.h) and the one factory built on it.
#include "models/registry.h"

namespace kd {
namespace models {

const Registry<ModelEntry>& model_registry() {
#define KD_MODEL_ENTRY(name) name##_model_entry(),
  static const Registry<ModelEntry> registry("model", {KD_MODELS(KD_MODEL_ENTRY)});
#undef KD_MODEL_ENTRY
  return registry;
}

std::shared_ptr<Classifier> make_model(const std::string& arch, int num_classes, int in_channels,
                                       uint64_t seed) {
  KD_INPUT_CHECK(num_classes >= 2, "model " << arch << ": need at least 2 classes, got "
                                            << num_classes);
  return model_registry().find(arch).build(arch, num_classes, in_channels, seed);
}

}  // namespace models
}  // namespace kd
