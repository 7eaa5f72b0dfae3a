// PlaneWalk: a thread's (row, col) position while it strides through a rows x cols array
// flattened row-major (start, start + step, ...). The CUDA norm kernels use it to walk one
// channel's n planes of hw elements, or one group's channels, with consecutive threads on
// consecutive columns (coalesced) and no integer division per step, whatever hw is (hw = 1 keeps
// every thread busy, unlike one warp per plane). Host-compilable so tests/test_pool_index.cpp
// checks it against plain division.
#pragma once
#include <cstdint>

#include "base/philox.h"  // KD_HOST_DEVICE

namespace kd {
namespace cuda {

struct PlaneWalk {
  int64_t row, col;
  int64_t row_step, col_step;
  int64_t cols;

  // cols > 0, start >= 0, step > 0.
  KD_HOST_DEVICE PlaneWalk(int64_t start, int64_t step, int columns)
      : row(start / columns),
        col(start % columns),
        row_step(step / columns),
        col_step(step % columns),
        cols(columns) {}

  KD_HOST_DEVICE void next() {
    row += row_step;
    col += col_step;
    if (col >= cols) {  // col_step < cols, so one carry is enough
      col -= cols;
      ++row;
    }
  }
};

}  // namespace cuda
}  // namespace kd
