// Why: see watchdog.h. The thread sleeps on a condition variable (woken early only to exit) and reads
// two atomics; the training thread only stores them, so a step pays nothing measurable.
#include "engine/run/watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace mt {

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Watchdog::Watchdog(double limit_s, int rank, const char* what) : limit_s_(limit_s), rank_(rank), what_(what) {
  last_ns_ = now_ns();
  if (limit_s_ > 0) thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::progress(int64_t step) {
  step_.store(step, std::memory_order_relaxed);
  last_ns_.store(now_ns(), std::memory_order_release);
}

void Watchdog::watch() {
  // Checks ten times per limit, at least once a second.
  const auto tick = std::chrono::duration<double>(std::min(1.0, limit_s_ / 10));
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, tick, [this] { return done_; })) {
    const double idle = double(now_ns() - last_ns_.load(std::memory_order_acquire)) * 1e-9;
    if (idle < limit_s_) continue;
    const long long step = static_cast<long long>(step_.load(std::memory_order_relaxed));
    std::fprintf(stderr,
                 "moetrain: error: watchdog: rank %d finished nothing for %.0f s after step %lld (limit %s = %g s): "
                 "a rank hangs or is stopped; aborting the job (raise %s if a step, evaluation or checkpoint "
                 "really takes this long; 0 turns the watchdog off)\n",
                 rank_, idle, step, what_, limit_s_, what_);
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(124);
  }
}

}  // namespace mt
