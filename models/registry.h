// The models kdlab can build, by name. `make_model` (classifier.h) and the CLI's --model and
// --student-model help are generated from this list.
//
// To add a model: a file models/<name>.cpp that defines `ModelEntry <name>_model_entry()` (the
// name or name pattern, one line of help, and how to build it), and its name in KD_MODELS below.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/registry.h"
#include "models/classifier.h"

namespace kd {
namespace models {

struct ModelEntry : RegistryEntry {
  // Builds `arch` (a name this entry accepts) for this many classes and input channels.
  std::function<std::shared_ptr<Classifier>(const std::string& arch, int num_classes,
                                            int in_channels, uint64_t seed)>
      build;
};

#define KD_MODELS(X) \
  X(lenet5)          \
  X(preresnet)       \
  X(vgg16)

#define KD_DECLARE_MODEL_ENTRY(name) ModelEntry name##_model_entry();
KD_MODELS(KD_DECLARE_MODEL_ENTRY)
#undef KD_DECLARE_MODEL_ENTRY

const Registry<ModelEntry>& model_registry();

}  // namespace models
}  // namespace kd
