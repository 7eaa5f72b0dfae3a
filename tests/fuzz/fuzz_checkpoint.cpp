// Fuzz target: a model checkpoint's metadata -> model (apps/model_io.h load_model): architecture,
// class and channel counts, image size, normalization, then the strict state-dict load. The input
// is JSON, {"metadata": {KEY: VALUE}, "tensors": {NAME: [DIMS]}}, from which the harness writes a
// small safetensors file (tensors zero-filled F32; the bytes themselves are fuzz_safetensors'
// business). Non-string metadata values are written as their JSON text. Input that is not such a
// document, or asks the harness for more than 4 Mi elements, is skipped.
#include <nlohmann/json.hpp>

#include "apps/model_io.h"
#include "engine/safetensors.h"
#include "tests/fuzz/fuzz_target.h"

KD_FUZZ_TARGET(checkpoint) {
  const nlohmann::json doc =
      nlohmann::json::parse(kd::fuzz::as_text(data, size), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return;
  kd::StFile file;
  if (doc.contains("metadata") && doc["metadata"].is_object())
    for (const auto& [key, value] : doc["metadata"].items())
      file.metadata[key] = value.is_string() ? value.get<std::string>() : value.dump();
  int64_t total = 0;
  if (doc.contains("tensors") && doc["tensors"].is_object()) {
    for (const auto& [name, dims] : doc["tensors"].items()) {
      if (!dims.is_array()) return;
      std::vector<int64_t> shape;
      int64_t numel = 1;
      for (const auto& d : dims) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (1 << 22)) return;
        shape.push_back(d.get<int64_t>());
        numel *= shape.back();
        if (numel > (1 << 22)) return;
      }
      total += numel;
      if (total > (1 << 22)) return;
      file.entries.push_back(
          kd::make_entry<float>(name, shape, std::vector<float>(size_t(numel), 0.0f)));
    }
  }
  const std::string bytes = kd::encode_safetensors(file, "fuzz");  // refuses bad names: skipped
  const std::string path = kd::fuzz::write_scratch(
      "model.safetensors", reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  kd::apps::load_model(path);
}
