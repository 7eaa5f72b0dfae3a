// Emulated make_batch_device and mixup_device (data/device_batch.h) for the emulated CUDA backend
// (kernels/cuda_emu/emu.h), where device arrays are host memory. The host-side checks and the
// MixUp staging in cuda::workspace are data/device_batch.cpp's, shared with data/cuda/augment.cu;
// then the very code of make_batch (make_batch_arrays, with the device contract for out-of-range
// indices: NaN pixels, label -1), so a device batch equals make_batch bit for bit, and MixUp
// mixes with mixup_value, as mixup_batch does.
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
  check_make_batch_device(ds, idx_device, count, norm, aug, out_images_device, out_labels_device);
  if (count == 0) return;
  cuda::emu::Launch launch("data::make_batch_device", ds.images, ds.labels, idx_device,
                          out_images_device, out_labels_device);
  make_batch_arrays(ds.images, ds.labels, ds.n, ds.c, ds.h, ds.w, idx_device, count, norm, aug,
                    seed, step, out_images_device, out_labels_device, BadIndex::kNanSample);
}

void mixup_device(float* images_device, int count, int64_t sample_size, const MixupDraw& draw) {
  const MixupStaging staged = stage_mixup_device(images_device, count, sample_size, draw);
  if (staged.total == 0) return;
  cuda::emu::Launch launch("data::mixup_device", images_device, staged.perm);
  const float lambda = draw.lambda, rest = 1.0f - draw.lambda;
  const int64_t* perm = staged.perm;
  const float* original = staged.original;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < staged.total; ++i) {
    const int64_t k = i / sample_size, j = i - k * sample_size;
    images_device[i] = mixup_value(original[i], original[perm[k] * sample_size + j], lambda, rest);
  }
}

}  // namespace data
}  // namespace kd
