// A caching allocator: blocks are kept by rounded size class and reused, so a training step
// does not pay page faults (CPU) or cudaMalloc (GPU) for every activation. One instance per
// device kind. On out-of-memory the cache is released and the request retried once; then the
// error states requested, free and cached bytes.
#pragma once
#include <cstddef>
#include <map>
#include <mutex>
#include <vector>

#include "engine/device.h"

namespace kd {

class CachingAllocator {
 public:
  using RawAlloc = void* (*)(size_t);  // returns nullptr on out-of-memory
  using RawFree = void (*)(void*);
  using FreeBytes = size_t (*)();
  CachingAllocator(const char* name, RawAlloc raw_alloc, RawFree raw_free, FreeBytes free_bytes);
  ~CachingAllocator();

  void* allocate(size_t bytes);
  void deallocate(void* ptr, size_t bytes) noexcept;  // never throws: destructors call it
  void release_cache();
  void set_limit(size_t bytes) { limit_ = bytes; }  // 0 = none; used to test the OOM path

  size_t cached_bytes() const;
  size_t in_use_bytes() const;
  size_t peak_in_use_bytes() const;
  void reset_peak();  // peak := current use, so a benchmark can measure one phase
  static size_t round_size(size_t bytes);

  static CachingAllocator& for_device(Device device);

 private:
  void* raw_allocate(size_t bytes);
  const char* name_;
  RawAlloc raw_alloc_;
  RawFree raw_free_;
  FreeBytes free_bytes_;
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_blocks_;
  size_t cached_ = 0, in_use_ = 0, peak_ = 0, limit_ = 0;
};

}  // namespace kd
