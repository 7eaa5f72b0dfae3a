// GPU batch formation and MixUp (data/device_batch.h). make_batch_kernel runs one block per
// sample: every thread redraws the sample's choices (a few Philox blocks, cheaper than sharing
// them), the contrast mean is an exact integer tree reduction in shared memory, then one thread
// per output pixel runs augment_pixel and normalize_pixel for all channels (coalesced writes
// along the pixel index of each plane). Same functions as make_batch, so the batch is equal bit
// for bit. mixup_kernel: one thread per float, reading from a staged copy of the batch.
#include <cuda_runtime.h>

#include <cstdint>

#include "data/augment_math.h"
#include "data/device_batch.h"
#include "base/check.h"
#include "kernels/cuda/launch.cuh"

namespace kd {
namespace data {
namespace {

constexpr int kBatchThreads = 256;  // a power of two: the contrast sum halves it per round
constexpr int kMixupThreads = 256;


__global__ void make_batch_kernel(const uint8_t* images, const int32_t* labels, int64_t n, int c,
                                  int h, int w, const int64_t* idx, ChannelNorm norm,
                                  AugmentPlan plan, uint64_t seed, uint64_t step, float* out,
                                  int32_t* out_labels) {
  __shared__ long long partial[kBatchThreads];
  const int k = blockIdx.x;
  const int tid = threadIdx.x;
  const int64_t plane = static_cast<int64_t>(h) * w, image_size = c * plane;
  float* dst = out + k * image_size;
  const int64_t source = idx[k];
  // Every branch below depends only on the sample (k), never on the thread, so each is uniform
  // across the block and the __syncthreads in the contrast branch is reached by all or none.
  if (source < 0 || source >= n) {
    for (int64_t i = tid; i < image_size; i += blockDim.x) dst[i] = __int_as_float(0x7fc00000);
    if (tid == 0 && out_labels != nullptr) out_labels[k] = -1;
    return;
  }
  const uint8_t* image = images + source * image_size;
  const SampleAugment a = draw_sample_augment(plan, seed, step, static_cast<uint64_t>(k));
  if (a.noise) {
    for (int64_t i = tid; i < image_size; i += blockDim.x) {
      const int ch = static_cast<int>(i / plane);
      dst[i] = normalize_pixel(noise_pixel(seed, step, static_cast<uint64_t>(k), i),
                               norm.mean[ch], norm.std[ch]);
    }
  } else {
    int mean = 0;  // unused when the contrast factor is 1, as in augment_image
    if (a.contrast != kQ16One) {
      long long sum = 0;
      for (int64_t p = tid; p < plane; p += blockDim.x)
        sum += contrast_term(image, c, h, w, static_cast<int>(p / w), static_cast<int>(p % w), a);
      partial[tid] = sum;
      __syncthreads();
      for (int half = kBatchThreads / 2; half > 0; half >>= 1) {
        if (tid < half) partial[tid] += partial[tid + half];  // integers: any order is exact
        __syncthreads();
      }
      mean = contrast_mean(partial[0], contrast_count(c, h, w));
    }
    for (int64_t p = tid; p < plane; p += blockDim.x) {
      uint8_t values[kMaxDeviceBatchChannels];
      augment_pixel(image, c, h, w, static_cast<int>(p / w), static_cast<int>(p % w), a, mean,
                    values, 1);
      for (int ch = 0; ch < c; ++ch)
        dst[ch * plane + p] = normalize_pixel(values[ch], norm.mean[ch], norm.std[ch]);
    }
  }
  if (tid == 0 && out_labels != nullptr) out_labels[k] = labels[source];
}

__global__ void mixup_kernel(const float* original, const int64_t* perm, float* images,
                             int64_t sample_size, int64_t total, float lambda, float rest) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t k = i / sample_size, j = i - k * sample_size;
    images[i] = mixup_value(original[i], original[perm[k] * sample_size + j], lambda, rest);
  }
}


// The launches, on arguments data/device_batch.cpp has checked (and staged) on the host.
void launch_make_batch(const DeviceDatasetView& ds, const int64_t* idx_device, int count,
                       const ChannelNorm& norm, const AugmentPlan& plan, uint64_t seed,
                       uint64_t step, float* out_images_device, int32_t* out_labels_device) {
  if (count == 0) return;
  KD_LAUNCH(make_batch_kernel, static_cast<unsigned>(count), kBatchThreads, 0, ds.images,
            ds.labels, ds.n, ds.c, ds.h, ds.w, idx_device, norm, plan, seed, step,
            out_images_device, out_labels_device);
}

void launch_mixup(const float* original, const int64_t* perm, float* images_device,
                  int64_t sample_size, int64_t total, float lambda) {
  if (total == 0) return;
  KD_LAUNCH(mixup_kernel, cuda::grid_for(total, kMixupThreads), kMixupThreads, 0, original, perm,
            images_device, sample_size, total, lambda, 1.0f - lambda);
}

const DeviceBatchKernels kDeviceBatchKernels = {launch_make_batch, launch_mixup};

}  // namespace
}  // namespace data
}  // namespace kd

// Found by data/device_batch.cpp in the opened GPU backend library (kernels/backend_loader.cpp).
extern "C" __attribute__((visibility("default"))) const kd::data::DeviceBatchKernels*
kdlab_device_batch_kernels() {
  return &kd::data::kDeviceBatchKernels;
}
