// Preset registry (see presets.h).
#include "apps/presets.h"

#include "kernels/check.h"

namespace kd {
namespace apps {

int run_fmnist_study(const StudyOptions& options);  // fmnist_study.cpp

std::vector<std::string> preset_names() { return {"fmnist-study"}; }

int run_preset(const std::string& name, const StudyOptions& options) {
  if (name == "fmnist-study") return run_fmnist_study(options);
  std::string known;
  for (auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw InputError("repro: unknown preset '" + name + "' (known: " + known + ")");
}

}  // namespace apps
}  // namespace kd
