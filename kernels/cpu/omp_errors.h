// Exceptions across OpenMP regions. An exception that leaves a parallel region's structured
// block ends the process (std::terminate), so a loop body that can throw (a workspace that grows
// with the input's geometry can meet std::bad_alloc) runs inside RegionErrors::run: the first
// exception is kept, later iterations are skipped, and rethrow() raises it after the region,
// where the command reports it as one line.
#pragma once
#include <atomic>
#include <exception>
#include <mutex>

namespace kd {

class RegionErrors {
 public:
  template <class Body>
  void run(Body&& body) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      body();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!first_) first_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr first_;
};

}  // namespace kd
