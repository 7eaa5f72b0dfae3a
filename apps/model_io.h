// A trained classifier on disk: its state dict (PyTorch names) plus the metadata needed to rebuild
// it and to feed it correctly (architecture, classes, input normalization), so a checkpoint is
// usable on its own: by `kdlab eval`, as a distillation teacher, or from PyTorch.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/classifier.h"

namespace kd {
namespace apps {

// The "format" metadata value. save_model also writes "model" (arch), "num_classes",
// "in_channels", "image_size", "normalization_mean"/"normalization_std" (JSON arrays in strings)
// and a human-readable "normalization" note; load_model requires all but the note.
constexpr const char* kModelFormat = "kdlab-checkpoint-1";

// norm_mean/norm_std: per channel, on pixels scaled to [0,1] (one value each per input channel).
// `extra` is added to the metadata; it may not reuse a key save_model writes itself.
void save_model(const std::string& path, const models::Classifier& model,
                const std::vector<float>& norm_mean, const std::vector<float>& norm_std,
                const std::map<std::string, std::string>& extra = {});

struct LoadedModel {
  std::shared_ptr<models::Classifier> model;  // on the CPU, in eval mode
  std::vector<float> norm_mean, norm_std;
  std::map<std::string, std::string> metadata;  // everything in the file, extra keys included
};

// Rebuilds the model from the metadata and loads the tensors strictly (names, shapes and dtypes
// must match exactly). Any problem is a kd::InputError naming the file (and the key or tensor),
// a NaN or infinite weight or statistic included unless `allow_nonfinite` (--allow-nonfinite).
LoadedModel load_model(const std::string& path, bool allow_nonfinite = false);

}  // namespace apps
}  // namespace kd
