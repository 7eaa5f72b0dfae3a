// The cost model of a stretch of work (one training step in `kdlab bench`): every kernel call's
// FLOPs and bytes (kernels/kernel_cost.h), every zeroing and device copy the engine issues, and,
// on a GPU backend (the grid emulator included), the kernel launches its launch counter saw.
// From these, the ideal time on a GPU at its peak compute and bandwidth: each call costs the
// larger of flops / peak and bytes / bandwidth (a per-call roofline, no overlap between calls),
// summed.
//
// A CostRecorder, while it lives, makes backend_of(device) return a copy of the device's backend
// whose kernel tables are wrapped: each entry records its cost, then calls the real kernel. No
// kernel, op or model changes for it, and nothing is recorded (nor slowed) without one.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "engine/device.h"
#include "kernels/kernel_cost.h"

namespace kd {

struct CostTotals {
  double flops = 0, bytes_read = 0, bytes_written = 0;
  double ideal_seconds = 0;  // per-call roofline at the peaks below
  int64_t calls = 0;         // kernel-table calls, zeroings and copies
  int64_t launches = 0;      // GPU launches counted by the backend (0 on the CPU)
  double host_seconds = 0;   // wall time inside the calls (the CPU's kernel time; on a GPU
                             // only the time to enqueue)
  double bytes() const { return bytes_read + bytes_written; }
  void add(const CostTotals& o);
};

// The machine the ideal time is for. Defaults: H200 SXM, FP32 without tensor cores, HBM3e.
// tensor_cores (a GPU step under --tf32): the convolutions and matrix products are costed at the
// dense TF32 tensor-core rate (the datasheet's, half its bf16 rate), everything else as before.
struct PeakRates {
  double flops_per_s = 67e12;
  double bytes_per_s = 4.8e12;
  double tensor_flops_per_s = 495e12;
  bool tensor_cores = false;
  const char* name = "H200";
};

// Kernels that --tf32 moves onto tensor cores: conv2d_* and linear_* (ours, cuBLAS, cuDNN).
bool runs_on_tensor_cores(const std::string& kernel);

class CostRecorder {
 public:
  explicit CostRecorder(Device device, PeakRates peaks = {});
  ~CostRecorder();
  CostRecorder(const CostRecorder&) = delete;
  CostRecorder& operator=(const CostRecorder&) = delete;

  const CostTotals& totals() const { return totals_; }
  // Per kernel name ("conv2d_forward", "memset", "copy", ...), in name order.
  const std::map<std::string, CostTotals>& by_kernel() const { return by_kernel_; }
  const PeakRates& peaks() const { return peaks_; }

  // Called by the wrapped tables and by Tensor's zeroing and copies.
  void record(const char* name, const KernelCost& cost, int64_t launches,
              double host_seconds = 0);

 private:
  Device device_;
  PeakRates peaks_;
  CostTotals totals_;
  std::map<std::string, CostTotals> by_kernel_;
  std::unique_ptr<Backend> counting_;
  friend const Backend* counting_backend(Device device);
};

// The wrapped backend for `device` while a recorder for it lives, else null (engine/device.cpp).
const Backend* counting_backend(Device device);
// Engine-side traffic that goes through no kernel table: zeroing (memset) and copies on `device`.
void record_memset(Device device, double bytes);
void record_copy(Device device, double bytes);

}  // namespace kd
