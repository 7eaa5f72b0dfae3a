// Fuzz target: safetensors decoding (engine/safetensors.h) and its conversion into tensors
// (engine/checkpoint.h load_checkpoint): the input is a whole file.
#include "engine/checkpoint.h"
#include "engine/safetensors.h"
#include "tests/fuzz/fuzz_target.h"

KD_FUZZ_TARGET(safetensors) {
  const std::string bytes = kd::fuzz::as_text(data, size);
  const kd::StFile file = kd::decode_safetensors(bytes, "fuzz.safetensors");
  for (const kd::StEntry& e : file.entries) kd::values_as_double(e);
  kd::load_checkpoint(kd::fuzz::write_scratch("ckpt.safetensors", data, size));
}
