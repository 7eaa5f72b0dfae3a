// Tensor <-> safetensors record conversion for checkpoints (see checkpoint.h).
#include "engine/checkpoint.h"

#include <cmath>
#include <cstring>
#include <sstream>
#include <set>

#include "engine/safetensors.h"

namespace kd {

DType dtype_from_name(const std::string& name, const std::string& where) {
  if (name == "F32") return DType::F32;
  if (name == "F64") return DType::F64;
  if (name == "I32") return DType::I32;
  if (name == "I64") return DType::I64;
  if (name == "U8") return DType::U8;
  if (name == "BF16") return DType::BF16;
  throw InputError(where + ": unsupported dtype '" + name +
                   "' (expected F32, F64, I32, I64, U8 or BF16)");
}

void save_checkpoint(const std::string& path, const nn::NamedTensors& state,
                     const std::map<std::string, std::string>& metadata) {
  StFile file;
  file.metadata = metadata;
  file.entries.reserve(state.size());
  std::set<std::string> seen;
  for (const auto& named : state) {
    KD_INPUT_CHECK(seen.insert(named.first).second,
                   path << ": duplicate tensor name '" << named.first << "'");
    KD_INPUT_CHECK(named.second.defined(), path << ": tensor '" << named.first << "' is undefined");
    // One host copy per tensor keeps peak extra memory at the largest tensor, not the model.
    Tensor host = named.second.is_cuda() ? named.second.to(Device::cpu()) : named.second;
    StEntry entry;
    entry.name = named.first;
    entry.dtype = dtype_name(host.dtype());
    entry.shape = host.shape();
    const auto* bytes = static_cast<const uint8_t*>(host.raw());
    entry.bytes.assign(bytes, bytes + host.nbytes());
    file.entries.push_back(std::move(entry));
  }
  write_safetensors_atomic(path, file);
}

namespace {
double widened(float v) { return v; }
double widened(double v) { return v; }
double widened(bf16 v) { return bf16_to_double(v); }

template <class T>
std::string first_nonfinite_in(const std::string& name, const Tensor& t) {
  const T* v = static_cast<const T*>(t.raw());
  for (int64_t i = 0, n = t.numel(); i < n; ++i)
    if (!std::isfinite(widened(v[i]))) {
      std::ostringstream os;
      os << "'" << name << "' holds " << widened(v[i]) << " at flat index " << i;
      return os.str();
    }
  return "";
}
}  // namespace

std::string first_nonfinite(const Checkpoint& ckpt) {
  for (const auto& [name, t] : ckpt.tensors) {
    std::string found;
    if (t.dtype() == DType::F32) found = first_nonfinite_in<float>(name, t);
    if (t.dtype() == DType::F64) found = first_nonfinite_in<double>(name, t);
    if (t.dtype() == DType::BF16) found = first_nonfinite_in<bf16>(name, t);
    if (!found.empty()) return found;
  }
  return "";
}

Checkpoint load_checkpoint(const std::string& path) {
  StFile file = read_safetensors(path);
  Checkpoint out;
  out.metadata = std::move(file.metadata);
  for (auto& entry : file.entries) {
    DType dtype = dtype_from_name(entry.dtype, path + ": tensor '" + entry.name + "'");
    Tensor t = Tensor::empty(entry.shape, dtype, Device::cpu());
    KD_INPUT_CHECK(t.nbytes() == entry.bytes.size(), path << ": tensor '" << entry.name << "' has "
                                                          << entry.bytes.size()
                                                          << " bytes, expected " << t.nbytes());
    if (!entry.bytes.empty()) std::memcpy(t.raw(), entry.bytes.data(), entry.bytes.size());
    KD_INPUT_CHECK(out.tensors.emplace(entry.name, t).second,
                   path << ": duplicate tensor name '" << entry.name << "'");
    entry.bytes = std::vector<uint8_t>();  // free as we go: checkpoints can be large
  }
  return out;
}

}  // namespace kd
