// Caching allocator (see allocator.h). Size classes: multiples of 512 bytes below 1 MiB, then
// four classes per power of two, so reuse is likely and waste stays under 25%.
#include "engine/allocator.h"

#include <cstdlib>
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

void* CachingAllocator::allocate(size_t bytes) {
  size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = free_blocks_.find(size);
  if (it != free_blocks_.end() && !it->second.empty()) {
    void* ptr = it->second.back();
    it->second.pop_back();
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
