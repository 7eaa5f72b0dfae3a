// Checkpoint I/O in the safetensors format (github.com/huggingface/safetensors), on plain records
// so it does not depend on Tensor: a PyTorch user loads our checkpoints with load_state_dict, and
// golden files made by PyTorch come back in. Layout: u64 little-endian header size N, N bytes of
// JSON ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {k: v}}) padded
// with spaces to a multiple of 8, then the byte buffer, which the tensors cover with no holes.
// Data is stored little-endian row-major, which is this host's memory layout.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/check.h"  // kd::InputError, which these functions throw
#include "kernels/bf16.h"

namespace kd {

struct StEntry {
  std::string name;
  std::string dtype;            // "F32", "F64", "I64", "I32", "U8" or "BF16"
  std::vector<int64_t> shape;   // [] is a 0-d scalar (one element); a 0 anywhere means empty
  std::vector<uint8_t> bytes;   // numel(shape) * dtype_size(dtype) bytes, row-major
};

struct StFile {
  std::vector<StEntry> entries;  // reading returns them in buffer order = the order written
  std::map<std::string, std::string> metadata;
};

// Writes atomically (write_file_atomic). Tensors are laid out in the given order, contiguously.
// Refuses (kd::InputError naming `path`) an unknown dtype, a negative dim, a byte count that does
// not match the shape, a duplicate or empty name, or the reserved name "__metadata__".
void write_safetensors_atomic(const std::string& path, const StFile& file);

// Reads and validates everything the format promises; any violation is a kd::InputError that
// names the file and the problem.
StFile read_safetensors(const std::string& path);

// Serialised form without touching the disk (what write_safetensors_atomic writes).
std::string encode_safetensors(const StFile& file, const std::string& path_for_errors);
// `bytes` is a whole file; `path_for_errors` only labels messages.
StFile decode_safetensors(const std::string& bytes, const std::string& path_for_errors);

// Bytes per element of a dtype name; throws kd::InputError for an unknown one.
size_t dtype_size(const std::string& dtype);
bool is_known_dtype(const std::string& dtype);
// Product of dims (1 for a 0-d shape); throws kd::InputError for a negative dim or overflow.
int64_t numel(const std::vector<int64_t>& shape);

// nullptr when absent.
const StEntry* find(const StFile& file, const std::string& name);
// Throws kd::InputError "<what>: no tensor '<name>'" when absent.
const StEntry& require(const StFile& file, const std::string& name, const std::string& what);

// Typed views. T in {float, double, int64_t, int32_t, uint8_t, bf16}; the dtype must match T
// exactly (no silent conversion), else kd::InputError naming the entry.
template <class T>
std::vector<T> values(const StEntry& entry);
template <class T>
StEntry make_entry(const std::string& name, const std::vector<int64_t>& shape,
                   const std::vector<T>& data);
// Any float or integer dtype widened to double (exactly, bf16 included): the convenient form for
// golden comparisons.
std::vector<double> values_as_double(const StEntry& entry);

}  // namespace kd
