// The sm_80+ warp-level instructions our kernels use, one name for both builds: inline PTX under
// nvcc, kernels/cuda_grid/tensor_core.h on the grid emulator (which also states the fragment
// layouts and what "done" means for a cp.async copy). Device code only.
//  - tf32_bits(x): x rounded to TF32 (cvt.rna.tf32.f32), as the b32 register an mma operand takes.
//  - mma_tf32(d, a, b): d += A*B for one m16n8k8 tile (mma.sync.aligned.m16n8k8.row.col.f32.tf32
//    .tf32.f32); d, a, b are this lane's fragments. Every lane of the warp must call it.
//  - cp_async_zfill4(dst, src, valid): a 4-byte global -> shared copy that bypasses registers
//    (cp.async.ca); zeros when !valid, and then src is not read. cp_async_commit() closes the
//    thread's open group; cp_async_wait<N>() returns when all but its newest N groups have landed.
//    A copy is visible to the other threads only after the wait and a __syncthreads.
// Under nvcc these need sm_80 or newer; an older target traps, and the host never selects them
// there (cuda::tensor_cores_available()).
#pragma once
#include <cstdint>

namespace kd {
namespace cuda {
namespace tc {

#if KDLAB_GRID_EMULATOR

__device__ inline uint32_t tf32_bits(float x) { return ::kd::tf32_round_bits(x); }
__device__ inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::kd::grid::mma_m16n8k8_tf32(d, a, b, file, line);
}
__device__ inline void cp_async_zfill4(float* dst, const float* src, bool valid) {
  ::kd::grid::cp_async_zfill(dst, src, 4, valid);
}
__device__ inline void cp_async_commit() { ::kd::grid::cp_async_commit(); }
template <int N>
__device__ inline void cp_async_wait() {
  ::kd::grid::cp_async_wait(N);
}

#else

__device__ inline uint32_t tf32_bits(float x) {
#if __CUDA_ARCH__ >= 800
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#else
  __trap();
  return 0;
#endif
}
__device__ inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();
#endif
}
__device__ inline void cp_async_zfill4(float* dst, const float* src, bool valid) {
#if __CUDA_ARCH__ >= 800
  const unsigned shared = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(shared), "l"(src),
               "r"(valid ? 4 : 0)
               : "memory");
#else
  __trap();
#endif
}
__device__ inline void cp_async_commit() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
template <int N>
__device__ inline void cp_async_wait() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}

#endif

}  // namespace tc
}  // namespace cuda
}  // namespace kd
