// The preset registry (see presets.h).
#include "apps/presets.h"

namespace kd {
namespace apps {

const Registry<PresetEntry>& preset_registry() {
#define KD_PRESET_ENTRY(name) name##_preset_entry(),
  static const Registry<PresetEntry> registry("preset", {KD_PRESETS(KD_PRESET_ENTRY)});
#undef KD_PRESET_ENTRY
  return registry;
}

}  // namespace apps
}  // namespace kd
