// safetensors encode/decode (see safetensors.h). The decoder trusts nothing in the file: every
// field, size and offset is checked before a byte is copied, because a checkpoint may be
// truncated, hand-edited or written by another tool. ordered_json keeps the header's order so a
// round trip returns entries in the order they were written.
#include "engine/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/atomic_file.h"
#include "base/check.h"
#include "base/input_file.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors stores little-endian data; this code copies host memory as is");

namespace kd {
namespace {

using ojson = nlohmann::ordered_json;
const char* const kMetadataKey = "__metadata__";
// The reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100000000;

#define ST_REFUSE(cond, path, msg) KD_INPUT_CHECK(cond, "safetensors '" << path << "': " << msg)

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

struct Span {
  uint64_t begin, end;
  size_t index;  // into the entry list, to name it in messages
};

StEntry parse_entry(const std::string& path, const std::string& name, const ojson& info,
                    uint64_t buffer_size, Span* span) {
  ST_REFUSE(info.is_object(), path, "entry '" << name << "' is not a JSON object");
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    ST_REFUSE(info.contains(field), path, "entry '" << name << "' is missing '" << field << "'");
  }
  for (auto it = info.begin(); it != info.end(); ++it) {
    const std::string& key = it.key();
    ST_REFUSE(key == "dtype" || key == "shape" || key == "data_offsets", path,
              "entry '" << name << "' has unknown field '" << key << "'");
  }
  StEntry entry;
  entry.name = name;
  const ojson& dtype = info["dtype"];
  ST_REFUSE(dtype.is_string(), path, "entry '" << name << "': dtype is not a string");
  entry.dtype = dtype.get<std::string>();
  ST_REFUSE(is_known_dtype(entry.dtype), path,
            "entry '" << name << "' has unknown dtype '" << entry.dtype << "'");

  const ojson& shape = info["shape"];
  ST_REFUSE(shape.is_array(), path, "entry '" << name << "': shape is not a list");
  uint64_t expected = dtype_size(entry.dtype);
  for (const ojson& dim : shape) {
    ST_REFUSE(dim.is_number_integer(), path,
              "entry '" << name << "': shape " << shape.dump() << " holds a non-integer");
    ST_REFUSE(dim.is_number_unsigned(), path,
              "entry '" << name << "': shape " << shape.dump() << " has a negative dimension");
    uint64_t d = dim.get<uint64_t>();
    ST_REFUSE(d <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(expected, d, &expected),
              path, "entry '" << name << "': shape " << shape.dump() << " is too large");
    entry.shape.push_back(static_cast<int64_t>(d));
  }

  const ojson& offsets = info["data_offsets"];
  ST_REFUSE(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                offsets[1].is_number_unsigned(),
            path, "entry '" << name << "': data_offsets " << offsets.dump()
                            << " is not [begin, end] with non-negative integers");
  uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
  ST_REFUSE(begin <= end, path,
            "entry '" << name << "': data_offsets [" << begin << ", " << end << "] has begin > end");
  ST_REFUSE(end - begin == expected, path,
            "entry '" << name << "': data_offsets [" << begin << ", " << end << "] span "
                      << end - begin << " bytes but shape " << shape_str(entry.shape) << " of "
                      << entry.dtype << " needs " << expected << " bytes");
  ST_REFUSE(end <= buffer_size, path,
            "entry '" << name << "': data_offsets [" << begin << ", " << end
                      << "] lie beyond the buffer of " << buffer_size << " bytes");
  span->begin = begin;
  span->end = end;
  return entry;
}

// Parses the header JSON, refusing duplicate keys at any depth (plain parsing keeps one silently).
ojson parse_header(const std::string& path, const std::string& text) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  // A header nesting arrays or objects thousands deep would be accepted by the parser and then
  // overflow the stack of whatever walks it; no valid header nests deeper than a few levels.
  constexpr int kMaxDepth = 64;
  // The parsed header takes 10 to 20 times its text in memory (a JSON value is 16 bytes, a key a
  // string and a node), so a 100 MB header of one-digit shape entries would cost gigabytes. A
  // checkpoint needs about ten values per tensor: a million is 100,000 tensors.
  constexpr int64_t kMaxValues = 1000000;
  int64_t values = 0;
  auto watch = [&](int depth, ojson::parse_event_t event, ojson& parsed) {
    ST_REFUSE(depth <= kMaxDepth, path, "header nests deeper than " << kMaxDepth << " levels");
    ST_REFUSE(++values <= kMaxValues, path,
              "header has more than " << kMaxValues << " JSON elements (keys, values, brackets)");
    if (event == ojson::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == ojson::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == ojson::parse_event_t::key && !open_objects.empty()) {
      const std::string key = parsed.get<std::string>();
      if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  ojson header;
  try {
    header = ojson::parse(text.begin(), text.end(), watch);
  } catch (const ojson::exception& e) {
    ST_REFUSE(false, path, "header is not valid JSON: " << e.what());
  }
  ST_REFUSE(duplicate.empty(), path, "header has duplicate key '" << duplicate << "'");
  ST_REFUSE(header.is_object(), path, "header is not a JSON object");
  return header;
}

}  // namespace

bool is_known_dtype(const std::string& dtype) {
  return dtype == "F32" || dtype == "F64" || dtype == "I64" || dtype == "I32" || dtype == "U8" ||
         dtype == "BF16";
}

size_t dtype_size(const std::string& dtype) {
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "U8") return 1;
  if (dtype == "BF16") return 2;
  KD_INPUT_CHECK(false,
                 "unknown safetensors dtype '" << dtype << "' (known: F32 F64 I64 I32 U8 BF16)");
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    KD_INPUT_CHECK(d >= 0, "shape " << shape_str(shape) << " has a negative dimension");
    KD_INPUT_CHECK(!__builtin_mul_overflow(n, d, &n), "shape " << shape_str(shape) << " is too large");
  }
  return n;
}

std::string encode_safetensors(const StFile& file, const std::string& path) {
  ojson header = ojson::object();
  if (!file.metadata.empty()) {
    ojson meta = ojson::object();
    for (const auto& kv : file.metadata) meta[kv.first] = kv.second;
    header[kMetadataKey] = meta;
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const StEntry& e : file.entries) {
    ST_REFUSE(!e.name.empty(), path, "a tensor has an empty name");
    ST_REFUSE(e.name != kMetadataKey, path, "'" << kMetadataKey << "' is reserved, not a tensor name");
    ST_REFUSE(names.insert(e.name).second, path, "duplicate tensor name '" << e.name << "'");
    ST_REFUSE(is_known_dtype(e.dtype), path, "tensor '" << e.name << "' has unknown dtype '" << e.dtype << "'");
    for (int64_t d : e.shape) {
      ST_REFUSE(d >= 0, path, "tensor '" << e.name << "' has negative dim in " << shape_str(e.shape));
    }
    uint64_t expected = static_cast<uint64_t>(numel(e.shape)) * dtype_size(e.dtype);
    ST_REFUSE(e.bytes.size() == expected, path,
              "tensor '" << e.name << "' has " << e.bytes.size() << " bytes but shape "
                         << shape_str(e.shape) << " of " << e.dtype << " needs " << expected);
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + expected}}};
    offset += expected;
  }
  std::string text;
  try {
    text = header.dump();  // strict UTF-8: a bad name or value throws rather than writes garbage
  } catch (const ojson::exception& e) {
    ST_REFUSE(false, path, "a tensor name or metadata string is not valid UTF-8: " << e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += text;
  for (const StEntry& e : file.entries) out.append(e.bytes.begin(), e.bytes.end());
  return out;
}

void write_safetensors_atomic(const std::string& path, const StFile& file) {
  write_file_atomic(path, encode_safetensors(file, path));
}

StFile decode_safetensors(const std::string& bytes, const std::string& path) {
  ST_REFUSE(bytes.size() >= 8, path, "file is shorter than 8 bytes (" << bytes.size() << " bytes)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  ST_REFUSE(n <= kMaxHeaderBytes, path,
            "header size " << n << " is absurd (limit " << kMaxHeaderBytes << " bytes)");
  ST_REFUSE(n <= bytes.size() - 8, path,
            "header size " << n << " exceeds the file size (" << bytes.size() << " bytes)");
  ST_REFUSE(n >= 2 && bytes[8] == '{', path, "header does not start with '{'");
  ojson header = parse_header(path, bytes.substr(8, n));

  const uint64_t buffer_begin = 8 + n, buffer_size = bytes.size() - buffer_begin;
  StFile file;
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      ST_REFUSE(it.value().is_object(), path, "__metadata__ is not a JSON object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        ST_REFUSE(m.value().is_string(), path, "metadata value for '" << m.key() << "' is not a string");
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    Span span{0, 0, file.entries.size()};
    file.entries.push_back(parse_entry(path, it.key(), it.value(), buffer_size, &span));
    spans.push_back(span);
  }

  // The spec requires the tensors to tile the buffer exactly: no overlap, no gap, no tail.
  std::stable_sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  const StEntry* previous = nullptr;
  for (const Span& s : spans) {
    const StEntry& e = file.entries[s.index];
    ST_REFUSE(s.begin >= cursor, path, "overlapping data_offsets: '" << e.name << "' begins at "
                                           << s.begin << " inside '" << previous->name
                                           << "' which ends at " << cursor);
    ST_REFUSE(s.begin == cursor, path, "gap in the buffer: bytes [" << cursor << ", " << s.begin
                                           << ") before '" << e.name << "' belong to no tensor");
    cursor = s.end;
    previous = &e;
  }
  ST_REFUSE(cursor == buffer_size, path, "buffer has " << buffer_size - cursor
                                             << " trailing bytes not covered by any tensor");

  std::vector<StEntry> ordered;
  ordered.reserve(spans.size());
  for (const Span& s : spans) {
    StEntry& e = file.entries[s.index];
    e.bytes.assign(bytes.begin() + buffer_begin + s.begin, bytes.begin() + buffer_begin + s.end);
    ordered.push_back(std::move(e));
  }
  file.entries = std::move(ordered);
  return file;
}

StFile read_safetensors(const std::string& path) {
  // A regular file only (a FIFO would block forever), read into a buffer of exactly its size:
  // the decoder's copies are then bounded by the file too.
  std::unique_ptr<InputFile> in;
  try {
    in = std::make_unique<InputFile>(path);
  } catch (const InputError& e) {
    // InputFile says "PATH: reason"; this reader's messages read "safetensors 'PATH': reason".
    const std::string what = e.what();
    ST_REFUSE(false, path, what.substr(std::min(what.size(), path.size() + 2)));
  }
  std::string bytes;
  try {
    bytes.resize(static_cast<size_t>(in->size()));
  } catch (const std::bad_alloc&) {
    throw Error("safetensors '" + path + "': out of memory reading its " +
                std::to_string(in->size()) + " bytes");
  }
  ST_REFUSE(in->read(bytes.data(), bytes.size()) == bytes.size(), path,
            "the file shrank while it was read");
  return decode_safetensors(bytes, path);
}

const StEntry* find(const StFile& file, const std::string& name) {
  for (const StEntry& e : file.entries) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

const StEntry& require(const StFile& file, const std::string& name, const std::string& what) {
  const StEntry* e = find(file, name);
  KD_INPUT_CHECK(e != nullptr, what << ": no tensor '" << name << "'");
  return *e;
}

namespace {
template <class T> const char* dtype_of();
template <> const char* dtype_of<float>() { return "F32"; }
template <> const char* dtype_of<double>() { return "F64"; }
template <> const char* dtype_of<int64_t>() { return "I64"; }
template <> const char* dtype_of<int32_t>() { return "I32"; }
template <> const char* dtype_of<uint8_t>() { return "U8"; }
template <> const char* dtype_of<bf16>() { return "BF16"; }

// Entries built by hand may disagree with themselves; check before reinterpreting bytes.
void check_consistent(const StEntry& e) {
  KD_INPUT_CHECK(is_known_dtype(e.dtype), "tensor '" << e.name << "' has unknown dtype '" << e.dtype << "'");
  KD_INPUT_CHECK(e.bytes.size() == static_cast<uint64_t>(numel(e.shape)) * dtype_size(e.dtype),
                 "tensor '" << e.name << "' has " << e.bytes.size() << " bytes for shape "
                            << shape_str(e.shape) << " of " << e.dtype);
}

template <class T>
std::vector<T> copy_out(const StEntry& e) {
  std::vector<T> out(e.bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), e.bytes.data(), e.bytes.size());
  return out;
}
}  // namespace

template <class T>
std::vector<T> values(const StEntry& entry) {
  check_consistent(entry);
  KD_INPUT_CHECK(entry.dtype == dtype_of<T>(), "tensor '" << entry.name << "' is " << entry.dtype
                                                          << ", not " << dtype_of<T>());
  return copy_out<T>(entry);
}

template <class T>
StEntry make_entry(const std::string& name, const std::vector<int64_t>& shape,
                   const std::vector<T>& data) {
  KD_INPUT_CHECK(static_cast<uint64_t>(numel(shape)) == data.size(),
                 "tensor '" << name << "': " << data.size() << " values for shape " << shape_str(shape));
  StEntry e{name, dtype_of<T>(), shape, std::vector<uint8_t>(data.size() * sizeof(T))};
  if (!data.empty()) std::memcpy(e.bytes.data(), data.data(), e.bytes.size());
  return e;
}

std::vector<double> values_as_double(const StEntry& entry) {
  check_consistent(entry);
  auto widen = [](const auto& v) { return std::vector<double>(v.begin(), v.end()); };
  if (entry.dtype == "F64") return copy_out<double>(entry);
  if (entry.dtype == "F32") return widen(copy_out<float>(entry));
  if (entry.dtype == "I64") return widen(copy_out<int64_t>(entry));
  if (entry.dtype == "I32") return widen(copy_out<int32_t>(entry));
  if (entry.dtype == "BF16") {
    std::vector<double> out;
    for (bf16 h : copy_out<bf16>(entry)) out.push_back(bf16_to_double(h));
    return out;
  }
  return widen(copy_out<uint8_t>(entry));
}

#define KD_ST_INSTANTIATE(T)                                  \
  template std::vector<T> values<T>(const StEntry&);         \
  template StEntry make_entry<T>(const std::string&, const std::vector<int64_t>&, const std::vector<T>&);
KD_ST_INSTANTIATE(float)
KD_ST_INSTANTIATE(double)
KD_ST_INSTANTIATE(int64_t)
KD_ST_INSTANTIATE(int32_t)
KD_ST_INSTANTIATE(uint8_t)
KD_ST_INSTANTIATE(bf16)
#undef KD_ST_INSTANTIATE

}  // namespace kd
