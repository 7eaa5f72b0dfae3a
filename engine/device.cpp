// Device parsing, runtime GPU detection and the CPU thread count.
#include "engine/device.h"

#include <cblas.h>
#include <omp.h>

#include "kernels/check.h"

namespace kd {

std::string Device::str() const {
  return is_cuda() ? "cuda:" + std::to_string(index) : std::string("cpu");
}

namespace {
MathMode g_math_mode;
}  // namespace

const Backend& backend_of(Device device) {
  if (device.is_cpu()) return cpu_backend();
  const Backend* gpu = gpu_backend();
  KD_CHECK(gpu, "a CUDA tensor needs the GPU backend: " << gpu_backend_error());
  static const bool math_mode_applied = (gpu->set_math_mode(g_math_mode), true);
  (void)math_mode_applied;
  return *gpu;
}

void set_math_mode(const MathMode& mode) {
  g_math_mode = mode;
  if (const Backend* gpu = gpu_backend_if_loaded()) gpu->set_math_mode(mode);
}
MathMode math_mode() { return g_math_mode; }

std::string device_name(Device device) {
  return device.is_cpu() ? std::string("cpu") : backend_of(device).device_name(device.index);
}

PinnedBuffer::PinnedBuffer(Device device, size_t bytes)
    : backend_(&backend_of(device)), data_(backend_->malloc_pinned(bytes)), bytes_(bytes) {
  KD_CHECK(data_, "PinnedBuffer: could not allocate " << bytes << " bytes");
}
PinnedBuffer::~PinnedBuffer() { backend_->free_pinned(data_); }

bool cuda_usable() {
  if (!gpu_probably_present()) return false;  // never opens the CUDA libraries for nothing
  const Backend* gpu = gpu_backend();
  return gpu && gpu->device_count() > 0;
}

Device parse_device(const std::string& spec) {
  if (spec == "cpu") return Device::cpu();
  if (spec == "auto") return cuda_usable() ? Device::cuda(0) : Device::cpu();
  if (spec == "cuda" || spec == "cuda:0") {
    const Backend* gpu = gpu_backend();
    KD_INPUT_CHECK(gpu, "--device cuda: " << gpu_backend_error());
    KD_INPUT_CHECK(gpu->device_count() > 0,
                   "--device cuda: no usable GPU (none found, or KDLAB_DISABLE_CUDA is set)");
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
  const bool wants_cudnn = kernels.conv == GpuImpl::Cudnn || kernels.bn == GpuImpl::Cudnn;
  if (wants_cudnn) {
    const Backend* gpu = gpu_backend();
    KD_INPUT_CHECK(gpu, (kernels.conv == GpuImpl::Cudnn ? "--conv" : "--bn")
                            << " cudnn: " << gpu_backend_error());
    KD_INPUT_CHECK(kernels.conv == GpuImpl::Native || gpu->has_cudnn,
                   "--conv cudnn: kdlab was built without cuDNN");
    KD_INPUT_CHECK(kernels.bn == GpuImpl::Native || gpu->has_cudnn,
                   "--bn cudnn: kdlab was built without cuDNN");
  }
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
