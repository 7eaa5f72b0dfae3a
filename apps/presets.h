// Presets: the experiment files shipped in presets/*.json, one per experiment of the paper (and
// the ones our data cannot run, which say why). They are built into the binary (the build turns
// each file into a string, cmake/embed_presets.cmake), so `kdlab repro NAME` works from any
// folder, and `kdlab repro NAME --show` prints the file for a user to copy and edit.
//
// To add a preset: drop a file presets/<name>.json (its "name" must be <name>) and rebuild.
#pragma once
#include <string>
#include <vector>

namespace kd {
namespace apps {

struct Preset {
  std::string name;  // the file's name without .json
  std::string text;  // the file
};

const std::vector<Preset>& presets();  // in file-name order
// The preset `name`, or an InputError listing them all.
const Preset& find_preset(const std::string& name);

}  // namespace apps
}  // namespace kd
