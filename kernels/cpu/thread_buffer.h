// Grow-only per-thread scratch for the CPU convolutions: buffer `slot` of the calling thread, at
// least `elems` long, kept for the thread's lifetime (the next call of the same shape allocates
// nothing) and never shrunk. Each user passes its own Owner type, so two files' slots never share
// storage (conv2d.cpp keeps its flipped filters in one while Winograd fills its own). Growing can
// throw std::bad_alloc: inside an OpenMP region, call it under RegionErrors::run (omp_errors.h).
#pragma once
#include <cstdint>
#include <vector>

namespace kd::cpu {

template <class Owner, class T = float, int kSlots = 8>
T* thread_buffer(int slot, int64_t elems) {
  thread_local std::vector<T> buffers[kSlots];
  std::vector<T>& buf = buffers[slot];
  if (static_cast<int64_t>(buf.size()) < elems) {
    buf = std::vector<T>();  // drop the old block first: no copy, lower peak memory
    buf.resize(static_cast<size_t>(elems));
  }
  return buf.data();
}

}  // namespace kd::cpu
