// Emulated make_batch_device and mixup_device (data/device_batch.h) for the emulated CUDA backend
// (kernels/cuda_emu/emu.h), where device arrays are host memory. Same host-side checks as
// data/cuda/augment.cu, then the very code of make_batch (make_batch_arrays, with the device
// contract for out-of-range indices: NaN pixels, label -1), so a device batch equals make_batch
// bit for bit. mixup_device stages the permutation and a copy of the batch in cuda::workspace,
// as the real one does, and mixes with mixup_value, as mixup_batch does.
#include <cstdint>

#include "data/augment_math.h"
#include "data/device_batch.h"
#include "kernels/check.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda_emu/emu.h"

namespace kd {
namespace data {

void make_batch_device(const DeviceDatasetView& ds, const int64_t* idx_device, int count,
                       const Normalization& norm, const AugmentSpec& aug, uint64_t seed,
                       uint64_t step, float* out_images_device, int32_t* out_labels_device) {
  KD_CHECK(count >= 0 && count < (1 << 28), "make_batch_device: count=" << count);
  KD_CHECK(ds.c >= 1 && ds.c <= kMaxDeviceBatchChannels && ds.h >= 1 && ds.w >= 1 && ds.n >= 0,
           "make_batch_device: dataset shape n=" << ds.n << " c=" << ds.c << " h=" << ds.h
                                                 << " w=" << ds.w << " (c <= "
                                                 << kMaxDeviceBatchChannels << ")");
  KD_CHECK(static_cast<int>(norm.mean.size()) == ds.c && static_cast<int>(norm.std.size()) == ds.c,
           "make_batch_device: normalization has " << norm.mean.size() << " means and "
                                                   << norm.std.size() << " stds for " << ds.c
                                                   << " channels");
  make_augment_plan(aug);  // InputError for bad settings, before anything is enqueued
  for (int ch = 0; ch < ds.c; ++ch)
    KD_CHECK(norm.std[ch] != 0.0f, "make_batch_device: std[" << ch << "] is 0");
  if (count == 0) return;
  KD_CHECK(ds.images != nullptr && idx_device != nullptr && out_images_device != nullptr,
           "make_batch_device: null device pointer");
  KD_CHECK(out_labels_device == nullptr || ds.labels != nullptr,
           "make_batch_device: labels requested from a view without labels");
  cuda::emu::Launch launch("data::make_batch_device", ds.images, ds.labels, idx_device,
                          out_images_device, out_labels_device);
  make_batch_arrays(ds.images, ds.labels, ds.n, ds.c, ds.h, ds.w, idx_device, count, norm, aug,
                    seed, step, out_images_device, out_labels_device, BadIndex::kNanSample);
}

void mixup_device(float* images_device, int count, int64_t sample_size, const MixupDraw& draw) {
  check_mixup_draw(count, sample_size, draw);
  const int64_t total = static_cast<int64_t>(count) * sample_size;
  if (total == 0) return;
  KD_CHECK(images_device != nullptr, "mixup_device: null device pointer");
  const size_t perm_bytes = (static_cast<size_t>(count) * sizeof(int64_t) + 255) / 256 * 256;
  const size_t batch_bytes = static_cast<size_t>(total) * sizeof(float);
  char* ws = static_cast<char*>(cuda::workspace(perm_bytes + batch_bytes));
  int64_t* perm = reinterpret_cast<int64_t*>(ws);
  float* original = reinterpret_cast<float*>(ws + perm_bytes);
  cuda::memcpy_host_to_device(perm, draw.perm.data(), static_cast<size_t>(count) * sizeof(int64_t));
  cuda::memcpy_device_to_device(original, images_device, batch_bytes);
  cuda::emu::Launch launch("data::mixup_device", images_device, ws);
  const float lambda = draw.lambda, rest = 1.0f - draw.lambda;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) {
    const int64_t k = i / sample_size, j = i - k * sample_size;
    images_device[i] = mixup_value(original[i], original[perm[k] * sample_size + j], lambda, rest);
  }
}

}  // namespace data
}  // namespace kd
