// The host side of batch formation on the GPU (data/device_batch.h): argument checks before
// anything is enqueued, MixUp's staging in the backend's workspace, then the launches of the
// GPU backend library's DeviceBatchKernels (data/cuda/augment.cu).
#include "data/device_batch.h"

#include "kernels/backend.h"
#include "base/check.h"

namespace kd {
namespace data {
namespace {

const Backend& gpu() {
  const Backend* b = gpu_backend();
  KD_CHECK(b, "device batches need the GPU backend: " << gpu_backend_error());
  return *b;
}

const DeviceBatchKernels& device_kernels() {
  static const DeviceBatchKernels* kernels = [] {
    gpu();
    auto entry =
        reinterpret_cast<DeviceBatchKernelsEntry>(gpu_backend_symbol(kDeviceBatchKernelsSymbol));
    KD_CHECK(entry, "the GPU backend has no " << kDeviceBatchKernelsSymbol);
    return entry();
  }();
  return *kernels;
}

AugmentPlan check_make_batch_device(const DeviceDatasetView& ds, const int64_t* idx_device,
                                    int count, const Normalization& norm, const AugmentSpec& aug,
                                    const float* out_images_device,
                                    const int32_t* out_labels_device) {
  KD_CHECK(count >= 0 && count < (1 << 28), "make_batch_device: count=" << count);
  KD_CHECK(ds.c >= 1 && ds.c <= kMaxDeviceBatchChannels && ds.h >= 1 && ds.w >= 1 && ds.n >= 0,
           "make_batch_device: dataset shape n=" << ds.n << " c=" << ds.c << " h=" << ds.h
                                                 << " w=" << ds.w << " (c <= "
                                                 << kMaxDeviceBatchChannels << ")");
  KD_CHECK(static_cast<int>(norm.mean.size()) == ds.c && static_cast<int>(norm.std.size()) == ds.c,
           "make_batch_device: normalization has " << norm.mean.size() << " means and "
                                                   << norm.std.size() << " stds for " << ds.c
                                                   << " channels");
  const AugmentPlan plan = make_augment_plan(aug);  // InputError before anything is enqueued
  for (int ch = 0; ch < ds.c; ++ch)
    KD_CHECK(norm.std[ch] != 0.0f, "make_batch_device: std[" << ch << "] is 0");
  if (count > 0) {
    KD_CHECK(ds.images != nullptr && idx_device != nullptr && out_images_device != nullptr,
             "make_batch_device: null device pointer");
    KD_CHECK(out_labels_device == nullptr || ds.labels != nullptr,
             "make_batch_device: labels requested from a view without labels");
  }
  return plan;
}

}  // namespace

void make_batch_device(const DeviceDatasetView& ds, const int64_t* idx_device, int count,
                       const Normalization& norm, const AugmentSpec& aug, uint64_t seed,
                       uint64_t step, float* out_images_device, int32_t* out_labels_device) {
  const AugmentPlan plan = check_make_batch_device(ds, idx_device, count, norm, aug,
                                                   out_images_device, out_labels_device);
  if (count == 0) return;
  ChannelNorm channels{};
  for (int ch = 0; ch < ds.c; ++ch) {
    channels.mean[ch] = norm.mean[ch];
    channels.std[ch] = norm.std[ch];
  }
  device_kernels().make_batch(ds, idx_device, count, channels, plan, seed, step,
                              out_images_device, out_labels_device);
}

void mixup_device(float* images_device, int count, int64_t sample_size, const MixupDraw& draw) {
  check_mixup_draw(count, sample_size, draw);
  const int64_t total = static_cast<int64_t>(count) * sample_size;
  if (total == 0) return;
  KD_CHECK(images_device != nullptr, "mixup_device: null device pointer");
  const Backend& b = gpu();
  // Workspace layout: the permutation, then (256-byte aligned) a copy of the batch.
  const size_t perm_bytes = (static_cast<size_t>(count) * sizeof(int64_t) + 255) / 256 * 256;
  const size_t batch_bytes = static_cast<size_t>(total) * sizeof(float);
  char* ws = static_cast<char*>(b.workspace(perm_bytes + batch_bytes));
  auto* perm = reinterpret_cast<int64_t*>(ws);
  auto* original = reinterpret_cast<float*>(ws + perm_bytes);
  b.copy_host_to_device(perm, draw.perm.data(), static_cast<size_t>(count) * sizeof(int64_t));
  b.copy_device_to_device(original, images_device, batch_bytes);
  device_kernels().mixup(original, perm, images_device, sample_size, total, draw.lambda);
}

}  // namespace data
}  // namespace kd
