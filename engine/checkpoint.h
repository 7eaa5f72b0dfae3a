// Checkpoints: named tensors + string metadata in one safetensors file. Names and layouts are the
// caller's (models use PyTorch state-dict names), so a PyTorch user can load_state_dict them. The
// file is replaced atomically, so a crash mid-save leaves the previous checkpoint intact.
#pragma once
#include <map>
#include <string>

#include "engine/nn/module.h"
#include "engine/tensor.h"

namespace kd {

// Writes `state` in its order, each tensor with its own dtype (GPU tensors are copied to the host
// first). Throws kd::InputError naming `path` on a duplicate name or an I/O failure.
void save_checkpoint(const std::string& path, const nn::NamedTensors& state,
                     const std::map<std::string, std::string>& metadata);

struct Checkpoint {
  std::map<std::string, Tensor> tensors;  // CPU tensors, dtype as stored
  std::map<std::string, std::string> metadata;
};

// Reads a file written by save_checkpoint (or by PyTorch's safetensors). Every error is a
// kd::InputError whose message names `path`.
Checkpoint load_checkpoint(const std::string& path);

// The first NaN or infinity among the floating-point tensors (name order), as "'name' holds nan
// at flat index 12"; empty when every value is finite. A diverged run's weights or batchnorm
// statistics give numbers that look like results (or a misleading divergence error later), so
// model loading refuses them by default.
std::string first_nonfinite(const Checkpoint& ckpt);

// The safetensors dtype name <-> DType; a name we do not support is a kd::InputError naming
// `where`.
DType dtype_from_name(const std::string& name, const std::string& where);

}  // namespace kd
