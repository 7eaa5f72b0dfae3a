// Opens the GPU backend on first use. The CUDA backend is a shared library (libkdlab_cuda.so)
// so that a CPU run never maps cudart, cuBLAS or cuDNN (about 220 MB of resident memory); the
// emulated GPU (libkdlab_grid.so) is the same interface over the CPU grid emulator. RTLD_LOCAL
// keeps each library's cuda:: symbols to itself. A program that links a backend statically (the
// ThreadSanitizer tests) exports its entry point and is used as is.
#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "kernels/backend.h"

namespace kd {
namespace {

struct GpuLoad {
  void* handle = nullptr;
  const Backend* backend = nullptr;
  std::string error;
};

std::string executable_dir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string path(buf, size_t(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

bool is_plain_name(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

GpuLoad load_gpu_backend() {
  GpuLoad load;
  if (void* linked = dlsym(RTLD_DEFAULT, kGpuBackendEntry)) {
    load.backend = reinterpret_cast<GpuBackendEntry>(linked)(&cpu_backend());
    return load;
  }
  const char* env_name = std::getenv("KDLAB_GPU_BACKEND");
  const std::string name = env_name && *env_name ? env_name : "cuda";
  if (!is_plain_name(name)) {
    load.error = "KDLAB_GPU_BACKEND: expected a backend name such as cuda or grid, got '" +
                 name + "'";
    return load;
  }
  const char* env_dir = std::getenv("KDLAB_BACKEND_DIR");
  const std::string dir = env_dir && *env_dir ? env_dir : executable_dir();
  const std::string path = dir + "/libkdlab_" + name + ".so";
  load.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!load.handle) {
    const char* why = dlerror();
    load.error = "cannot open the " + name + " backend " + path + ": " + (why ? why : "unknown");
    return load;
  }
  auto entry = reinterpret_cast<GpuBackendEntry>(dlsym(load.handle, kGpuBackendEntry));
  if (!entry) {
    load.error = path + " has no entry point " + kGpuBackendEntry;
    return load;
  }
  load.backend = entry(&cpu_backend());
  if (!load.backend) load.error = path + ": the backend did not initialise";
  return load;
}

std::atomic<const Backend*> g_loaded{nullptr};

GpuLoad& gpu_load() {
  static GpuLoad load = [] {
    GpuLoad l = load_gpu_backend();
    g_loaded.store(l.backend, std::memory_order_release);
    return l;
  }();
  return load;
}

}  // namespace

bool gpu_probably_present() {
  const char* name = std::getenv("KDLAB_GPU_BACKEND");
  if (name && *name && std::string(name) != "cuda") return true;  // an emulator was asked for
  const char* off = std::getenv("KDLAB_DISABLE_CUDA");
  if (off && *off && std::string(off) != "0") return false;
  return access("/dev/nvidiactl", F_OK) == 0 || access("/proc/driver/nvidia/version", F_OK) == 0;
}

const Backend* gpu_backend() { return gpu_load().backend; }
const Backend* gpu_backend_if_loaded() { return g_loaded.load(std::memory_order_acquire); }
std::string gpu_backend_error() { return gpu_load().error; }

void* gpu_backend_symbol(const char* name) {
  GpuLoad& load = gpu_load();
  if (!load.backend) return nullptr;
  return dlsym(load.handle ? load.handle : RTLD_DEFAULT, name);
}

}  // namespace kd
