// The model factory (see classifier.h).
#include "models/classifier.h"

#include <cstdlib>

#include "models/lenet.h"
#include "models/preresnet.h"

namespace kd {
namespace models {

std::shared_ptr<Classifier> make_model(const std::string& arch, int num_classes, int in_channels,
                                       uint64_t seed) {
  KD_INPUT_CHECK(num_classes >= 2, "model " << arch << ": need at least 2 classes, got "
                                            << num_classes);
  if (arch == "lenet5") return std::make_shared<LeNet5>(num_classes, in_channels, seed);
  const std::string prefix = "preresnet";
  if (arch.compare(0, prefix.size(), prefix) == 0) {
    std::string rest = arch.substr(prefix.size());
    bool group_norm = false;
    if (rest.size() > 3 && rest.compare(rest.size() - 3, 3, "-ln") == 0) {
      group_norm = true;
      rest.resize(rest.size() - 3);
    }
    char* end = nullptr;
    long depth = std::strtol(rest.c_str(), &end, 10);
    if (!rest.empty() && end && *end == '\0')
      return std::make_shared<PreResNet>(int(depth), num_classes, in_channels, group_norm, seed);
  }
  throw InputError("unknown model '" + arch +
                   "': expected lenet5, preresnet<depth> (e.g. preresnet20, preresnet56) or "
                   "preresnet<depth>-ln");
}

}  // namespace models
}  // namespace kd
