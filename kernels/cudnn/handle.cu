// The process-wide cuDNN handle (see handle.h). Created on first use, bound to the compute stream
// and never destroyed: tearing it down at exit would race the driver's own teardown, as for the
// stream itself.
#include "kernels/cudnn/handle.h"

#include "kernels/cuda/launch.cuh"

namespace kd {
namespace cudnn {

cudnnHandle_t handle() {
  static cudnnHandle_t h = [] {
    cudnnHandle_t created = nullptr;
    CUDNN_CHECK(cudnnCreate(&created));
    // A failed binding must not leak the handle: the static stays unset and the next call
    // tries again from scratch.
    const cudnnStatus_t bound = cudnnSetStream(created, cuda::stream());
    if (bound != CUDNN_STATUS_SUCCESS) cudnnDestroy(created);
    CUDNN_CHECK(bound);
    return created;
  }();
  return h;
}

}  // namespace cudnn
}  // namespace kd
