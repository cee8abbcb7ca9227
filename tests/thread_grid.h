// Why: the optimizer, checkpoint and trainer tests need several ranks (ZeRO-1 shares, shards written
// by tp and ep ranks, a stop flag that must be agreed) but are unit tests, run without mpirun. Here the
// ranks are threads of the test process: ThreadComm is a Comm over host memory whose collectives meet at
// a barrier, and thread_grids() builds every rank's ProcessGrid for a (tp, ep, world) layout from the
// rank formulas of DESIGN.md "Parallelism" (tp fastest; ep groups consecutive dp ranks), written here
// again rather than taken from comm/grid.cpp. A rank that fails breaks every group, so that the others
// throw instead of waiting for it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/grid.h"
#include "engine/core/check.h"

namespace mt::test {

// Set when one rank of a world failed: every waiting rank of that world gives up.
struct WorldAbort {
  std::atomic<bool> aborted{false};
};

// The shared state of one communicator: a reusable barrier and what each rank posted for the
// collective in progress (which one, its buffer and its size), so that ranks that call different
// collectives fail at once instead of reading each other's buffers.
class ThreadGroup {
 public:
  struct Post {
    const char* op = nullptr;
    const void* buf = nullptr;
    size_t bytes = 0;
  };
  ThreadGroup(int size, std::shared_ptr<WorldAbort> abort) : size_(size), posts_(size_t(size)), abort_(std::move(abort)) {}
  int size() const { return size_; }
  const Post& post(int rank) const { return posts_[size_t(rank)]; }

  // Posts this rank's part, waits for every rank, and checks that all posted the same collective.
  void meet(int rank, const char* op, const void* buf, size_t bytes) {
    posts_[size_t(rank)] = {op, buf, bytes};
    barrier();
    for (const Post& p : posts_)
      MT_CHECK(std::string(p.op) == op && p.bytes == bytes, "ThreadComm: rank ", rank, " called ", op, " of ", bytes,
               " bytes while another rank called ", p.op, " of ", p.bytes, " bytes");
    barrier();  // every rank has checked before any posts again
  }

  void barrier() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t gen = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (generation_ == gen) {
      if (abort_->aborted) throw Error("ThreadComm: another rank failed");
      MT_CHECK(cv_.wait_until(lock, limit) != std::cv_status::timeout || generation_ != gen,
               "ThreadComm: a rank waited 30 s at a collective that the others did not reach");
    }
  }
  void wake() {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }

 private:
  const int size_;
  std::vector<Post> posts_;
  std::shared_ptr<WorldAbort> abort_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
};

// One rank's view of a ThreadGroup. Buffers are host memory (the CPU device's too); sums run in rank
// order. Only what the engine's single-node paths use is provided.
class ThreadComm final : public Comm {
 public:
  ThreadComm(std::shared_ptr<ThreadGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  std::string describe() const override { return str("thread comm ", rank_, "/", size()); }

  void allreduce_sum(void* buf, size_t count, DType dtype, MemSpace) override {
    switch (dtype) {
      case DType::F32: return sum<float>(static_cast<float*>(buf), count);
      case DType::F64: return sum<double>(static_cast<double*>(buf), count);
      case DType::I64: return sum<int64_t>(static_cast<int64_t*>(buf), count);
      default: MT_CHECK(false, "ThreadComm sums F32, F64 and I64 only");
    }
  }
  std::unique_ptr<CommRequest> iallreduce_sum(void* buf, size_t count, DType dtype, MemSpace space) override {
    allreduce_sum(buf, count, dtype, space);  // every rank starts the same buckets in the same order
    return std::make_unique<Done>();
  }
  void broadcast(void* buf, size_t count, DType dtype, int root, MemSpace) override {
    group_->meet(rank_, "broadcast", buf, count * dtype_size(dtype));
    if (rank_ != root && count) std::memcpy(buf, group_->post(root).buf, count * dtype_size(dtype));
    group_->barrier();
  }
  void barrier() override { group_->meet(rank_, "barrier", nullptr, 0); }
  void allgather(const void*, void*, size_t, DType, MemSpace) override { unused("allgather"); }
  void reduce_scatter_sum(const void*, void*, size_t, DType, MemSpace) override { unused("reduce_scatter_sum"); }
  void alltoallv(const void*, const size_t*, const size_t*, void*, const size_t*, const size_t*, DType,
                 MemSpace) override {
    unused("alltoallv");
  }
  void alltoall_host(const void*, void*, size_t, DType) override { unused("alltoall_host"); }

 private:
  struct Done final : CommRequest {
    void wait() override {}
  };
  static void unused(const char* what) { MT_CHECK(false, "ThreadComm has no ", what, " (not needed by these tests)"); }
  template <typename X>
  void sum(X* buf, size_t count) {
    group_->meet(rank_, "allreduce_sum", buf, count * sizeof(X));
    std::vector<X> total(count, X(0));
    for (int r = 0; r < size(); ++r) {
      const X* p = static_cast<const X*>(group_->post(r).buf);
      for (size_t i = 0; i < count; ++i) total[i] += p[i];
    }
    group_->barrier();  // every rank has read every buffer
    std::copy(total.begin(), total.end(), buf);
  }
  std::shared_ptr<ThreadGroup> group_;
  int rank_;
};

// Every rank's grid of a world of `world` ranks in tp x dp (ep dividing dp), with ThreadComm groups.
struct ThreadWorld {
  std::vector<std::unique_ptr<ProcessGrid>> grids;  // by world rank
  std::vector<std::shared_ptr<ThreadGroup>> groups;
  std::shared_ptr<WorldAbort> abort = std::make_shared<WorldAbort>();

  // Runs fn(rank) on one thread per rank; rethrows the first failure after all have ended.
  void run(const std::function<void(int rank)>& fn) {
    std::vector<std::thread> threads;
    std::vector<std::exception_ptr> errors(grids.size());
    for (int r = 0; r < int(grids.size()); ++r)
      threads.emplace_back([&, r] {
        try {
          fn(r);
        } catch (...) {
          errors[size_t(r)] = std::current_exception();
          abort->aborted = true;
          for (auto& g : groups) g->wake();
        }
      });
    for (auto& t : threads) t.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }
};

inline ThreadWorld thread_grids(int tp, int ep, int world) {
  MT_CHECK(world % tp == 0 && (world / tp) % ep == 0, "layout tp ", tp, " ep ", ep, " of world ", world);
  ThreadWorld w;
  const int dp = world / tp;
  // One group per distinct key of each kind, made on first use.
  std::vector<std::vector<std::shared_ptr<ThreadGroup>>> made(5);
  auto group = [&](int kind, int key, int size) {
    auto& list = made[size_t(kind)];
    if (list.size() <= size_t(key)) list.resize(size_t(key) + 1);
    if (!list[size_t(key)]) {
      list[size_t(key)] = std::make_shared<ThreadGroup>(size, w.abort);
      w.groups.push_back(list[size_t(key)]);
    }
    return list[size_t(key)];
  };
  for (int r = 0; r < world; ++r) {
    auto g = std::make_unique<ProcessGrid>();
    g->world_rank = r;
    g->world_size = world;
    g->tp_rank = r % tp;
    g->tp_size = tp;
    g->dp_rank = r / tp;
    g->dp_size = dp;
    g->ep_rank = g->dp_rank % ep;
    g->ep_size = ep;
    g->edp_rank = g->dp_rank / ep;
    g->edp_size = dp / ep;
    g->world_ = std::make_unique<ThreadComm>(group(0, 0, world), r);
    g->tp_ = std::make_unique<ThreadComm>(group(1, g->dp_rank, tp), g->tp_rank);
    g->dp_ = std::make_unique<ThreadComm>(group(2, g->tp_rank, dp), g->dp_rank);
    g->ep_ = std::make_unique<ThreadComm>(group(3, g->edp_rank * tp + g->tp_rank, ep), g->ep_rank);
    g->edp_ = std::make_unique<ThreadComm>(group(4, g->ep_rank * tp + g->tp_rank, dp / ep), g->edp_rank);
    w.grids.push_back(std::move(g));
  }
  return w;
}

}  // namespace mt::test
