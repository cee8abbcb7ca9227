// Why: a rank that stops (a stopped or dead node, a deadlocked collective, a hung GPU) must not hold the
// whole allocation until the wall-clock limit. Each rank runs this watchdog, a thread that needs no MPI:
// when no progress (a finished step, evaluation or checkpoint) is reported within the limit, it prints
// one line naming the rank and the last finished step and ends the process with exit 124, which makes
// mpirun / srun --kill-on-bad-exit end the other ranks (and the job).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace mt {

class Watchdog {
 public:
  // limit_s <= 0: off (no thread). `what` names the setting in the message (e.g. "train.watchdog_s").
  Watchdog(double limit_s, int rank, const char* what);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Something finished: the clock starts again. `step` is the last finished training step.
  void progress(int64_t step);

 private:
  void watch();

  double limit_s_;
  int rank_;
  const char* what_;
  std::atomic<int64_t> last_ns_{0};
  std::atomic<int64_t> step_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace mt
