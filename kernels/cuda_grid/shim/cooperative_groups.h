// What `#include <cooperative_groups.h>` finds in the grid-emulated build: the part of CUDA's
// cooperative groups our kernels use, thread block clusters (sm_90): this_cluster(), its sync(),
// block_rank(), num_blocks() and map_shared_rank() (distributed shared memory; on the emulator,
// dynamic shared memory only). Semantics and checks: kernels/cuda_grid/cluster.h and block.h.
#pragma once
#include "kernels/cuda_grid/grid.h"

namespace cooperative_groups {

class cluster_group {
 public:
  // The call site comes from the defaults, as for __syncthreads, so errors name the kernel line.
  void sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) const {
    ::kd::grid::detail::wait_barrier(file, line, true);
  }
  unsigned block_rank() const { return unsigned(::kd::grid::detail::runner().cluster_rank()); }
  unsigned num_blocks() const { return unsigned(::kd::grid::detail::runner().cluster_blocks()); }
  template <class T>
  T* map_shared_rank(T* addr, unsigned rank) const {
    return reinterpret_cast<T*>(::kd::grid::detail::runner().map_shared_rank(addr, rank));
  }
};

inline cluster_group this_cluster() { return cluster_group{}; }

}  // namespace cooperative_groups
