// Batch formation on the GPU: the dataset's uint8 images and int32 labels live on the device, the
// batch indices too, and make_batch_device writes the augmented, normalized float batch there
// with the very draws and pixel maths of make_batch (data/augment_math.h), so the two agree bit
// for bit. mixup_device is mixup_batch on a device batch. Host-only header (no CUDA includes);
// make_batch_device and mixup_device check their arguments here on the host (device_batch.cpp),
// then launch the kernels of data/cuda/augment.cu, which the GPU backend library exports as a
// DeviceBatchKernels table. Everything is enqueued on the compute stream; nothing synchronizes.
#pragma once
#include <cstdint>

#include "data/augment.h"
#include "data/augment_math.h"

namespace kd {
namespace data {

// A Dataset's arrays in device memory (the caller owns and uploads them once).
struct DeviceDatasetView {
  const uint8_t* images = nullptr;  // n*c*h*w, NCHW
  const int32_t* labels = nullptr;  // n
  int64_t n = 0;
  int c = 0, h = 0, w = 0;
};

constexpr int kMaxDeviceBatchChannels = 4;  // normalization travels by value in the launch

// Device twin of make_batch: idx_device holds count int64 indices; writes count*c*h*w floats to
// out_images_device and count labels to out_labels_device (may be null). Arguments are checked on
// the host; the indices are not (they are on the device): a sample whose index is outside [0, n)
// comes out as NaN pixels and label -1, so it cannot pass silently. c <= 4.
void make_batch_device(const DeviceDatasetView& ds, const int64_t* idx_device, int count,
                       const Normalization& norm, const AugmentSpec& aug, uint64_t seed,
                       uint64_t step, float* out_images_device, int32_t* out_labels_device);

// Device twin of mixup_batch: mixes count images of sample_size floats in place. The batch and
// the permutation are staged in the GPU backend's workspace.
void mixup_device(float* images_device, int count, int64_t sample_size, const MixupDraw& draw);

// The device side, exported by the GPU backend library as kDeviceBatchKernelsSymbol: launches
// on arguments the functions above have checked. mixup reads the batch from a staged copy
// (x[perm[k]] must be read before it is overwritten).
struct ChannelNorm {
  float mean[kMaxDeviceBatchChannels];
  float std[kMaxDeviceBatchChannels];
};
struct DeviceBatchKernels {
  void (*make_batch)(const DeviceDatasetView& ds, const int64_t* idx_device, int count,
                     const ChannelNorm& norm, const AugmentPlan& plan, uint64_t seed,
                     uint64_t step, float* out_images_device, int32_t* out_labels_device);
  void (*mixup)(const float* original, const int64_t* perm, float* images_device,
                int64_t sample_size, int64_t total, float lambda);
};
using DeviceBatchKernelsEntry = const DeviceBatchKernels* (*)();
constexpr const char* kDeviceBatchKernelsSymbol = "kdlab_device_batch_kernels";

}  // namespace data
}  // namespace kd
