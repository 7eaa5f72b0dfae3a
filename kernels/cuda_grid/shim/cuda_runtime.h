// What `#include <cuda_runtime.h>` finds in the grid-emulated build (this folder comes first on
// its include path): the emulator's device language and launch (kernels/cuda_grid/grid.h) plus
// the few runtime types and calls our kernel sources name. Memory, copies and the stream are the
// emulated runtime's (kernels/cuda_emu/runtime_emu.cpp, behind kernels/cuda/runtime.h).
#pragma once
#include "kernels/cuda_grid/grid.h"

struct CUstream_st;
using cudaStream_t = CUstream_st*;

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidConfiguration = 9 };

// Launch errors are thrown by the emulator at the launch itself, so nothing is ever pending.
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "invalid configuration argument";
}
