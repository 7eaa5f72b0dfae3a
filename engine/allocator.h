// A caching allocator: blocks are kept by rounded size class and reused, so a training step
// does not pay page faults (CPU) or cudaMalloc (GPU) for every activation. One instance per
// device kind. On out-of-memory the cache is released and the request retried once; then the
// error states requested, free and cached bytes.
//
// CUDA graphs (engine/step_graph.h): a graph replays with the pointers it was captured with, so
// the blocks it touches must not go to other tensors while it lives. Between begin_capture(pool)
// and end_capture(), every block freed (the graph may have used it) and every block allocated
// (then freed later) belongs to `pool`: freed, it waits in the pool's own free list, which only
// later captures into the same pool draw from. release_pool(pool), when the graph is destroyed,
// hands those blocks back to the common cache. One pool holds blocks at a time (one live graph
// per device).
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

  int new_pool();  // a pool id for begin_capture (never 0)
  void begin_capture(int pool);
  void end_capture();
  void release_pool(int pool);
  size_t pooled_bytes() const;  // free blocks held for graphs

  static CachingAllocator& for_device(Device device);

 private:
  void* raw_allocate(size_t bytes);
  void* take_cached(std::map<size_t, std::vector<void*>>& list, size_t size);
  const char* name_;
  RawAlloc raw_alloc_;
  RawFree raw_free_;
  FreeBytes free_bytes_;
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_blocks_;
  size_t cached_ = 0, in_use_ = 0, peak_ = 0, limit_ = 0;
  int capturing_ = 0, last_pool_ = 0;
  std::map<int, std::map<size_t, std::vector<void*>>> pools_;  // per pool: its free blocks
  std::map<void*, int> owner_;  // blocks that belong to a pool (in use or free)
  size_t pooled_ = 0;
};

}  // namespace kd
