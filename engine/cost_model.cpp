// The cost recorder (see cost_model.h): a copy of the device's backend whose kernel entries are
// generated wrappers. Each wrapper (one per kernel, dtype and table) keeps the real entry it
// replaces, asks kernels/kernel_cost.h for the call's cost, reads the launch counter around
// the call, and records both.
#include "engine/cost_model.h"

#include <algorithm>
#include <chrono>

namespace kd {

namespace {

CostRecorder* g_recorder[2] = {nullptr, nullptr};  // [0] CPU, [1] GPU
int slot(Device d) { return d.is_cuda() ? 1 : 0; }

// Which table a wrapper replaces an entry of: the plain kernels or cuDNN's.
enum Table { kPlain = 0, kCudnn = 1 };

// One instance per (dtype, device slot, table, kernel): a CPU and a GPU recorder may live at
// once, each with its own real entries.
template <class T, int Slot, int Which, class Tag, class Fn>
struct Counted;
template <class T, int Slot, int Which, class Tag, class... A>
struct Counted<T, Slot, Which, Tag, void (*)(A...)> {
  static inline void (*real)(A...) = nullptr;
  static inline CostRecorder* recorder = nullptr;
  static inline const Backend* backend = nullptr;
  static void call(A... a) {
    const uint64_t before = backend->launch_count ? backend->launch_count() : 0;
    const auto t0 = std::chrono::steady_clock::now();
    real(a...);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t launches =
        backend->launch_count ? int64_t(backend->launch_count() - before) : 0;
    recorder->record(Tag::name, kernel_cost(Tag{}, a...), launches, seconds);
  }
};

template <class T, int Slot, int Which>
void wrap_table(KernelTable<T>& table, CostRecorder* recorder, const Backend* real_backend) {
#define KD_WRAP_ENTRY_(kernel, params)                                                  \
  if (table.kernel) {                                                                   \
    using C = Counted<T, Slot, Which, kernel_tag::kernel, decltype(table.kernel)>;      \
    C::real = table.kernel, C::recorder = recorder, C::backend = real_backend;          \
    table.kernel = &C::call;                                                            \
  }
  KD_ELEMENTWISE_KERNELS(KD_WRAP_ENTRY_)
  KD_CAST_KERNELS(KD_WRAP_ENTRY_)
  KD_CONV2D_ALL_KERNELS(KD_WRAP_ENTRY_)
  KD_LINEAR_KERNELS(KD_WRAP_ENTRY_)
  KD_POOL_KERNELS(KD_WRAP_ENTRY_)
  KD_NORM_KERNELS(KD_WRAP_ENTRY_)
  KD_LOSS_KERNELS(KD_WRAP_ENTRY_)
  KD_METRICS_KERNELS(KD_WRAP_ENTRY_)
  KD_OPTIM_KERNELS(KD_WRAP_ENTRY_)
  KD_OPTIM_MULTI_KERNELS(KD_WRAP_ENTRY_)
#undef KD_WRAP_ENTRY_
}

// The GPU runtime's memset and device-to-device copy, counted like kernels.
const Backend* g_real_gpu = nullptr;
void counted_memset(void* dst, int value, size_t bytes) {
  const uint64_t before = g_real_gpu->launch_count ? g_real_gpu->launch_count() : 0;
  g_real_gpu->memset_device(dst, value, bytes);
  if (CostRecorder* r = g_recorder[1]) {
    KernelCost c;
    c.bytes_written = double(bytes);
    r->record("memset", c,
              g_real_gpu->launch_count ? int64_t(g_real_gpu->launch_count() - before) : 0);
  }
}
void counted_copy(void* dst, const void* src, size_t bytes) {
  const uint64_t before = g_real_gpu->launch_count ? g_real_gpu->launch_count() : 0;
  g_real_gpu->copy_device_to_device(dst, src, bytes);
  if (CostRecorder* r = g_recorder[1]) {
    KernelCost c;
    c.bytes_read = c.bytes_written = double(bytes);
    r->record("copy", c,
              g_real_gpu->launch_count ? int64_t(g_real_gpu->launch_count() - before) : 0);
  }
}

}  // namespace

void CostTotals::add(const CostTotals& o) {
  flops += o.flops, bytes_read += o.bytes_read, bytes_written += o.bytes_written;
  host_seconds += o.host_seconds;
  ideal_seconds += o.ideal_seconds, calls += o.calls, launches += o.launches;
}

CostRecorder::CostRecorder(Device device, PeakRates peaks) : device_(device), peaks_(peaks) {
  KD_CHECK(!g_recorder[slot(device)], "CostRecorder: one is already recording " << device.str());
  const Backend& real = backend_of(device);
  counting_ = std::make_unique<Backend>(real);
  if (device.is_cuda()) {
    wrap_table<float, 1, kPlain>(counting_->f32, this, &real);
    wrap_table<double, 1, kPlain>(counting_->f64, this, &real);
    wrap_table<float, 1, kCudnn>(counting_->cudnn_f32, this, &real);
    wrap_table<double, 1, kCudnn>(counting_->cudnn_f64, this, &real);
  } else {
    wrap_table<float, 0, kPlain>(counting_->f32, this, &real);
    wrap_table<double, 0, kPlain>(counting_->f64, this, &real);
  }
  if (device.is_cuda()) {
    g_real_gpu = &real;
    counting_->memset_device = counted_memset;
    counting_->copy_device_to_device = counted_copy;
  }
  g_recorder[slot(device)] = this;
}

CostRecorder::~CostRecorder() { g_recorder[slot(device_)] = nullptr; }

void CostRecorder::record(const char* name, const KernelCost& cost, int64_t launches,
                          double host_seconds) {
  CostTotals one;
  one.flops = cost.flops, one.bytes_read = cost.bytes_read, one.bytes_written = cost.bytes_written;
  const double flops_per_s = peaks_.tensor_cores && runs_on_tensor_cores(name)
                                 ? peaks_.tensor_flops_per_s
                                 : peaks_.flops_per_s;
  one.ideal_seconds = std::max(cost.flops / flops_per_s,
                               (cost.bytes_read + cost.bytes_written) / peaks_.bytes_per_s);
  one.calls = 1, one.launches = launches, one.host_seconds = host_seconds;
  totals_.add(one);
  by_kernel_[name].add(one);
}

bool runs_on_tensor_cores(const std::string& kernel) {
  return kernel.rfind("conv2d_", 0) == 0 || kernel.rfind("linear_", 0) == 0;
}

const Backend* counting_backend(Device device) {
  CostRecorder* r = g_recorder[slot(device)];
  return r ? r->counting_.get() : nullptr;
}

// The CPU's zeroing and copies are plain memset/memcpy in engine/tensor.cpp; the GPU's go through
// the wrapped runtime entries above, so only the CPU is recorded here.
void record_memset(Device device, double bytes) {
  if (CostRecorder* r = g_recorder[slot(device)]; r && device.is_cpu()) {
    KernelCost c;
    c.bytes_written = bytes;
    r->record("memset", c, 0);
  }
}
void record_copy(Device device, double bytes) {
  if (CostRecorder* r = g_recorder[slot(device)]; r && device.is_cpu()) {
    KernelCost c;
    c.bytes_read = c.bytes_written = bytes;
    r->record("copy", c, 0);
  }
}

}  // namespace kd
