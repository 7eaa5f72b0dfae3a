// The runtime configuration (see runtime_config.h): the one place that owns the thread count,
// the GPU kernel choices, the math mode and the profiler window.
#include "engine/runtime_config.h"

#include <cblas.h>
#include <omp.h>

#include "base/check.h"

namespace kd {

namespace {
RuntimeConfig g_config;

void check_cudnn_available(const GpuKernels& kernels) {
  const bool conv = kernels.conv == GpuImpl::Cudnn, bn = kernels.bn == GpuImpl::Cudnn;
  if (!conv && !bn) return;
  const char* flag = conv ? "--conv" : "--bn";
  const Backend* gpu = gpu_backend();
  KD_INPUT_CHECK(gpu, flag << " cudnn: " << gpu_backend_error());
  KD_INPUT_CHECK(gpu->has_cudnn, flag << " cudnn: kdlab's GPU backend was built without cuDNN");
}
}  // namespace

cpu::ConvAlgorithm parse_cpu_conv(const std::string& flag, const std::string& value) {
  if (value == "auto") return cpu::ConvAlgorithm::Auto;
  if (value == "gemm") return cpu::ConvAlgorithm::Gemm;
  throw InputError(flag + ": expected auto or gemm, got '" + value + "'");
}

const char* cpu_conv_name(cpu::ConvAlgorithm algorithm) {
  return algorithm == cpu::ConvAlgorithm::Gemm ? "gemm" : "auto";
}

GpuImpl parse_gpu_impl(const std::string& flag, const std::string& value) {
  if (value == "native") return GpuImpl::Native;
  if (value == "cudnn") return GpuImpl::Cudnn;
  throw InputError(flag + ": expected native or cudnn, got '" + value + "'");
}

const char* gpu_impl_name(GpuImpl impl) { return impl == GpuImpl::Cudnn ? "cudnn" : "native"; }

Precision parse_precision(const std::string& flag, const std::string& value) {
  if (value == "fp32") return Precision::Fp32;
  if (value == "bf16") return Precision::Bf16;
  throw InputError(flag + ": expected fp32 or bf16, got '" + value + "'");
}

const char* precision_name(Precision precision) {
  return precision == Precision::Bf16 ? "bf16" : "fp32";
}

const RuntimeConfig& runtime_config() { return g_config; }

void set_runtime_config(const RuntimeConfig& config) {
  // Bounded: OpenMP and OpenBLAS cannot start arbitrarily many threads (100000 crashed).
  KD_INPUT_CHECK(config.threads >= 0 && config.threads <= kMaxThreads,
                 "--threads: expected a count in 0.." << kMaxThreads << " (0 = all cores), got "
                                                      << config.threads);
  KD_INPUT_CHECK(!(config.math.deterministic && config.math.tf32),
                 "--tf32 and --deterministic exclude each other (TF32 is off in deterministic "
                 "mode)");
  check_cudnn_available(config.gpu_kernels);
  g_config = config;
  omp_set_num_threads(num_threads());
  // The kernels parallelise around their GEMMs with OpenMP and call BLAS single-threaded inside:
  // OpenBLAS's float GEMM is not bitwise reproducible across its own thread counts, and its
  // pthread pool spinning beside OpenMP's on the same cores costs orders of magnitude.
  openblas_set_num_threads(1);
  cpu::set_conv_algorithm(config.cpu_conv);
  if (const Backend* gpu = gpu_backend_if_loaded()) gpu->set_math_mode(config.math);
}

int num_threads() { return g_config.threads > 0 ? g_config.threads : omp_get_num_procs(); }

ScopedRuntimeConfig::ScopedRuntimeConfig(const RuntimeConfig& config) : saved_(g_config) {
  set_runtime_config(config);
}

ScopedRuntimeConfig::~ScopedRuntimeConfig() {
  // The saved configuration was valid when it was set; applying it cannot fail on input.
  try {
    set_runtime_config(saved_);
  } catch (...) {
    g_config = saved_;
  }
}

}  // namespace kd
