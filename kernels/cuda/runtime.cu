// CUDA runtime seam (see runtime.h): device discovery, raw and pinned memory, copies ordered on
// the one compute stream, the math mode, the launch counter, NVTX ranges and the profiler window.
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#include <nvtx3/nvToolsExt.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "base/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/runtime.h"

namespace kd {
namespace cuda {

namespace {
std::atomic<uint64_t> g_launches{0};
MathMode g_math_mode;
std::mutex g_math_mutex;
}  // namespace

bool built_with_cudnn() {
#if KDLAB_HAVE_CUDNN
  return true;
#else
  return false;
#endif
}

int device_count() {
  static const int count = [] {
    const char* off = std::getenv("KDLAB_DISABLE_CUDA");
    if (off && *off && std::string(off) != "0") return 0;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no device" error
      return 0;
    }
    return n;
  }();
  return count;
}

std::string device_name(int index) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return prop.name;
}

namespace {
int compute_capability_major() {
  static const int major = [] {
    int device = 0, value = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrComputeCapabilityMajor, device));
    return value;
  }();
  return major;
}
}  // namespace

bool tensor_cores_available() { return compute_capability_major() >= 8; }
bool clusters_available() { return compute_capability_major() >= 9; }

cudaStream_t stream() {
  // Non-blocking so the legacy default stream never serializes against our work; created once
  // and kept for the process lifetime (destroying it at exit races the driver's own teardown).
  static cudaStream_t s = [] {
    cudaStream_t created = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking));
    return created;
  }();
  return s;
}

void* malloc_device(size_t bytes) {
  void* ptr = nullptr;
  cudaError_t err = cudaMalloc(&ptr, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  CUDA_CHECK(err);
  return ptr;
}

void free_device(void* ptr) {
  // Blocks go back to the cache while kernels that use them may still be queued; the cache only
  // hands them to later work on the same stream, and cudaFree itself waits for the device.
  CUDA_CHECK(cudaFree(ptr));
}

void* malloc_pinned(size_t bytes) {
  void* ptr = nullptr;
  CUDA_CHECK(cudaMallocHost(&ptr, bytes));
  return ptr;
}
void free_pinned(void* ptr) { CUDA_CHECK(cudaFreeHost(ptr)); }

void memcpy_host_to_device(void* dst, const void* src, size_t bytes) {
  // Pageable sources are staged by the driver before the call returns, so the caller may reuse
  // `src` at once; the copy is ordered after earlier kernels on the stream.
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  count_launch();
}
void memcpy_device_to_host(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  CUDA_CHECK(cudaStreamSynchronize(stream()));
}
void memcpy_device_to_device(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
  count_launch();
}
void memcpy_host_to_device_async(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  count_launch();
}
void memcpy_device_to_host_async(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  count_launch();
}
void memset_device(void* dst, int value, size_t bytes) {
  CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, stream()));
  count_launch();
}
void synchronize() {
  if (device_count() > 0) CUDA_CHECK(cudaStreamSynchronize(stream()));
}

size_t free_device_bytes() {
  size_t free_bytes = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  return free_bytes;
}

void* workspace(size_t bytes) {
  static void* buffer = nullptr;
  static size_t capacity = 0;
  if (bytes <= capacity) return buffer;
  if (buffer) CUDA_CHECK(cudaFree(buffer));  // waits for queued users of the old buffer
  buffer = nullptr;
  capacity = 0;
  size_t grown = bytes + bytes / 2;
  CUDA_CHECK(cudaMalloc(&buffer, grown));
  capacity = grown;
  return buffer;
}

void set_math_mode(const MathMode& mode) {
  std::lock_guard<std::mutex> lock(g_math_mutex);
  g_math_mode = mode;
}
MathMode math_mode() {
  std::lock_guard<std::mutex> lock(g_math_mutex);
  return g_math_mode;
}

StreamMark mark_stream() {
  cudaEvent_t event = nullptr;
  CUDA_CHECK(cudaEventCreate(&event));
  CUDA_CHECK(cudaEventRecord(event, stream()));
  return event;
}
double elapsed_ms(StreamMark from, StreamMark to) {
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(from), static_cast<cudaEvent_t>(to)));
  return ms;
}
void destroy_mark(StreamMark mark) { CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(mark))); }

uint64_t launch_count() { return g_launches.load(std::memory_order_relaxed); }
void count_launch() { g_launches.fetch_add(1, std::memory_order_relaxed); }

namespace {
struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  size_t nodes = 0;
};
}  // namespace

// Relaxed: the caching allocator may still call cudaMalloc while a step is captured (a block
// it has not cached yet); every stream-ordered call is captured as in the other modes.
void capture_begin() {
  CUDA_CHECK(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeRelaxed));
}
void* capture_end() {
  Graph g;
  CUDA_CHECK(cudaStreamEndCapture(stream(), &g.graph));
  try {
    CUDA_CHECK(cudaGraphGetNodes(g.graph, nullptr, &g.nodes));
    CUDA_CHECK(cudaGraphInstantiate(&g.exec, g.graph, 0));
  } catch (...) {
    cudaGraphDestroy(g.graph);
    throw;
  }
  return new Graph(g);
}
void capture_abandon() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream(), &status) != cudaSuccess) cudaGetLastError();
  if (status == cudaStreamCaptureStatusNone) return;
  cudaGraph_t graph = nullptr;
  if (cudaStreamEndCapture(stream(), &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
  cudaGetLastError();  // an invalidated capture leaves its error behind; the caller rethrows
}
void graph_launch(void* graph) {
  CUDA_CHECK(cudaGraphLaunch(static_cast<Graph*>(graph)->exec, stream()));
  count_launch();
}
void graph_destroy(void* graph) {
  if (!graph) return;
  Graph* g = static_cast<Graph*>(graph);
  // A graph still running on the stream finishes first: the driver defers the release.
  if (g->exec) cudaGraphExecDestroy(g->exec);
  if (g->graph) cudaGraphDestroy(g->graph);
  delete g;
}
int64_t graph_nodes(void* graph) { return int64_t(static_cast<Graph*>(graph)->nodes); }

namespace {
nvtxDomainHandle_t domain() {
  static nvtxDomainHandle_t d = nvtxDomainCreateA("kdlab");
  return d;
}
}  // namespace

void range_push(const char* name) {
  nvtxEventAttributes_t attr{};
  attr.version = NVTX_VERSION;
  attr.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  attr.messageType = NVTX_MESSAGE_TYPE_ASCII;
  attr.message.ascii = name;
  nvtxDomainRangePushEx(domain(), &attr);
}
void range_pop() { nvtxDomainRangePop(domain()); }

// No device (a CPU run of a CUDA build): there is nothing to capture.
void profiler_start() {
  if (device_count() > 0) CUDA_CHECK(cudaProfilerStart());
}
void profiler_stop() {
  if (device_count() > 0) CUDA_CHECK(cudaProfilerStop());
}

}  // namespace cuda
}  // namespace kd
