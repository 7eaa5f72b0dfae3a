// The CPU backend (and the ref:: specification as a backend of its own, for tests): the kernel
// tables come from the registrars at the end of each kernels/cpu/*.cpp file; the runtime entries
// are their host-memory meanings (a copy is memcpy, the stream is always idle).
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/backend.h"

namespace kd {
namespace {

MathMode g_host_math_mode;  // recorded, so a CPU run reports what it was given; no effect

void* host_malloc(size_t bytes) {
  void* p = nullptr;
  return posix_memalign(&p, 64, bytes ? bytes : 1) == 0 ? p : nullptr;
}
void host_copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void* host_workspace(size_t bytes) {
  thread_local std::vector<unsigned char> buffer;
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

void set_host_runtime(Backend& b) {
  b.device_count = [] { return 1; };
  b.device_name = [](int) { return std::string("cpu"); };
  b.malloc_device = host_malloc;
  b.free_device = [](void* p) { std::free(p); };
  b.free_device_bytes = [] { return size_t(0); };
  b.malloc_pinned = host_malloc;
  b.free_pinned = [](void* p) { std::free(p); };
  b.copy_host_to_device = host_copy;
  b.copy_host_to_device_async = host_copy;
  b.copy_device_to_host = host_copy;
  b.copy_device_to_host_async = host_copy;
  b.copy_device_to_device = host_copy;
  b.memset_device = [](void* dst, int value, size_t bytes) {
    if (bytes) std::memset(dst, value, bytes);
  };
  b.synchronize = [] {};
  b.workspace = host_workspace;
  b.counter_add = cpu::counter_add;
  b.set_math_mode = [](const MathMode& m) { g_host_math_mode = m; };
  b.math_mode = [] { return g_host_math_mode; };
  b.launch_count = [] { return uint64_t(0); };
  b.mark_stream = [] { return StreamMark(nullptr); };
  b.elapsed_ms = [](StreamMark, StreamMark) { return 0.0; };
  b.destroy_mark = [](StreamMark) {};
  b.range_push = [](const char*) {};
  b.range_pop = [] {};
  b.profiler_start = [] {};
  b.profiler_stop = [] {};
}

template <class T>
void register_cpu(KernelTable<T>& t) {
#define KD_CALL_(fn) cpu::fn<T>(t);
  KD_HOST_REGISTRARS(KD_CALL_)
#undef KD_CALL_
  cpu::register_optim_multi<T>(t);
}
template <class T>
void register_ref(KernelTable<T>& t) {
#define KD_CALL_(fn) ref::fn<T>(t);
  KD_HOST_REGISTRARS(KD_CALL_)
#undef KD_CALL_
  cpu::register_optim_multi<T>(t);  // the spec has no multi-tensor form: the host loop is one
}

struct RegisterCpu {
  template <class T>
  void operator()(KernelTable<T>& t) const { register_cpu(t); }
};
struct RegisterRef {
  template <class T>
  void operator()(KernelTable<T>& t) const { register_ref(t); }
};

template <class Register>
Backend make_host_backend(const char* name, Register register_kernels) {
  Backend b;
  b.name = name;
  set_host_runtime(b);
  register_kernels(b.f32);
  register_kernels(b.f64);
  return b;
}

}  // namespace

const Backend& cpu_backend() {
  static const Backend b = make_host_backend("cpu", RegisterCpu{});
  return b;
}
const Backend& ref_backend() {
  static const Backend b = make_host_backend("ref", RegisterRef{});
  return b;
}

}  // namespace kd
