// One CUDA thread block on the grid emulator: every thread is a fiber (fiber.h) and the block's
// threads run cooperatively on one OS thread. A thread runs until it reaches a synchronisation
// point (__syncthreads, a warp collective) or exits; the scheduler then resumes the next runnable
// thread in the block's ORDER: forward (thread 0 first), reverse, or a seeded random permutation
// redrawn for every pass. Kernels whose result depends on that order are missing a barrier.
// Semantics, checked strictly (each violation is a CudaError naming kernel, block and thread):
//  - __syncthreads completes when every thread of the block has reached it, at the same call
//    site; a thread that exits while others wait, or two sites met by one barrier, is an error.
//  - warp collectives (shuffles, votes, __syncwarp) complete when every lane named in the mask
//    has arrived with the same operation and mask. A mask naming the caller's own lane not, a lane
//    past the end of a partial warp, a lane that exited, or a shuffle reading a lane outside the
//    mask is an error. If no thread can run and the block is not done, the block is deadlocked:
//    the error lists who waits where.
//  - cluster.sync() is a __syncthreads whose completion also waits for the cluster's other
//    blocks (cluster.h); map_shared_rank maps dynamic shared memory into a peer block.
// Under ThreadSanitizer (fiber.h) threads release at a barrier / __syncwarp arrival and acquire
// when it completes; shuffles and votes carry values but, as in CUDA's memory model, no memory
// ordering. Host-only header, part of kernels/cuda_grid/grid.h.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "base/check.h"
#include "kernels/cuda_grid/block_state.h"
#include "kernels/cuda_grid/cluster.h"
#include "kernels/cuda_grid/fiber.h"

namespace kd {
namespace grid {
namespace detail {

#if KD_GRID_TSAN
// Happens-before objects: the launching thread releases g_tsan_launch before the blocks and
// acquires g_tsan_done after them; consecutive blocks of one OS thread are ordered through the
// runner's chain (so shared memory and stacks reused by the next block are not races).
inline char g_tsan_launch, g_tsan_done;
#endif

class BlockRunner {
 public:
  BlockRunner() { init_scheduler_context(sched_); }
  BlockRunner(const BlockRunner&) = delete;
  BlockRunner& operator=(const BlockRunner&) = delete;

  unsigned char* dynamic_shared() { return dynamic_.data(); }
  const BlockJob& job() const { return *job_; }

  // Runs block `b` of `job` to completion; throws CudaError on a violation or deadlock. In a
  // cluster launch, `cluster` is the block's cluster (cluster.h) and `rank` its place in it.
  KD_GRID_NO_TSAN void run(const BlockJob& job, uint3 b, uint64_t block_linear,
                           Cluster* cluster = nullptr, int rank = 0) {
    const TsanIgnore bookkeeping;  // the scheduler's accesses; each fiber is its own TSan thread
    job_ = &job;
    block_ = b;
    const int n = int(job.block.x * job.block.y * job.block.z);
    n_ = n;
    warps_ = (n + 31) / 32;
    if (threads_.size() < size_t(n)) threads_.resize(size_t(n));  // slots keep their fibers
    groups_.assign(size_t(warps_), {});
    exited_lanes_.assign(size_t(warps_), 0u);
    if (dynamic_.size() < job.dynamic_shared) dynamic_.resize(job.dynamic_shared);
    // Uninitialised shared memory reads as NaN (float and double) or -1 (integers).
    std::memset(dynamic_.data(), 0xFF, job.dynamic_shared);
    cluster_ = cluster, rank_ = rank;
    struct LeaveCluster {  // however the block ends, its peers learn of it
      Cluster* c;
      ~LeaveCluster() {
        if (c) c->leave(std::uncaught_exceptions() > 0);
      }
    } leave{cluster};
    if (cluster) cluster->enter(rank, dynamic_.data());
    ++sequence_;
    for (int t = 0; t < n; ++t) {
      Thread& th = threads_[size_t(t)];
      const Context kept = th.ctx;  // its TSan fiber outlives the block
      th = Thread{};
      th.ctx = kept;
      th.runner = this;
      th.tid = t, th.warp = t / 32, th.lane = t % 32;
      th.idx = {unsigned(t) % job.block.x, (unsigned(t) / job.block.x) % job.block.y,
                unsigned(t) / (job.block.x * job.block.y)};
      make_fiber(th.ctx, stacks_.top(t), &fiber_main, &th);
    }
#if KD_GRID_TSAN
    // A fiber stopped mid-kernel by a failure still publishes what it touched, so the launching
    // thread's next use of that memory is not reported as a race.
    struct Abandon {
      BlockRunner* r;
      ~Abandon() {
        for (int t = 0; t < r->n_; ++t) {
          Thread& th = r->threads_[size_t(t)];
          if (th.started && (th.state == State::AtBarrier || th.state == State::AtWarp)) {
            th.abort = true;
            switch_to(r->sched_, th.ctx);
          }
        }
      }
    } abandon{this};
#endif
    blockIdx = b;
    gridDim = job.grid;
    blockDim = job.block;
    uint64_t rng = job.seed ^ (block_linear * 0xD1B54A32D192ED03ull);
    order_.resize(size_t(n));
    waiting_ = exited_ = 0;
    uint64_t switches = 0;
    while (exited_ < n) {
      fill_order(job.order, rng);
      bool ran = false;
      for (int t : order_) {
        Thread& th = threads_[size_t(t)];
        if (th.state != State::Runnable) continue;
        ran = true;
        ++switches;
        threadIdx = th.idx;
        g_current = &th;
        th.started = true;
        switch_to(sched_, th.ctx);
        g_current = nullptr;
        after_switch(th);
      }
      if (!ran) deadlock();
    }
    counters_add(switches, uint64_t(n));
  }

  // Cluster queries for the running block (a launch without clusters is one block's cluster).
  int cluster_rank() const { return rank_; }
  int cluster_blocks() const { return cluster_ ? cluster_->blocks() : 1; }

  // Distributed shared memory: `p`, in this block's dynamic shared memory, as the same place in
  // the dynamic shared memory of the cluster's block `rank`.
  unsigned char* map_shared_rank(const void* p, unsigned rank) {
    const Thread* th = g_current;
    if (rank >= unsigned(cluster_blocks())) {
      std::ostringstream os;
      os << "map_shared_rank to block rank " << rank << " of a cluster of " << cluster_blocks()
         << " blocks";
      fail(os.str(), th);
    }
    const unsigned char* q = static_cast<const unsigned char*>(p);
    if (q < dynamic_.data() || q >= dynamic_.data() + job_->dynamic_shared)
      fail("map_shared_rank of a pointer outside this block's dynamic shared memory (the "
           "emulator maps dynamic shared memory only: declare it with KD_DYNAMIC_SHARED)",
           th);
    if (!cluster_) return const_cast<unsigned char*>(q);
    return cluster_->dynamic_shared(int(rank)) + (q - dynamic_.data());
  }
#if KD_GRID_TSAN
  void* cluster_sync_object() { return cluster_ ? cluster_->tsan_sync() : barrier_sync(); }
#endif

  // Lanes of `warp` that have not exited.
  unsigned active_mask(int warp) {
    const int lanes = lanes_in_warp(warp);
    const unsigned existing = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
    return existing & ~exited_lanes_[size_t(warp)];
  }

  // Called on the fiber: park the current thread and give control back to the scheduler.
  KD_GRID_NO_TSAN void park(Thread& th) {
    switch_to(th.ctx, sched_);
#if KD_GRID_TSAN
    if (th.abort) {
      __tsan_release(&g_tsan_done);
      __tsan_release(chain_current());
      switch_to(th.ctx, sched_);  // never resumed again
    }
#endif
  }

#if KD_GRID_TSAN
  void* barrier_sync() { return &barrier_sync_; }
  void* warp_sync(int warp) { return &warp_sync_[warp]; }
  void* chain_previous() { return &chain_[(sequence_ + 1) & 1]; }
  void* chain_current() { return &chain_[sequence_ & 1]; }
#endif

 private:
  KD_GRID_NO_TSAN static void fiber_main(void* arg) {
    Thread& th = *static_cast<Thread*>(arg);
    BlockRunner& r = *th.runner;
#if KD_GRID_TSAN
    __tsan_acquire(&g_tsan_launch);
    __tsan_acquire(r.chain_previous());
#endif
    std::exception_ptr* error = nullptr;
    try {
      r.job_->body.invoke(r.job_->body.args);
    } catch (...) {
      const TsanIgnore bookkeeping;
      error = new std::exception_ptr(std::current_exception());  // leave the handler first
    }
#if KD_GRID_TSAN
    __tsan_release(&g_tsan_done);
    __tsan_release(r.chain_current());
#endif
    {
      const TsanIgnore bookkeeping;
      if (error) th.error = *error;
      delete error;
      th.state = error ? State::Failed : State::Exited;
    }
    r.park(th);  // never resumed
    __builtin_trap();
  }

  void fill_order(Order order, uint64_t& rng) {
    const int n = n_;
    for (int t = 0; t < n; ++t) order_[size_t(t)] = order == Order::Reverse ? n - 1 - t : t;
    if (order == Order::Random)
      for (int t = n - 1; t > 0; --t) std::swap(order_[size_t(t)], order_[splitmix(rng) % (t + 1)]);
  }

  static void counters_add(uint64_t switches, uint64_t threads) {
    Counters& c = counters();
    __atomic_fetch_add(&c.blocks, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&c.threads, threads, __ATOMIC_RELAXED);
    __atomic_fetch_add(&c.switches, switches, __ATOMIC_RELAXED);
  }

  std::string where(const Thread* th = nullptr) const {
    std::ostringstream os;
    os << "grid emulator: kernel " << job_->kernel << ", block (" << block_.x << "," << block_.y
       << "," << block_.z << ")";
    if (th) os << ", thread " << th->tid << " (warp " << th->warp << " lane " << th->lane << ")";
    return os.str();
  }
  [[noreturn]] void fail(const std::string& what, const Thread* th = nullptr) const {
    throw CudaError(where(th) + ": " + what);
  }
  static std::string site(const Thread& th) {
    std::ostringstream os;
    os << th.file << ":" << th.line;
    return os.str();
  }

  void after_switch(Thread& th) {
    switch (th.state) {
      case State::Runnable: fail("returned to the scheduler without a reason", &th);
      case State::AtBarrier: arrive_barrier(th); break;
      case State::AtWarp: arrive_warp(th); break;
      case State::Exited: exit_thread(th); break;
      case State::Failed: {
        try {
          std::rethrow_exception(th.error);
        } catch (const std::exception& e) {
          fail(std::string("device code threw: ") + e.what(), &th);
        } catch (...) {
          fail("device code threw a non-standard exception", &th);
        }
      }
    }
  }

  void arrive_barrier(Thread& th) {
    if (waiting_ == 0) {
      barrier_file_ = th.file, barrier_line_ = th.line;
      barrier_cluster_ = th.cluster_barrier;
    } else if (th.line != barrier_line_ ||
               (th.file != barrier_file_ && std::strcmp(th.file, barrier_file_) != 0)) {
      std::ostringstream os;
      os << "__syncthreads at " << site(th) << " met threads waiting at " << barrier_file_ << ":"
         << barrier_line_ << " (a barrier in divergent code)";
      fail(os.str(), &th);
    }
    ++waiting_;
    check_barrier();
    if (waiting_ == n_) {
      if (barrier_cluster_ && cluster_) wait_for_cluster(th);
      for (int t = 0; t < n_; ++t) threads_[size_t(t)].state = State::Runnable;
      waiting_ = 0;
    }
  }

  // The whole block is in cluster.sync(): this OS thread waits for the cluster's other blocks.
  void wait_for_cluster(const Thread& th) {
    try {
      cluster_->arrive_and_wait(site(th));
    } catch (const ClusterPeerFailed& e) {
      throw ClusterPeerFailed(where() + ": " + e.what());
    } catch (const CudaError& e) {
      fail(e.what());
    }
  }

  void check_barrier() const {
    if (waiting_ > 0 && exited_ > 0 && waiting_ + exited_ == n_) {
      std::ostringstream os;
      os << exited_ << " of " << n_ << " threads exited without reaching the __syncthreads at "
         << barrier_file_ << ":" << barrier_line_ << " that the other " << waiting_
         << " wait in (first exited: thread " << first_exited() << ")";
      fail(os.str());
    }
  }

  int first_exited() const {
    for (int t = 0; t < n_; ++t)
      if (threads_[size_t(t)].state == State::Exited) return t;
    return -1;
  }

  int lanes_in_warp(int warp) const { return std::min(32, n_ - warp * 32); }
  Thread& lane(int warp, int l) { return threads_[size_t(warp * 32 + l)]; }

  void arrive_warp(Thread& th) {
    const unsigned bit = 1u << th.lane;
    const int lanes = lanes_in_warp(th.warp);
    const unsigned existing = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
    if (!(th.mask & bit) || (th.mask & ~existing) || !valid_width(th)) bad_warp_call(th, lanes);
    std::vector<WarpGroup>& groups = groups_[size_t(th.warp)];
    WarpGroup* g = nullptr;
    for (WarpGroup& candidate : groups)
      if (candidate.mask & th.mask) g = &candidate;
    if (!g) {
      groups.push_back({th.op, th.mask, 0u});
      g = &groups.back();
    } else if (g->mask != th.mask || g->op != th.op) {
      const Thread& other = lane(th.warp, __builtin_ctz(g->arrived));
      std::ostringstream os;
      os << warp_op_name(th.op) << " at " << site(th) << " with mask 0x" << std::hex << th.mask
         << " met lanes waiting in " << warp_op_name(g->op) << " at " << site(other)
         << " with mask 0x" << g->mask;
      fail(os.str(), &th);
    }
    g->arrived |= bit;
    if (const unsigned gone = g->mask & exited_lanes_[size_t(th.warp)]) {
      const int l = __builtin_ctz(gone);
      std::ostringstream os;
      os << warp_op_name(th.op) << " at " << site(th) << " with mask 0x" << std::hex << th.mask
         << " names lane " << std::dec << l << ", which has exited";
      fail(os.str(), &th);
    }
    if (g->arrived == g->mask) {
      const WarpGroup done = *g;
      groups.erase(groups.begin() + (g - groups.data()));
      complete_warp(th.warp, done);
    }
  }

  static bool valid_width(const Thread& th) {
    const bool shuffle = th.op == WarpOp::Shfl || th.op == WarpOp::ShflUp ||
                         th.op == WarpOp::ShflDown || th.op == WarpOp::ShflXor;
    return !shuffle || (th.width >= 1 && th.width <= 32 && (th.width & (th.width - 1)) == 0);
  }

  [[noreturn]] void bad_warp_call(const Thread& th, int lanes) const {
    const unsigned existing = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
    std::ostringstream os;
    os << warp_op_name(th.op) << " at " << site(th);
    if (!(th.mask & (1u << th.lane)))
      os << " with mask 0x" << std::hex << th.mask << " that does not name the calling lane";
    else if (th.mask & ~existing)
      os << " with mask 0x" << std::hex << th.mask
         << " names lanes past the end of this partial warp of " << std::dec << lanes
         << " threads (mask of existing lanes 0x" << std::hex << existing << ")";
    else
      os << " with width " << th.width << " (must be a power of two up to 32)";
    fail(os.str(), &th);
  }

  void complete_warp(int warp, const WarpGroup& g) {
    uint64_t ballot = 0;
    for (int l = 0; l < 32; ++l)
      if ((g.mask >> l & 1u) && lane(warp, l).value != 0) ballot |= uint64_t(1) << l;
    for (int l = 0; l < 32; ++l) {
      if (!(g.mask >> l & 1u)) continue;
      Thread& t = lane(warp, l);
      const int seg = l & ~(t.width - 1), in_seg = l & (t.width - 1);
      int src = l;
      switch (g.op) {
        case WarpOp::Shfl: src = seg + (t.arg & (t.width - 1)); break;
        case WarpOp::ShflUp: src = in_seg >= t.arg ? l - t.arg : l; break;
        case WarpOp::ShflDown: src = in_seg + t.arg < t.width ? l + t.arg : l; break;
        case WarpOp::ShflXor: {
          const int x = l ^ t.arg;
          src = (x >= 0 && x < seg + t.width) ? x : l;
          break;
        }
        default: break;
      }
      if (src < 0 || src > 31 || !(g.mask >> src & 1u)) {
        std::ostringstream os;
        os << warp_op_name(g.op) << " at " << site(t) << " reads lane " << src
           << ", which is not in the mask 0x" << std::hex << g.mask << " (undefined on a GPU)";
        fail(os.str(), &t);
      }
      switch (g.op) {
        case WarpOp::Ballot: t.result = ballot; break;
        case WarpOp::Any: t.result = ballot != 0; break;
        case WarpOp::All: t.result = ballot == g.mask; break;
        case WarpOp::SyncWarp: t.result = 0; break;
        default: t.result = lane(warp, src).value; break;
      }
    }
    for (int l = 0; l < 32; ++l)
      if (g.mask >> l & 1u) lane(warp, l).state = State::Runnable;
  }

  void exit_thread(Thread& th) {
    if (!th.async_copies.empty()) {
      std::ostringstream os;
      os << "exited with " << th.async_copies.size()
         << " cp.async copies no cp.async.wait_group completed";
      fail(os.str(), &th);
    }
    ++exited_;
    exited_lanes_[size_t(th.warp)] |= 1u << th.lane;
    check_barrier();
    for (const WarpGroup& g : groups_[size_t(th.warp)])
      if ((g.mask >> th.lane & 1u) && !(g.arrived >> th.lane & 1u)) {
        const Thread& other = lane(th.warp, __builtin_ctz(g.arrived));
        std::ostringstream os;
        os << "exited while lanes of its warp wait for it in " << warp_op_name(g.op) << " at "
           << site(other) << " with mask 0x" << std::hex << g.mask;
        fail(os.str(), &th);
      }
  }

  [[noreturn]] void deadlock() {
    std::ostringstream os;
    os << "deadlock:";
    if (waiting_ > 0)
      os << " " << waiting_ << " of " << n_ << " threads wait in __syncthreads at "
         << barrier_file_ << ":" << barrier_line_ << ";";
    for (int w = 0; w < warps_; ++w)
      for (const WarpGroup& g : groups_[size_t(w)]) {
        const Thread& first = lane(w, __builtin_ctz(g.arrived));
        os << " warp " << w << " lanes 0x" << std::hex << g.arrived << " wait in "
           << warp_op_name(g.op) << " at " << site(first) << " with mask 0x" << g.mask << std::dec
           << ", missing";
        for (int l = 0; l < 32; ++l)
          if ((g.mask >> l & 1u) && !(g.arrived >> l & 1u)) {
            const Thread& t = lane(w, l);
            os << " lane " << l;
            if (t.state == State::AtBarrier) os << " (in __syncthreads at " << site(t) << ")";
            else if (t.state == State::AtWarp)
              os << " (in " << warp_op_name(t.op) << " at " << site(t) << ")";
          }
        os << ";";
      }
    fail(os.str());
  }

  const BlockJob* job_ = nullptr;
  uint3 block_{0, 0, 0};
  int n_ = 0, warps_ = 0, waiting_ = 0, exited_ = 0;
  const char* barrier_file_ = "";
  int barrier_line_ = 0;
  bool barrier_cluster_ = false;
  Cluster* cluster_ = nullptr;
  int rank_ = 0;
  Context sched_;
  StackPool stacks_;
  std::vector<Thread> threads_;
  std::vector<std::vector<WarpGroup>> groups_;
  std::vector<unsigned> exited_lanes_;  // per warp
  std::vector<int> order_;
  std::vector<unsigned char> dynamic_;
  uint64_t sequence_ = 0;
#if KD_GRID_TSAN
  char barrier_sync_ = 0;
  char warp_sync_[32] = {};
  char chain_[2] = {};
#endif
};

// The runner of this OS thread (blocks of any launch reuse its stacks).
inline BlockRunner& runner() {
  static thread_local BlockRunner r;
  return r;
}

// Parks the calling emulated thread at a barrier (__syncthreads, or with `cluster`
// cluster.sync()) or warp collective until it completes.
KD_GRID_NO_TSAN inline void wait_barrier(const char* file, int line, bool cluster = false) {
  Thread* th = g_current;
  KD_CHECK(th, (cluster ? "cluster.sync()" : "__syncthreads")
                   << " called outside an emulated kernel");
#if KD_GRID_TSAN
  void* sync = cluster ? th->runner->cluster_sync_object() : th->runner->barrier_sync();
  __tsan_release(sync);
#endif
  th->state = State::AtBarrier;
  th->file = file, th->line = line;
  th->cluster_barrier = cluster;
  th->runner->park(*th);
#if KD_GRID_TSAN
  __tsan_acquire(sync);
#endif
}

KD_GRID_NO_TSAN inline uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg,
                                                int width, const char* file, int line) {
  Thread* th = g_current;
  KD_CHECK(th, warp_op_name(op) << " called outside an emulated kernel");
#if KD_GRID_TSAN
  if (op == WarpOp::SyncWarp) __tsan_release(th->runner->warp_sync(th->warp));
#endif
  th->state = State::AtWarp;
  th->op = op, th->mask = mask, th->value = value, th->arg = arg, th->width = width;
  th->file = file, th->line = line;
  th->runner->park(*th);
#if KD_GRID_TSAN
  if (op == WarpOp::SyncWarp) __tsan_acquire(th->runner->warp_sync(th->warp));
#endif
  return th->result;
}

// Lanes of the caller's warp that have not exited (CUDA's __activemask reports the lanes
// converged at the call; fibers have no convergence, so this is the closest honest answer).
KD_GRID_NO_TSAN inline unsigned active_lanes() {
  Thread* th = g_current;
  KD_CHECK(th, "__activemask called outside an emulated kernel");
  return th->runner->active_mask(th->warp);
}

}  // namespace detail
}  // namespace grid
}  // namespace kd
