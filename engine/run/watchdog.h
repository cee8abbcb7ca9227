// Why: a rank that stops (a stopped or dead node, a cut cable, a deadlocked collective, a hung GPU) must
// not hold the whole allocation until the wall-clock limit. Each rank runs this watchdog, a thread that
// needs no MPI: when no progress (a finished step, evaluation or checkpoint) is reported within the
// limit, the job is aborted with exit 124, which makes mpirun / srun --kill-on-bad-exit end the other
// ranks (and the job).
//
// On several hosts the line also names the host that is gone. Each host's first rank answers, from this
// thread, small UDP datagrams of the job (a token drawn at the start) on a port exchanged when the
// watchdog starts. When the limit passes, each host's first rank asks every other host's first rank
// (three tries over ~1.5 s); a host that gives no answer is down, cut off or stopped. Then ONE rank
// prints ONE line: the first rank of the first host (in world order) that still answers, naming its
// rank, host, last step and the hosts that did not answer. The other ranks wait up to kGraceS for the
// launcher to end them (its SIGTERM ends them quietly) and print their own line only if it has not.
#pragma once

#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "comm/grid.h"

namespace mt {

class Watchdog {
 public:
  // limit_s <= 0: off (no thread). `what` names the setting in the message (e.g. "train.watchdog_s").
  // Collective over grid.world() when the limit is on: every rank constructs it at the same point.
  Watchdog(double limit_s, const ProcessGrid& grid, const char* what);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Something finished: the clock starts again. `step` is the last finished training step.
  void progress(int64_t step);

  static constexpr double kProbeS = 1.5;  // how long the first rank of a host waits for the others' answers
  static constexpr double kGraceS = 5;    // how long a rank that does not report waits for the launcher

 private:
  struct Host {
    std::string name;
    std::vector<int> ranks;
    sockaddr_in addr{};     // where its first rank's watchdog listens
    bool probed = false;    // an address is known (its first rank opened a socket and the name resolves)
    bool answered = false;  // answered during the last probe
  };

  void open_probes(const ProcessGrid& grid);
  void watch();
  void fire();
  // Waits up to `seconds` for datagrams (answering probes, recording answers); false when woken to end.
  bool serve(double seconds);
  void send(const Host& to, uint32_t kind);
  std::string verdict() const;  // what the probe found, for the line

  double limit_s_;
  int rank_;
  const char* what_;
  std::vector<Host> hosts_;  // every host of the job, in order of its first rank
  size_t mine_ = 0;          // this rank's host in hosts_
  bool first_ = true;        // this rank is its host's first rank: it answers and probes
  int sock_ = -1;            // UDP, bound to any address (the first rank of each host)
  int wake_[2] = {-1, -1};   // a pipe: the destructor writes to end the thread
  uint64_t token_ = 0;       // the job's: datagrams without it are ignored
  std::atomic<int64_t> last_ns_{0};
  std::atomic<int64_t> step_{0};
  std::thread thread_;
};

}  // namespace mt
