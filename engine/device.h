// Devices and the one dispatch question every op asks: CPU or CUDA. Whether CUDA is usable is
// decided once at run time (a device is present and KDLAB_DISABLE_CUDA is unset) and whether
// this build carries CUDA kernels at all (kernels/cuda/runtime.h).
#pragma once
#include <string>

namespace kd {

enum class DeviceType { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

// `auto|cpu|cuda` as given on the command line. auto = cuda when a usable GPU is present and this
// build carries the CUDA kernels, otherwise cpu. Asking for cuda without one is an InputError.
Device parse_device(const std::string& spec);
bool cuda_usable();

// Which implementation the GPU convolution and batchnorm ops call (--conv, --bn): our own kernels
// or cuDNN. Process-wide, set once by the CLI before any model runs.
enum class GpuImpl { Native, Cudnn };
struct GpuKernels {
  GpuImpl conv = GpuImpl::Native;
  GpuImpl bn = GpuImpl::Native;
};
GpuImpl parse_gpu_impl(const std::string& flag, const std::string& value);  // native|cudnn
const char* gpu_impl_name(GpuImpl impl);
void set_gpu_kernels(const GpuKernels& kernels);  // InputError for cudnn in a build without it
GpuKernels gpu_kernels();

// Thread count for the CPU kernels (OpenMP) and OpenBLAS. 0 = all cores.
void set_num_threads(int threads);
int num_threads();

}  // namespace kd
