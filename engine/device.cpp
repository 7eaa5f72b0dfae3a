// Device parsing, runtime GPU detection, and the backend behind each device.
#include "engine/device.h"

#include "engine/cost_model.h"
#include "engine/runtime_config.h"
#include "base/check.h"

namespace kd {

std::string Device::str() const {
  return is_cuda() ? "cuda:" + std::to_string(index) : std::string("cpu");
}

const Backend& backend_of(Device device) {
  if (const Backend* counting = counting_backend(device)) return *counting;  // kdlab bench
  if (device.is_cpu()) return cpu_backend();
  const Backend* gpu = gpu_backend();
  KD_CHECK(gpu, "a CUDA tensor needs the GPU backend: " << gpu_backend_error());
  // The math mode may have been set before the backend was opened.
  static const bool math_mode_applied = (gpu->set_math_mode(runtime_config().math), true);
  (void)math_mode_applied;
  return *gpu;
}

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

}  // namespace kd
