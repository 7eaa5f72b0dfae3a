// CUDA graph capture and replay of a step (see step_graph.h).
#include "engine/step_graph.h"

#include "engine/allocator.h"
#include "kernels/backend.h"

namespace kd {

bool StepGraph::supported(Device device) {
  return device.is_cuda() && backend_of(device).capture_begin != nullptr;
}

StepGraph::StepGraph(Device device) : device_(device) {
  KD_CHECK(supported(device), "CUDA graphs need a GPU backend; device " << device.str()
                                                                        << " has none");
  pool_ = CachingAllocator::for_device(device).new_pool();
}

StepGraph::~StepGraph() { reset(); }

void StepGraph::reset() {
  if (graph_) backend_of(device_).graph_destroy(graph_);
  graph_ = nullptr;
  CachingAllocator::for_device(device_).release_pool(pool_);
}

void StepGraph::capture(const std::function<void()>& work) {
  reset();
  const Backend& backend = backend_of(device_);
  CachingAllocator& allocator = CachingAllocator::for_device(device_);
  allocator.begin_capture(pool_);
  backend.capture_begin();
  try {
    work();
    graph_ = backend.capture_end();
  } catch (...) {
    backend.capture_abandon();
    allocator.end_capture();
    throw;
  }
  allocator.end_capture();
}

void StepGraph::replay() const {
  KD_CHECK(graph_, "StepGraph::replay: nothing was captured");
  backend_of(device_).graph_launch(graph_);
}

int64_t StepGraph::nodes() const { return graph_ ? backend_of(device_).graph_nodes(graph_) : 0; }

}  // namespace kd
