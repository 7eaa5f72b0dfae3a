// Devices and the one dispatch question every op asks: which backend (kernels/backend.h) runs a
// tensor's kernels. The GPU backend is a shared library opened at run time, only when a GPU is
// asked for (--device cuda) or detected (--device auto on a machine with an NVIDIA driver), so a
// CPU run never maps the CUDA libraries.
#pragma once
#include <string>

#include "kernels/backend.h"

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

// The backend whose kernels run on `device`: the CPU's, or the GPU backend (an Error saying
// which library could not be opened, and why, when there is none).
const Backend& backend_of(Device device);

// Page-locked host memory for read-backs from a GPU device (its backend's malloc_pinned), plain
// host memory for the CPU.
class PinnedBuffer {
 public:
  PinnedBuffer(Device device, size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  const Backend* backend_;
  void* data_;
  size_t bytes_;
};

std::string device_name(Device device);  // "cpu", or the GPU's name

}  // namespace kd
