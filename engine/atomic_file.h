// Crash-safe file replacement for run directories and checkpoints. A reader of `path` sees either
// the old file or the complete new one, never a prefix: the bytes go to a temp file in the same
// directory (rename is only atomic within one filesystem), are fsync'ed, renamed over `path`, and
// the directory is fsync'ed so the rename itself survives a power cut.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "base/check.h"  // kd::InputError, which these functions throw

namespace kd {

// A borrowed run of bytes; lets callers write header + payload without first concatenating them.
struct ByteSpan {
  const void* data;
  size_t size;
};

// Writes the concatenation of `chunks` to `path` atomically. On any failure the temp file is
// removed and kd::InputError is thrown naming `path` and the system's reason (kd::Error, exit 1, for
// a full disk or an I/O error: the machine's condition, not the input); `path` is untouched
// unless the failure is the final directory fsync (the new file is then in place but possibly
// not durable, which the message says). A new file gets mode 0644; a replaced one keeps its mode.
void write_file_atomic(const std::string& path, const std::vector<ByteSpan>& chunks);
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace kd
