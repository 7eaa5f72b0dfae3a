// The host side shared by every make_batch_device / mixup_device implementation (the CUDA kernels
// in data/cuda/augment.cu and the emulated device in data/cuda_emu/): argument checks before
// anything is enqueued, and the workspace staging MixUp needs.
#include "data/device_batch.h"

#include "kernels/check.h"
#include "kernels/cuda/runtime.h"

namespace kd {
namespace data {

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

MixupStaging stage_mixup_device(float* images_device, int count, int64_t sample_size,
                                const MixupDraw& draw) {
  check_mixup_draw(count, sample_size, draw);
  MixupStaging staged;
  staged.total = static_cast<int64_t>(count) * sample_size;
  if (staged.total == 0) return staged;
  KD_CHECK(images_device != nullptr, "mixup_device: null device pointer");
  // Workspace layout: the permutation, then (256-byte aligned) a copy of the batch, since
  // x[perm[k]] must be read before it is overwritten.
  const size_t perm_bytes = (static_cast<size_t>(count) * sizeof(int64_t) + 255) / 256 * 256;
  const size_t batch_bytes = static_cast<size_t>(staged.total) * sizeof(float);
  char* ws = static_cast<char*>(cuda::workspace(perm_bytes + batch_bytes));
  staged.perm = reinterpret_cast<int64_t*>(ws);
  staged.original = reinterpret_cast<float*>(ws + perm_bytes);
  cuda::memcpy_host_to_device(staged.perm, draw.perm.data(),
                              static_cast<size_t>(count) * sizeof(int64_t));
  cuda::memcpy_device_to_device(staged.original, images_device, batch_bytes);
  return staged;
}

}  // namespace data
}  // namespace kd
