// How the CPU convolutions (im2col + GEMM, Winograd, direct) split a weight gradient's sum over the
// batch: per fixed group of images into partials, then the partials added in group order. The
// groups depend on the batch size and the partial's size only, never on the thread count, so the
// bits do not either.
#pragma once
#include <algorithm>
#include <cstdint>

namespace kd::cpu {

// At most 16 groups (a power of two, so 1, 2, 4, 8 and 16 threads get equal shares), halved while
// all partials together would pass max_bytes (adding them up is a serial pass over memory), and
// at most one per image.
inline int weight_gradient_groups(int n, int64_t partial_bytes, int64_t max_bytes) {
  int groups = 16;
  while (groups > 1 && groups * partial_bytes > max_bytes) groups /= 2;
  return std::min(n, groups);
}

// Group `group` of `groups` holds images [group_begin(group), group_begin(group + 1)).
inline int group_begin(int n, int group, int groups) {
  return static_cast<int>(int64_t(n) * group / groups);
}

}  // namespace kd::cpu
