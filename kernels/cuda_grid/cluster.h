// Thread block clusters (sm_90) on the grid emulator. The blocks of one cluster must be resident
// together, so each runs on its own OS thread (ClusterWorkers, kept from cluster to cluster) and
// they meet at cluster.sync() (Cluster::arrive_and_wait). A block reaches the cluster barrier when
// all its threads have (block.h); the OS thread then waits for the other blocks. Checked, each an
// error instead of a hang: a block that exits while others wait in cluster.sync(), and a block that
// fails (its own error is the one reported; its peers stop with ClusterPeerFailed).
// Distributed shared memory: a block's dynamic shared memory, registered here before its threads
// start, is what map_shared_rank reaches in a peer (block.h).
// Host-only header, part of kernels/cuda_grid/grid.h.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/check.h"
#include "kernels/cuda_grid/fiber.h"  // KD_GRID_TSAN

namespace kd {
namespace grid {
namespace detail {

// Thrown in a block whose cluster peer failed; the launch reports the peer's own error instead.
struct ClusterPeerFailed : CudaError {
  using CudaError::CudaError;
};

class Cluster {
 public:
  explicit Cluster(int blocks) : shared_(size_t(blocks), nullptr), blocks_(blocks) {}
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  int blocks() const { return blocks_; }

  // Block `rank`'s dynamic shared memory, registered before its threads start.
  void enter(int rank, unsigned char* dynamic_shared) {
    std::lock_guard<std::mutex> lock(mutex_);
    shared_[size_t(rank)] = dynamic_shared;
  }
  unsigned char* dynamic_shared(int rank) {
    std::lock_guard<std::mutex> lock(mutex_);
    return shared_[size_t(rank)];
  }

  // Every thread of the calling block is in the cluster.sync() at `site`: waits (blocking this OS
  // thread) until every block of the cluster is. Throws when the wait cannot end.
  void arrive_and_wait(const std::string& site) {
    std::unique_lock<std::mutex> lock(mutex_);
    const uint64_t generation = generation_;
    if (!broken_ && left_ == 0 && ++arrived_ == blocks_) {
      arrived_ = 0;
      ++generation_;
      released_.notify_all();
      return;
    }
    released_.wait(lock, [&] { return generation_ != generation || broken_ || left_ > 0; });
    if (generation_ != generation) return;
    if (broken_) throw ClusterPeerFailed(why_);
    throw CudaError(std::to_string(left_) + " block(s) of its cluster exited without reaching " +
                    "the cluster.sync() at " + site + " that this block waits in");
  }

  // The calling block is done (`failed`: with an error).
  void leave(bool failed) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (failed) {
      broken_ = true;
      why_ = "stopped in cluster.sync(): another block of its cluster failed";
    } else {
      ++left_;
    }
    released_.notify_all();
  }

#if KD_GRID_TSAN
  void* tsan_sync() { return &tsan_sync_; }
#endif

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  std::vector<unsigned char*> shared_;
  int blocks_ = 0, arrived_ = 0, left_ = 0;
  uint64_t generation_ = 0;
  bool broken_ = false;
  std::string why_;
#if KD_GRID_TSAN
  char tsan_sync_ = 0;
#endif
};

// Runs job(rank) for rank 0..n-1 at the same time, each on its own OS thread, and returns when all
// have returned. Threads are kept for the next cluster (each keeps its block runner and fiber
// stacks); one cluster at a time. job must not throw.
class ClusterWorkers {
 public:
  static ClusterWorkers& instance() {
    static ClusterWorkers* w = new ClusterWorkers;  // never destroyed: its threads outlive main
    return *w;
  }

  void run(int n, const std::function<void(int)>& job) {
    const std::lock_guard<std::mutex> one_cluster(run_mutex_);
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = &job;
    n_ = n;
    done_ = 0;
    ++generation_;
    while (int(started_) < n) {
      std::thread(&ClusterWorkers::loop, this, started_).detach();
      ++started_;
    }
    wake_.notify_all();
    finished_.wait(lock, [&] { return done_ == n_; });
    job_ = nullptr;
  }

 private:
  void loop(int index) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (index >= n_) continue;
      const std::function<void(int)>* job = job_;
      lock.unlock();
      (*job)(index);
      lock.lock();
      if (++done_ == n_) finished_.notify_all();
    }
  }

  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_, finished_;
  const std::function<void(int)>* job_ = nullptr;
  int n_ = 0, done_ = 0, started_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace detail
}  // namespace grid
}  // namespace kd
