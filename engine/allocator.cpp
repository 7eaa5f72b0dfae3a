// Caching allocator (see allocator.h). Size classes: multiples of 512 bytes below 1 MiB, then
// four classes per power of two, so reuse is likely and waste stays under 25%.
#include "engine/allocator.h"

#include <cstdlib>
#include <iterator>
#include <sstream>

#include "base/check.h"
#include "engine/device.h"

namespace kd {

CachingAllocator::CachingAllocator(const char* name, RawAlloc raw_alloc, RawFree raw_free,
                                   FreeBytes free_bytes)
    : name_(name), raw_alloc_(raw_alloc), raw_free_(raw_free), free_bytes_(free_bytes) {}

CachingAllocator::~CachingAllocator() { release_cache(); }

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes < (1u << 20)) return (bytes + 511) & ~size_t(511);
  size_t pow = 1u << 20;
  while (pow * 2 <= bytes) pow *= 2;
  size_t quarter = pow / 4;
  return (bytes + quarter - 1) / quarter * quarter;
}

void* CachingAllocator::raw_allocate(size_t bytes) {
  if (limit_ && in_use_ + cached_ + bytes > limit_) return nullptr;
  return raw_alloc_(bytes);
}

void* CachingAllocator::take_cached(std::map<size_t, std::vector<void*>>& list, size_t size) {
  auto it = list.find(size);
  if (it == list.end() || it->second.empty()) return nullptr;
  void* ptr = it->second.back();
  it->second.pop_back();
  return ptr;
}

void* CachingAllocator::allocate(size_t bytes) {
  size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  if (capturing_) {
    // The graph's own blocks first; any other block becomes the graph's.
    void* ptr = take_cached(pools_[capturing_], size);
    if (ptr) {
      pooled_ -= size;
    } else if ((ptr = take_cached(free_blocks_, size))) {
      cached_ -= size;
    } else {
      ptr = raw_allocate(size);
      KD_CHECK(ptr, name_ << " out of memory while capturing a CUDA graph: requested " << bytes
                          << " bytes, " << in_use_ << " in use, " << cached_ << " cached");
    }
    owner_[ptr] = capturing_;
    in_use_ += size;
    if (in_use_ > peak_) peak_ = in_use_;
    return ptr;
  }
  if (void* ptr = take_cached(free_blocks_, size)) {
    cached_ -= size;
    in_use_ += size;
    if (in_use_ > peak_) peak_ = in_use_;
    return ptr;
  }
  void* ptr = raw_allocate(size);
  const size_t cached_before_retry = cached_;
  if (!ptr) {
    for (auto& kv : free_blocks_)
      for (void* p : kv.second) raw_free_(p);
    free_blocks_.clear();
    cached_ = 0;
    ptr = raw_allocate(size);
  }
  if (!ptr) {
    std::ostringstream os;
    os << name_ << " out of memory: requested " << bytes << " bytes (" << size << " rounded), "
       << in_use_ << " in use, " << (free_bytes_ ? free_bytes_() : 0) << " free on the device, "
       << cached_before_retry << " were cached (released before one retry)";
    if (limit_) os << ", limit " << limit_;
    throw Error(os.str());
  }
  in_use_ += size;
  if (in_use_ > peak_) peak_ = in_use_;
  return ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t bytes) noexcept {
  if (!ptr) return;
  size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  in_use_ -= size;
  try {
    int pool = 0;
    if (!owner_.empty() || capturing_) {
      auto owned = owner_.find(ptr);
      if (owned != owner_.end()) pool = owned->second;
      else if (capturing_) owner_[ptr] = pool = capturing_;  // the graph may have used it
    }
    if (pool) {
      pools_[pool][size].push_back(ptr);
      pooled_ += size;
      return;
    }
  } catch (...) {
    // No memory for the bookkeeping: the block is lost to the cache rather than handed on.
    return;
  }
  // Reached from destructors, often while memory is short: caching the block needs memory for
  // the free list, and when there is none the block goes back to the system instead of an
  // exception escaping a destructor (which would abort the process).
  try {
    free_blocks_[size].push_back(ptr);
    cached_ += size;
  } catch (...) {
    raw_free_(ptr);
  }
}

void CachingAllocator::release_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& kv : free_blocks_)
    for (void* p : kv.second) raw_free_(p);
  free_blocks_.clear();
  cached_ = 0;
}

int CachingAllocator::new_pool() {
  std::lock_guard<std::mutex> lock(mutex_);
  return ++last_pool_;
}

void CachingAllocator::begin_capture(int pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  KD_CHECK(pool > 0 && !capturing_, name_ << ": begin_capture(" << pool << ") while "
                                          << (capturing_ ? "another capture is open" : "no pool"));
  // One live graph at a time: a block two graphs shared would go back to the cache with the
  // first one's release while the second still replays into it.
  for (const auto& kv : owner_)
    KD_CHECK(kv.second == pool, name_ << ": begin_capture(" << pool << ") while pool "
                                      << kv.second << " still holds blocks (release it first)");
  capturing_ = pool;
}

void CachingAllocator::end_capture() {
  std::lock_guard<std::mutex> lock(mutex_);
  capturing_ = 0;
}

void CachingAllocator::release_pool(int pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  KD_CHECK(capturing_ != pool, name_ << ": release_pool(" << pool << ") during its capture");
  auto it = pools_.find(pool);
  if (it != pools_.end()) {
    for (auto& kv : it->second)
      for (void* p : kv.second) {
        free_blocks_[kv.first].push_back(p);
        cached_ += kv.first;
        pooled_ -= kv.first;
      }
    pools_.erase(it);
  }
  for (auto o = owner_.begin(); o != owner_.end();)  // blocks still in use return when freed
    o = o->second == pool ? owner_.erase(o) : std::next(o);
}

size_t CachingAllocator::pooled_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pooled_;
}

size_t CachingAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cached_;
}
size_t CachingAllocator::in_use_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return in_use_;
}
void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  peak_ = in_use_;
}
size_t CachingAllocator::peak_in_use_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return peak_;
}

namespace {
void* host_alloc(size_t bytes) { return std::aligned_alloc(64, (bytes + 63) & ~size_t(63)); }
void host_free(void* p) { std::free(p); }
}  // namespace

CachingAllocator& CachingAllocator::for_device(Device device) {
  // Leaked on purpose: tensors held by statics may be freed after main returns.
  static CachingAllocator* host = new CachingAllocator("cpu", host_alloc, host_free, nullptr);
  static CachingAllocator* gpu =
      new CachingAllocator(
          "cuda", [](size_t bytes) { return backend_of(Device::cuda()).malloc_device(bytes); },
          [](void* p) { backend_of(Device::cuda()).free_device(p); },
          [] { return backend_of(Device::cuda()).free_device_bytes(); });
  return device.is_cuda() ? *gpu : *host;
}

}  // namespace kd
