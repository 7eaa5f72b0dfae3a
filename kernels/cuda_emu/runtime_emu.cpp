// The runtime seam (kernels/cuda/runtime.h) of the emulated CUDA backend (see emu.h): one
// "device" whose memory is host memory, copies that are memcpy, pinned memory that is malloc, the
// grow-only workspace, the math mode and the launch counter as the real runtime keeps them, NVTX
// and the profiler as no-ops. Device blocks are 256-byte aligned like cudaMalloc's and tracked
// in a map (base -> size), which validates kernel pointers and bounds-checks copies. In guard
// mode blocks are whole pages carved from one reserved PROT_NONE arena (bump allocation,
// addresses never reused, freed pages returned with MADV_DONTNEED); DeviceAccess opens a block
// (mprotect) while a kernel or copy handed a pointer into it runs, and a SIGSEGV inside the
// arena is reported with a backtrace.
#include <chrono>
#include <execinfo.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

#include "base/check.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda_emu/emu.h"

namespace kd {
namespace cuda {

namespace {

constexpr size_t kAlign = 256;                    // cudaMalloc's guarantee
// Every block ends in at least this many 0x7F bytes past what was asked for: a kernel that reads
// past the end reads a huge finite value (3.4e38 as a float), and one that writes there is caught
// by check_redzones. Not NaN: `x += y` on a NaN keeps its bits, so such a write would go unseen.
constexpr size_t kRedzone = 64;
constexpr unsigned char kRedzoneByte = 0x7F;
constexpr size_t kArenaBytes = size_t(64) << 30;  // reserved address space, not memory

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

struct Block {
  size_t size = 0;       // bytes reserved, redzone included
  size_t requested = 0;  // bytes asked for
  bool guarded = false;
  int open = 0;  // DeviceAccess scopes holding it open (guarded blocks only)
};

struct Arena {
  std::mutex mutex;
  bool guard = env_on("KDLAB_EMU_GUARD");
  char* base = nullptr;  // reserved lazily by the first guarded allocation
  size_t reserved = 0;   // its size
  size_t top = 0;        // bytes handed out so far (page-aligned)
  size_t page = size_t(sysconf(_SC_PAGESIZE));
  std::map<const char*, Block> blocks;  // every live device block, by base address
  int all_open = 0;  // AllDeviceMemory scopes alive: every guarded page is open
  std::atomic<const char*> running{nullptr};  // the innermost open scope, for the fault report
  struct sigaction previous_segv {};
};

// Leaked on purpose, as the allocators: tensors held by statics are freed after main returns.
Arena& arena() {
  static Arena* a = new Arena;
  return *a;
}

bool in_arena(const Arena& a, const void* p) {
  const char* c = static_cast<const char*>(p);
  return a.base != nullptr && c >= a.base && c < a.base + a.reserved;
}

// The live block holding [p, p + bytes), or blocks.end(). Caller holds the mutex. `strict`
// bounds the range by the bytes asked for; otherwise by the reserved size (a pointer argument
// may point anywhere inside, even at the end of an empty array).
std::map<const char*, Block>::iterator find_block(Arena& a, const void* p, size_t bytes,
                                                  bool strict = false) {
  const char* c = static_cast<const char*>(p);
  auto it = a.blocks.upper_bound(c);
  if (it == a.blocks.begin()) return a.blocks.end();
  --it;
  const size_t offset = size_t(c - it->first);
  const size_t limit = strict ? it->second.requested : it->second.size;
  if (offset >= it->second.size || offset > limit || bytes > limit - offset)
    return a.blocks.end();
  return it;
}

// Async-signal-safe output.
void write_str(const char* s) {
  const ssize_t ignored = write(2, s, strlen(s));
  (void)ignored;
}
void write_hex(uintptr_t v) {
  char buf[19] = "0x";
  for (int i = 0; i < 16; ++i) buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xF];
  buf[18] = '\0';
  write_str(buf);
}

void on_segv(int, siginfo_t* info, void*) {
  Arena& a = arena();
  if (in_arena(a, info->si_addr)) {
    write_str("\nkdlab emulated CUDA: host code touched device memory at ");
    write_hex(reinterpret_cast<uintptr_t>(info->si_addr));
    const char* running = a.running.load();
    if (running) {
      write_str(" while '");
      write_str(running);
      write_str("' ran, in a block it was not given");
    } else {
      write_str(" outside any emulated kernel or copy");
    }
    write_str(" (this would crash or corrupt memory on a real GPU). Backtrace:\n");
    void* frames[64];
    const int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, 2);
    signal(SIGSEGV, SIG_DFL);  // returning re-runs the access, which now kills the process
    return;
  }
  sigaction(SIGSEGV, &a.previous_segv, nullptr);  // not ours: the previous handler (or death)
}

// False when no address space can be reserved (a tight ulimit -v): guard mode then falls back to
// plain blocks, with a warning.
bool reserve_arena(Arena& a) {
  for (size_t bytes = kArenaBytes; bytes >= (size_t(1) << 30); bytes /= 4) {
    void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) continue;
    a.base = static_cast<char*>(p);
    a.reserved = bytes;
    void* warm[1];
    backtrace(warm, 1);  // loads the unwinder now, not first inside the signal handler
    struct sigaction sa {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &a.previous_segv);
    return true;
  }
  write_str("kdlab emulated CUDA: cannot reserve the guard arena; guard mode is off\n");
  return false;
}

void protect(const char* base, const Block& b, bool open) {
  if (mprotect(const_cast<char*>(base), b.size, open ? PROT_READ | PROT_WRITE : PROT_NONE) != 0)
    std::abort();  // only fails on a bad range, which the map rules out
}

void* allocate(size_t bytes) {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  Block b;
  char* p = nullptr;
  if (a.guard && !a.base && !reserve_arena(a)) a.guard = false;
  b.requested = bytes;
  if (a.guard) {
    b.size = round_up(bytes + kRedzone, a.page);
    b.guarded = true;
    if (b.size > a.reserved - a.top) return nullptr;  // "out of memory"
    p = a.base + a.top;
    a.top += b.size;
    protect(p, b, true);
    std::memset(p + bytes, kRedzoneByte, b.size - bytes);
    protect(p, b, false);
  } else {
    b.size = round_up(bytes + kRedzone, kAlign);
    p = static_cast<char*>(std::aligned_alloc(kAlign, b.size));
    if (!p) return nullptr;
    std::memset(p + bytes, kRedzoneByte, b.size - bytes);
  }
  a.blocks[p] = b;
  return p;
}

std::atomic<uint64_t> g_launches{0};
MathMode g_math_mode;
std::mutex g_math_mutex;

}  // namespace

namespace emu {

void set_guard(bool on) {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  a.guard = on;
}
bool guard() {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  return a.guard;
}

DeviceAccess::DeviceAccess(const char* what, const std::vector<const void*>& pointers) {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  std::vector<std::map<const char*, Block>::iterator> found;
  for (const void* p : pointers) {
    if (!p) continue;
    auto it = find_block(a, p, 0);
    if (it == a.blocks.end()) {
      std::ostringstream os;
      os << what << ": pointer " << p
         << " is not in a live emulated device block (a host pointer or freed memory reached a "
            "device kernel or copy)";
      throw CudaError(os.str());
    }
    found.push_back(it);
  }
  for (auto it : found) {
    opened_.push_back(it->first);
    if (it->second.guarded && it->second.open++ == 0) protect(it->first, it->second, true);
  }
  previous_ = a.running.exchange(what);
}

DeviceAccess::~DeviceAccess() {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  for (const void* base : opened_) {
    auto it = a.blocks.find(static_cast<const char*>(base));
    if (it == a.blocks.end()) continue;  // freed meanwhile
    if (it->second.guarded && --it->second.open == 0 && a.all_open == 0)
      protect(it->first, it->second, false);
  }
  a.running.store(previous_);
}

AllDeviceMemory::AllDeviceMemory(const char* what) {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  if (a.all_open++ == 0 && a.base && a.top > 0 &&
      mprotect(a.base, a.top, PROT_READ | PROT_WRITE) != 0)
    std::abort();
  previous_ = a.running.exchange(what);
}

AllDeviceMemory::~AllDeviceMemory() {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  if (--a.all_open == 0 && a.base && a.top > 0) {
    if (mprotect(a.base, a.top, PROT_NONE) != 0) std::abort();
    for (const auto& [base, b] : a.blocks)  // blocks an enclosing scope holds open
      if (b.guarded && b.open > 0) protect(base, b, true);
  }
  a.running.store(previous_);
}

std::vector<DeviceSpan> device_blocks() {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  std::vector<DeviceSpan> out;
  out.reserve(a.blocks.size());
  for (const auto& [base, b] : a.blocks) out.push_back({const_cast<char*>(base), b.size});
  return out;
}

void check_redzones(const char* what) {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  for (const auto& [base, b] : a.blocks) {
    const bool closed = b.guarded && b.open == 0 && a.all_open == 0;
    if (closed) protect(base, b, true);
    size_t bad = b.size;
    for (size_t i = b.requested; i < b.size; ++i)
      if (static_cast<unsigned char>(base[i]) != kRedzoneByte) {
        bad = i;
        break;
      }
    if (closed) protect(base, b, false);
    if (bad == b.size) continue;
    std::ostringstream os;
    os << what << " wrote past the end of a device block of " << b.requested << " bytes at "
       << static_cast<const void*>(base) << " (byte " << bad << ", " << bad - b.requested
       << " past the end)";
    throw CudaError(os.str());
  }
}

bool is_guarded_device_pointer(const void* ptr) {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  auto it = find_block(a, ptr, 0);
  return it != a.blocks.end() && it->second.guarded;
}

}  // namespace emu

namespace {

// Copies check that the whole device range lies in one live block.
void check_range(const char* what, const void* p, size_t bytes) {
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  if (find_block(a, p, bytes, /*strict=*/true) != a.blocks.end()) return;
  std::ostringstream os;
  os << what << ": device range [" << p << ", +" << bytes
     << ") is not inside one live emulated device block";
  throw CudaError(os.str());
}

}  // namespace

bool built_with_cudnn() { return true; }

int device_count() {
  static const int count = env_on("KDLAB_DISABLE_CUDA") ? 0 : 1;
  return count;
}

std::string device_name(int index) {
  if (index != 0)
    throw CudaError("device_name: no emulated CUDA device " + std::to_string(index));
  return "emulated";
}

bool tensor_cores_available() { return true; }  // kernels/cuda_grid/tensor_core.h
bool clusters_available() { return true; }        // kernels/cuda_grid/cluster.h

void* malloc_device(size_t bytes) { return allocate(bytes == 0 ? 1 : bytes); }

void free_device(void* ptr) {
  if (!ptr) return;
  emu::forbid_in_capture("free_device (cudaFree)");
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  auto it = a.blocks.find(static_cast<const char*>(ptr));
  if (it == a.blocks.end()) throw CudaError("free_device: not a live emulated device block");
  if (it->second.guarded) {
    // The pages stay reserved (addresses are never reused) but give their memory back.
    if (it->second.open > 0) protect(it->first, it->second, false);
    madvise(ptr, it->second.size, MADV_DONTNEED);
  } else {
    std::free(ptr);
  }
  a.blocks.erase(it);
}

void* malloc_pinned(size_t bytes) {
  void* p = std::malloc(bytes == 0 ? 1 : bytes);
  if (!p) throw CudaError("malloc_pinned: out of host memory");
  return p;
}
void free_pinned(void* ptr) { std::free(ptr); }

void memcpy_host_to_device(void* dst, const void* src, size_t bytes) {
  emu::forbid_in_capture("memcpy_host_to_device");
  if (bytes == 0) return;
  check_range("memcpy_host_to_device", dst, bytes);
  emu::DeviceAccess access("memcpy_host_to_device", {dst});
  std::memcpy(dst, src, bytes);
  count_launch();
}
void memcpy_device_to_host(void* dst, const void* src, size_t bytes) {
  emu::forbid_in_capture("memcpy_device_to_host");
  if (bytes == 0) return;
  check_range("memcpy_device_to_host", src, bytes);
  emu::DeviceAccess access("memcpy_device_to_host", {src});
  std::memcpy(dst, src, bytes);
}
void memcpy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_range("memcpy_device_to_device (destination)", dst, bytes);
  check_range("memcpy_device_to_device (source)", src, bytes);
  emu::stream_op([=] {
    emu::DeviceAccess access("memcpy_device_to_device", {dst, src});
    std::memmove(dst, src, bytes);
  });
  count_launch();
}
// The emulated stream is always idle: an asynchronous copy is the synchronous one.
void memcpy_host_to_device_async(void* dst, const void* src, size_t bytes) {
  memcpy_host_to_device(dst, src, bytes);
}
void memcpy_device_to_host_async(void* dst, const void* src, size_t bytes) {
  memcpy_device_to_host(dst, src, bytes);
}
void memset_device(void* dst, int value, size_t bytes) {
  if (bytes == 0) return;
  check_range("memset_device", dst, bytes);
  emu::stream_op([=] {
    emu::DeviceAccess access("memset_device", {dst});
    std::memset(dst, value, bytes);
  });
  count_launch();
}
void synchronize() { emu::forbid_in_capture("synchronize"); }

size_t free_device_bytes() {
  Arena& a = arena();
  {
    std::lock_guard<std::mutex> lock(a.mutex);
    if (a.guard && a.base) return a.reserved - a.top;
  }
  return size_t(sysconf(_SC_AVPHYS_PAGES)) * size_t(sysconf(_SC_PAGESIZE));
}

void* workspace(size_t bytes) {
  // As the real one: grow by half again, and the previous pointer dies on growth.
  static void* buffer = nullptr;
  static size_t capacity = 0;
  if (bytes <= capacity && buffer) return buffer;
  free_device(buffer);
  buffer = nullptr;
  capacity = 0;
  const size_t grown = bytes + bytes / 2;
  buffer = malloc_device(grown);
  if (!buffer) throw CudaError("workspace: out of emulated device memory");
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

// Emulated work runs when it is issued, so a mark is just the host clock at that point.
StreamMark mark_stream() {
  emu::forbid_in_capture("mark_stream");
  return new std::chrono::steady_clock::time_point(std::chrono::steady_clock::now());
}
double elapsed_ms(StreamMark from, StreamMark to) {
  using Point = std::chrono::steady_clock::time_point;
  return std::chrono::duration<double, std::milli>(*static_cast<Point*>(to) -
                                                   *static_cast<Point*>(from))
      .count();
}
void destroy_mark(StreamMark mark) {
  delete static_cast<std::chrono::steady_clock::time_point*>(mark);
}

uint64_t launch_count() { return g_launches.load(std::memory_order_relaxed); }
void count_launch() { g_launches.fetch_add(1, std::memory_order_relaxed); }

namespace {
struct EmulatedGraph {
  std::vector<std::function<void()>> ops;
};
EmulatedGraph* g_capture = nullptr;  // the open capture; captures come from one host thread
}  // namespace

namespace emu {
bool capturing() { return g_capture != nullptr; }
void record(std::function<void()> op) {
  if (!g_capture) throw CudaError("record: no capture is open");
  g_capture->ops.push_back(std::move(op));
}
void forbid_in_capture(const char* what) {
  if (g_capture)
    throw CudaError(std::string(what) +
                    ": not permitted while the stream is capturing (the step would break a "
                    "CUDA graph capture on a GPU)");
}
}  // namespace emu

void capture_begin() {
  if (g_capture) throw CudaError("capture_begin: a capture is already open");
  g_capture = new EmulatedGraph;
}
void* capture_end() {
  if (!g_capture) throw CudaError("capture_end: no capture is open");
  EmulatedGraph* graph = g_capture;
  g_capture = nullptr;
  return graph;
}
void capture_abandon() {
  delete g_capture;
  g_capture = nullptr;
}
void graph_launch(void* graph) {
  emu::forbid_in_capture("graph_launch");
  for (const std::function<void()>& op : static_cast<EmulatedGraph*>(graph)->ops) op();
  count_launch();
}
void graph_destroy(void* graph) { delete static_cast<EmulatedGraph*>(graph); }
int64_t graph_nodes(void* graph) {
  return int64_t(static_cast<EmulatedGraph*>(graph)->ops.size());
}

void range_push(const char*) {}
void range_pop() {}
void profiler_start() {}
void profiler_stop() {}

}  // namespace cuda
}  // namespace kd
