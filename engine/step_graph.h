// A piece of GPU work (one training step: forward, backward, optimizer) captured once as a CUDA
// graph and replayed: one launch instead of hundreds, with no host work between the kernels.
// The graph replays the kernels with the arguments and pointers they were captured with, so:
//  - inputs that change between replays must be copied into the tensors the capture read
//    (static inputs), and outputs read from the tensors it wrote (kept alive by the caller);
//  - everything the step reads from the host (learning rate, step counters, dropout keys) is
//    frozen at capture: the caller keeps them in device memory (SGD's learning rate) or captures
//    again when one changes;
//  - the blocks the capture allocated or freed stay reserved for the graph (CachingAllocator
//    pools) until reset() or destruction, so no other tensor gets memory a replay writes;
//  - a capture must not synchronize, copy to or from the host, or grow the workspace: run the
//    same work once eagerly first, so every cache (allocator, workspace, cuBLAS and cuDNN
//    handles) is warm. The emulated GPU refuses those calls during a capture, as a GPU does.
#pragma once
#include <cstdint>
#include <functional>

#include "engine/device.h"

namespace kd {

class StepGraph {
 public:
  explicit StepGraph(Device device);  // throws unless the device's backend has CUDA graphs
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  static bool supported(Device device);

  // Records the stream work `work` issues; nothing runs. A failed capture (work threw, or the
  // backend refused a call) leaves no graph and rethrows.
  void capture(const std::function<void()>& work);
  void replay() const;           // runs the captured work once more, on the compute stream
  bool captured() const { return graph_ != nullptr; }
  int64_t nodes() const;         // kernels, copies and memsets in the graph
  void reset();                  // drops the graph and gives its memory back to the cache

 private:
  Device device_;
  int pool_ = 0;
  void* graph_ = nullptr;
};

}  // namespace kd
