// Why: see watchdog.h. The thread waits in poll() on its socket and a wake-up pipe and reads two atomics;
// the training thread only stores them, so a step pays nothing measurable.
#include "engine/run/watchdog.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>

#include "engine/core/check.h"
#include "engine/core/stop.h"

namespace mt {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr uint32_t kProbe = 1, kAnswer = 2;

// One datagram: the job's token, probe or answer, and the sender's host (its index in hosts_).
struct Datagram {
  uint64_t token;
  uint32_t kind;
  uint32_t host;
};

// What each rank tells the others when the watchdog starts (its first rank's entry counts per host).
struct Entry {
  uint64_t token;    // rank 0's is the job's
  uint32_t address;  // IPv4 of this host's name, network order; 0: cannot be probed
  uint32_t port;     // network order; 0: no socket
};

// The IPv4 address that `host` resolves to, network order; 0 for none or a loopback address (which
// another host cannot reach: Debian maps its own name to 127.0.1.1).
uint32_t own_address(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) return 0;
  const uint32_t a = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr.s_addr;
  ::freeaddrinfo(res);
  return (ntohl(a) >> 24) == 127 ? 0 : a;
}

}  // namespace

Watchdog::Watchdog(double limit_s, const ProcessGrid& grid, const char* what)
    : limit_s_(limit_s), rank_(grid.world_rank), what_(what) {
  last_ns_ = now_ns();
  if (limit_s_ <= 0) return;
  MT_CHECK(::pipe2(wake_, O_CLOEXEC) == 0, "the watchdog's pipe: ", std::strerror(errno));
  open_probes(grid);
  thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
  if (thread_.joinable()) {
    const char c = 0;
    while (::write(wake_[1], &c, 1) != 1 && errno == EINTR) {
    }
    thread_.join();
  }
  for (int fd : {sock_, wake_[0], wake_[1]})
    if (fd >= 0) ::close(fd);
}

void Watchdog::progress(int64_t step) {
  step_.store(step, std::memory_order_relaxed);
  last_ns_.store(now_ns(), std::memory_order_release);
}

void Watchdog::open_probes(const ProcessGrid& grid) {
  for (auto& h : ranks_by_host(grid.hosts)) hosts_.push_back({h.host, h.ranks});
  if (hosts_.empty()) return;
  for (size_t i = 0; i < hosts_.size(); ++i)
    if (hosts_[i].name == grid.hosts[rank_]) mine_ = i;
  first_ = hosts_[mine_].ranks.front() == rank_;
  if (hosts_.size() < 2) return;  // one host: nothing to ask (every rank sees the same hosts)
  Entry me{0, 0, 0};
  if (rank_ == 0) me.token = std::random_device{}() * 0x100000001ull ^ uint64_t(now_ns());
  if (first_) {
    sock_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof(any);
    if (sock_ >= 0 && ::bind(sock_, reinterpret_cast<sockaddr*>(&any), sizeof(any)) == 0 &&
        ::getsockname(sock_, reinterpret_cast<sockaddr*>(&any), &len) == 0) {
      me.port = any.sin_port;
      me.address = own_address(hosts_[mine_].name);
    }
  }
  std::vector<Entry> all(size_t(grid.world_size));
  grid.world().allgather(&me, all.data(), sizeof(Entry), DType::U8, MemSpace::Host);
  token_ = all[0].token;
  for (auto& h : hosts_) {
    const Entry& e = all[size_t(h.ranks.front())];
    h.addr.sin_family = AF_INET;
    h.addr.sin_addr.s_addr = e.address;
    h.addr.sin_port = static_cast<in_port_t>(e.port);
    h.probed = e.address != 0 && e.port != 0;
  }
}

void Watchdog::send(const Host& to, uint32_t kind) {
  const Datagram d{token_, kind, uint32_t(mine_)};
  (void)::sendto(sock_, &d, sizeof(d), 0, reinterpret_cast<const sockaddr*>(&to.addr), sizeof(to.addr));
}

bool Watchdog::serve(double seconds) {
  const int64_t end = now_ns() + int64_t(seconds * 1e9);
  for (;;) {
    const int64_t left_ms = (end - now_ns()) / 1000000;
    pollfd fds[2] = {{wake_[0], POLLIN, 0}, {sock_, POLLIN, 0}};
    const int n = ::poll(fds, sock_ >= 0 ? 2 : 1, int(std::max<int64_t>(left_ms, 0)));
    if (n > 0 && (fds[0].revents & POLLIN)) return false;
    if (n > 0 && (fds[1].revents & POLLIN)) {
      Datagram d{};
      sockaddr_in from{};
      socklen_t len = sizeof(from);
      while (::recvfrom(sock_, &d, sizeof(d), 0, reinterpret_cast<sockaddr*>(&from), &len) == sizeof(d)) {
        if (d.token == token_ && d.kind == kProbe) {
          const Datagram a{token_, kAnswer, uint32_t(mine_)};
          (void)::sendto(sock_, &a, sizeof(a), 0, reinterpret_cast<sockaddr*>(&from), len);
        } else if (d.token == token_ && d.kind == kAnswer && d.host < hosts_.size()) {
          hosts_[d.host].answered = true;
        }
        len = sizeof(from);
      }
    }
    if (left_ms <= 0) return true;
  }
}

void Watchdog::watch() {
  // Checks ten times per limit, at least once a second.
  const double tick = std::min(1.0, limit_s_ / 10);
  while (serve(tick)) {
    if (double(now_ns() - last_ns_.load(std::memory_order_acquire)) * 1e-9 >= limit_s_) return fire();
  }
}

std::string Watchdog::verdict() const {
  if (hosts_.size() < 2) return "a rank hangs or is stopped";
  if (!first_) return "a rank hangs or is stopped, or a node is lost";
  std::string lost, unknown;
  for (size_t i = 0; i < hosts_.size(); ++i) {
    const Host& h = hosts_[i];
    if (i == mine_ || h.answered) continue;
    std::string& to = h.probed ? lost : unknown;
    to += str(to.empty() ? "" : ", ", h.name, " (", rank_list(h.ranks), ")");
  }
  std::string v = lost.empty() ? str("all ", hosts_.size(), " nodes answer: a rank hangs or is stopped")
                               : str("no answer within ", kProbeS, " s from ", lost, ": down, cut off or stopped");
  if (!unknown.empty()) v += str(" (not asked: ", unknown, ", whose host name gives no address of its own)");
  return v;
}

void Watchdog::fire() {
  const double idle = double(now_ns() - last_ns_.load(std::memory_order_acquire)) * 1e-9;
  const long long step = static_cast<long long>(step_.load(std::memory_order_relaxed));
  // The first rank of each host asks the others (three tries); the first rank of the first host that
  // answers (or of its own, when none before it does) reports.
  bool report = first_;
  if (first_ && sock_ >= 0 && hosts_.size() > 1) {
    for (auto& h : hosts_) h.answered = false;
    for (int round = 0; round < 3; ++round) {
      bool all = true;
      for (size_t i = 0; i < hosts_.size(); ++i) {
        if (i == mine_ || !hosts_[i].probed || hosts_[i].answered) continue;
        send(hosts_[i], kProbe);
        all = false;
      }
      if (all) break;
      if (!serve(kProbeS / 3)) return;
    }
    for (size_t i = 0; i < mine_; ++i) report = report && !hosts_[i].answered;
  }
  // The others keep answering until the launcher ends them: it sends SIGTERM (then SIGKILL) once the
  // reporting rank has exited, and a rank that sees that SIGTERM ends without a second line. One still
  // running after kGraceS reports too (its host's first rank may be the one that is stopped).
  if (!report) {
    const bool stop_before = stop_requested();
    for (int i = 0; i < int(kGraceS * 10); ++i) {
      if (!serve(0.1)) return;
      if (!stop_before && stop_requested()) ::_exit(124);
    }
  }
  std::fprintf(stderr,
               "moetrain: error: watchdog: rank %d finished nothing for %.0f s after step %lld (limit %s = %g s) on "
               "%s: %s; aborting the job (raise %s if a step, evaluation or checkpoint really takes this long; 0 "
               "turns the watchdog off)\n",
               rank_, idle, step, what_, limit_s_, hosts_.empty() ? "?" : hosts_[mine_].name.c_str(),
               verdict().c_str(), what_);
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(124);
}

}  // namespace mt
