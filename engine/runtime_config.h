// One runtime configuration: the settings that choose how kernels run, as opposed to what a run
// computes. The CLI sets it once (set_runtime_config); code that needs other settings for a while
// (the benchmark's cuDNN pass, a test) overrides it in a scope (ScopedRuntimeConfig), so every
// command and `bench` go through the same path. Ops read it on every call (runtime_config()).
#pragma once
#include "engine/device.h"
#include "engine/profile.h"
#include "kernels/conv2d.h"

namespace kd {

// Which implementation the GPU convolution and batchnorm ops call (--conv, --bn): our own kernels
// or cuDNN. The CPU has one implementation and ignores these.
enum class GpuImpl { Native, Cudnn };
struct GpuKernels {
  GpuImpl conv = GpuImpl::Native;
  GpuImpl bn = GpuImpl::Native;
};
GpuImpl parse_gpu_impl(const std::string& flag, const std::string& value);  // native|cudnn
const char* gpu_impl_name(GpuImpl impl);

// --cpu-conv: the CPU's float 3x3 convolutions by Winograd where it applies (auto) or always by
// im2col + GEMM (gemm); see kernels/conv2d.h.
cpu::ConvAlgorithm parse_cpu_conv(const std::string& flag, const std::string& value);  // auto|gemm
const char* cpu_conv_name(cpu::ConvAlgorithm algorithm);

// --precision: the dtype of a model's activations, their gradients and its weights' copies in
// the step. fp32: everything f32. bf16: bf16 storage, fp32 maths inside every op (ops.h), fp32
// master weights, optimizer, losses and metrics (models/classifier.h casts at the model's ends).
enum class Precision { Fp32, Bf16 };
Precision parse_precision(const std::string& flag, const std::string& value);  // fp32|bf16
const char* precision_name(Precision precision);

struct RuntimeConfig {
  int threads = 0;                     // --threads: CPU threads for kernels (0 = all cores)
  cpu::ConvAlgorithm cpu_conv = cpu::ConvAlgorithm::Auto;  // --cpu-conv
  GpuKernels gpu_kernels;              // --conv, --bn
  MathMode math;                       // --deterministic, --tf32 (MathMode: kernels/backend.h)
  Precision precision = Precision::Fp32;  // --precision
  profile::StepWindow profile_window;  // --profile-steps A:B
};

const RuntimeConfig& runtime_config();
constexpr int kMaxThreads = 1024;  // the most --threads accepts

// Validates (an InputError naming the flag: negative threads, --tf32 with --deterministic, cuDNN
// asked for where the GPU backend has none) and applies: OpenMP/OpenBLAS threads, the loaded GPU
// backend's math mode (a backend opened later gets it when first used), the profiler window.
void set_runtime_config(const RuntimeConfig& config);
// The thread count in effect (threads, or all cores when 0).
int num_threads();

// Sets `config` for its scope and restores the previous configuration on exit.
class ScopedRuntimeConfig {
 public:
  explicit ScopedRuntimeConfig(const RuntimeConfig& config);
  ~ScopedRuntimeConfig();
  ScopedRuntimeConfig(const ScopedRuntimeConfig&) = delete;
  ScopedRuntimeConfig& operator=(const ScopedRuntimeConfig&) = delete;

 private:
  RuntimeConfig saved_;
};

}  // namespace kd
