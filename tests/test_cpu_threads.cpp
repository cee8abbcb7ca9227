// Why: independent CPU runs on one machine find each other through the core registry and divide the
// cores (engine/cpu/threads.h). Other processes here are real ones (fork): a live one holds its lock, a
// killed one (no destructor, no cleanup) must stop counting and lose its file.
#include <catch2/catch.hpp>

#include <omp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/cpu/threads.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using mt::cpu::CoreRegistry;
using mt::cpu::CpuThreads;

namespace {

cpu_set_t cpus(std::initializer_list<int> ids) {
  cpu_set_t m;
  CPU_ZERO(&m);
  for (int c : ids) CPU_SET(c, &m);
  return m;
}

cpu_set_t all_cpus() {
  cpu_set_t m;
  CPU_ZERO(&m);
  for (int c = 0; c < CPU_SETSIZE; ++c) CPU_SET(c, &m);
  return m;
}

// A child process registered in `dir` with `mask` until killed. The constructor returns once it is.
struct OtherProcess {
  pid_t pid = -1;
  OtherProcess(const std::string& dir, const cpu_set_t& mask) {
    int p[2];
    REQUIRE(::pipe(p) == 0);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(p[0]);
      CoreRegistry r(dir, mask);
      const char ok = r.active() ? 'y' : 'n';
      if (::write(p[1], &ok, 1) != 1) ::_exit(1);
      for (;;) ::pause();
    }
    ::close(p[1]);
    char ok = 0;
    REQUIRE(::read(p[0], &ok, 1) == 1);
    ::close(p[0]);
    REQUIRE(ok == 'y');
  }
  void kill() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
  ~OtherProcess() { kill(); }
};

size_t live_files(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().extension() == ".live";
  return n;
}

// Unsets OMP_NUM_THREADS (ctest sets it) for one test and restores it and the thread count after.
struct NoOmpEnv {
  std::string saved;
  bool had;
  int threads = omp_get_max_threads();
  NoOmpEnv() {
    const char* v = std::getenv("OMP_NUM_THREADS");
    had = v != nullptr;
    if (had) saved = v;
    ::unsetenv("OMP_NUM_THREADS");
  }
  ~NoOmpEnv() {
    if (had) ::setenv("OMP_NUM_THREADS", saved.c_str(), 1);
    omp_set_num_threads(threads);
  }
};

}  // namespace

TEST_CASE("core registry: live processes with overlapping masks count, killed ones stop counting", "[threads]") {
  const std::string dir = mt::test::scratch_dir("core_registry") + "/reg";
  CoreRegistry self(dir, cpus({0, 1}));
  REQUIRE(self.active());
  CHECK(self.sharing() == 1);

  OtherProcess overlapping(dir, cpus({1, 2}));
  OtherProcess disjoint(dir, cpus({5}));
  CHECK(self.sharing() == 2);  // the disjoint one uses other cores
  OtherProcess everywhere(dir, all_cpus());
  CHECK(self.sharing() == 3);
  CHECK(live_files(dir) == 4);

  overlapping.kill();  // SIGKILL: its file stays until someone finds its lock free
  CHECK(self.sharing() == 2);
  CHECK(live_files(dir) == 3);
  // A leftover file nobody holds (a process killed before the lock existed cannot leave one, but an
  // old machine state can): not counted, removed.
  const cpu_set_t stale = cpus({0});
  std::ofstream(dir + "/12345-1.live", std::ios::binary).write(reinterpret_cast<const char*>(&stale), sizeof stale);
  CHECK(self.sharing() == 2);
  CHECK(live_files(dir) == 3);
}

TEST_CASE("core registry: a process's file goes with it, and an empty folder name turns it off", "[threads]") {
  const std::string dir = mt::test::scratch_dir("core_registry_off") + "/reg";
  {
    CoreRegistry a(dir, cpus({0}));
    CoreRegistry b(dir, cpus({0}));
    CHECK(a.sharing() == 2);
    CHECK(live_files(dir) == 2);
  }
  CHECK(live_files(dir) == 0);
  CoreRegistry off("", cpus({0}));
  CHECK_FALSE(off.active());
  CHECK(off.sharing() == 1);
  // A folder that cannot be made: off, not an error.
  CoreRegistry bad("/proc/no/such/dir", cpus({0}));
  CHECK_FALSE(bad.active());
}

TEST_CASE("cpu threads: a run gives up cores when another starts and takes them back when it ends", "[threads]") {
  NoOmpEnv env;
  const std::string dir = mt::test::scratch_dir("core_registry_threads") + "/reg";
  CpuThreads t(dir);
  const int cores = t.cores();
  CHECK(t.sharing() == 1);
  CHECK(t.threads() == cores);
  CHECK(omp_get_max_threads() == cores);
  {
    OtherProcess other(dir, all_cpus());
    CHECK(t.rebalance(std::chrono::milliseconds(0)) == (cores >= 2));
    CHECK(t.sharing() == 2);
    CHECK(t.threads() == std::max(1, cores / 2));
    CHECK(omp_get_max_threads() == t.threads());
    CHECK(t.describe().find("2 processes: cores / processes") != std::string::npos);
    other.kill();
    CHECK(t.rebalance(std::chrono::hours(1)) == (cores >= 2));  // re-read now, next in an hour
    CHECK(t.sharing() == 1);
    CHECK(t.threads() == cores);
  }
  OtherProcess late(dir, all_cpus());
  CHECK_FALSE(t.rebalance(std::chrono::milliseconds(0)));  // within the hour: not re-read
  CHECK(t.sharing() == 1);
}

TEST_CASE("cpu threads: OMP_NUM_THREADS is kept whatever else runs", "[threads]") {
  NoOmpEnv env;
  ::setenv("OMP_NUM_THREADS", "1", 1);
  omp_set_num_threads(1);
  const std::string dir = mt::test::scratch_dir("core_registry_fixed") + "/reg";
  OtherProcess other(dir, all_cpus());
  CpuThreads t(dir);
  CHECK(t.threads() == 1);
  CHECK(t.sharing() == 2);
  CHECK_FALSE(t.rebalance(std::chrono::milliseconds(0)));
  CHECK(t.describe().find("OMP_NUM_THREADS") != std::string::npos);
}
