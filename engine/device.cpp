// Device parsing, runtime GPU detection and the CPU thread count.
#include "engine/device.h"

#include <cblas.h>
#include <omp.h>

#include "kernels/check.h"
#include "kernels/cuda/runtime.h"

namespace kd {

std::string Device::str() const {
  return is_cuda() ? "cuda:" + std::to_string(index) : std::string("cpu");
}

bool cuda_usable() { return cuda::has_op_kernels() && cuda::device_count() > 0; }

Device parse_device(const std::string& spec) {
  if (spec == "cpu") return Device::cpu();
  if (spec == "auto") return cuda_usable() ? Device::cuda(0) : Device::cpu();
  if (spec == "cuda" || spec == "cuda:0") {
    KD_INPUT_CHECK(cuda::built_with_cuda(), "--device cuda: kdlab was built without CUDA");
    KD_INPUT_CHECK(cuda::device_count() > 0,
                   "--device cuda: no usable GPU (none found, or KDLAB_DISABLE_CUDA is set)");
    KD_INPUT_CHECK(cuda::has_op_kernels(),
                   "--device cuda: this build has no CUDA op kernels; use --device cpu");
    return Device::cuda(0);
  }
  throw InputError("--device: expected auto, cpu or cuda, got '" + spec + "'");
}

namespace {
int g_threads = 0;
GpuKernels g_gpu_kernels;
}  // namespace

GpuImpl parse_gpu_impl(const std::string& flag, const std::string& value) {
  if (value == "native") return GpuImpl::Native;
  if (value == "cudnn") return GpuImpl::Cudnn;
  throw InputError(flag + ": expected native or cudnn, got '" + value + "'");
}

const char* gpu_impl_name(GpuImpl impl) { return impl == GpuImpl::Cudnn ? "cudnn" : "native"; }

void set_gpu_kernels(const GpuKernels& kernels) {
  KD_INPUT_CHECK(kernels.conv == GpuImpl::Native || cuda::built_with_cudnn(),
                 "--conv cudnn: kdlab was built without cuDNN");
  KD_INPUT_CHECK(kernels.bn == GpuImpl::Native || cuda::built_with_cudnn(),
                 "--bn cudnn: kdlab was built without cuDNN");
  g_gpu_kernels = kernels;
}

GpuKernels gpu_kernels() { return g_gpu_kernels; }

void set_num_threads(int threads) {
  KD_INPUT_CHECK(threads >= 0, "--threads: expected a count >= 0 (0 = all cores), got " << threads);
  int n = threads > 0 ? threads : omp_get_num_procs();
  g_threads = n;
  omp_set_num_threads(n);
  // The kernels parallelise around their GEMMs with OpenMP and call BLAS single-threaded inside:
  // OpenBLAS's float GEMM is not bitwise reproducible across its own thread counts, and its
  // pthread pool spinning beside OpenMP's on the same cores costs orders of magnitude.
  openblas_set_num_threads(1);
}

int num_threads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

}  // namespace kd
