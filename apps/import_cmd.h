// `kdlab import`: a teacher trained elsewhere, saved by PyTorch the standard way
// (safetensors.torch.save_file(model.state_dict(), path): tensors only, no kdlab metadata), becomes
// a kdlab checkpoint. The architecture comes from --model, the class and channel counts and the
// image size from --dataset (and --pad-to), the input normalization is the dataset's (unitcube,
// as for every model kdlab trains). Loading is strict: every tensor the model has must be in the
// file with its exact shape and dtype, and nothing else may be.
#pragma once
#include <memory>
#include <string>

#include "apps/commands.h"
#include "models/classifier.h"

namespace kd {
namespace apps {

struct ImportOptions {
  std::string input;  // the PyTorch-written .safetensors file
  std::string model;  // architecture name (models/registry.h)
  std::string out;    // the kdlab checkpoint to write
};

// Builds `arch` for `classes` x `channels` and loads the state dict in `path` strictly. Each
// problem is a one-line InputError naming `path` and the first offending tensor (a missing,
// unexpected, misshapen or mistyped one; a classifier head for another number of classes says
// both counts), with the count of further problems.
std::shared_ptr<models::Classifier> import_state_dict(const std::string& path,
                                                      const std::string& arch, int classes,
                                                      int channels);

// The subcommand: reads the dataset (its test split: the smaller one) for its classes, channels
// and image size, imports, writes options.out atomically. Nothing is written on any error.
int run_import(const CommonOptions& common, const ImportOptions& options);

}  // namespace apps
}  // namespace kd
