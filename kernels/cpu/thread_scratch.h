// Per-thread scratch buffers for OpenMP regions, allocated before the region starts. An
// exception thrown inside a parallel region cannot be caught outside it (the process aborts), so
// every allocation a region needs is made here, on the calling thread, where an out-of-memory
// condition is an ordinary std::bad_alloc the command reports.
#pragma once
#include <omp.h>

#include <cstddef>
#include <vector>

namespace kd {

template <class T>
class ThreadScratch {
 public:
  // `per_thread` elements for each thread the next parallel region can have.
  explicit ThreadScratch(size_t per_thread)
      : per_thread_(per_thread), buffer_(per_thread * size_t(omp_get_max_threads())) {}
  // The calling thread's slice; call inside the region (a region run serially is thread 0).
  T* mine() { return buffer_.data() + per_thread_ * size_t(omp_get_thread_num()); }

 private:
  size_t per_thread_;
  std::vector<T> buffer_;
};

}  // namespace kd
