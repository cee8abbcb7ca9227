// Why: see threads.h: one thread count per process from its affinity mask and the processes sharing it.
#include "engine/cpu/threads.h"

#include <cblas.h>
#include <dirent.h>
#include <fcntl.h>
#include <omp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "comm/job.h"
#include "engine/core/check.h"

namespace mt::cpu {

namespace {

constexpr const char* kLive = ".live";  // a registered process's file; ".tmp" while it is being made

// This process's CPUs; all online CPUs when the mask cannot be read.
cpu_set_t affinity_mask() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof mask, &mask) == 0 && CPU_COUNT(&mask) > 0) return mask;
  CPU_ZERO(&mask);
  const long online = std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
  for (long c = 0; c < online && c < CPU_SETSIZE; ++c) CPU_SET(int(c), &mask);
  return mask;
}

bool overlap(const cpu_set_t& a, const cpu_set_t& b) {
  cpu_set_t both;
  CPU_AND(&both, &a, &b);
  return CPU_COUNT(&both) > 0;
}

// Number of ranks on this node whose CPU sets overlap `mine` (this rank included): collective over the
// job (comm/job.h).
int ranks_sharing(const cpu_set_t& mine) {
  int sharing = 0;
  for (const cpu_set_t& other : gather_on_node(mine)) sharing += overlap(mine, other);
  return std::max(1, sharing);
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

// ---- registry ---------------------------------------------------------------------------------------------

std::string CoreRegistry::default_dir() {
  if (const char* env = std::getenv("MOETRAIN_CORE_REGISTRY"); env && *env)
    return std::string(env) == "off" ? std::string() : std::string(env);
  const std::string name = "moetrain-cores-" + std::to_string(::getuid());
  struct stat st {};
  if (::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK) == 0) return "/dev/shm/" + name;
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/tmp") + "/" + name;
}

CoreRegistry::CoreRegistry(const std::string& dir, const cpu_set_t& mask) : dir_(dir), mask_(mask) {
  if (dir_.empty()) return;
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) return;
  std::random_device rd;
  const std::string stem = std::to_string(::getpid()) + "-" + std::to_string(rd());
  const std::string tmp = dir_ + "/" + stem + ".tmp";
  const int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return;
  const bool ok = ::flock(fd, LOCK_EX | LOCK_NB) == 0 &&
                  ::write(fd, &mask_, sizeof mask_) == ssize_t(sizeof mask_) &&
                  ::rename(tmp.c_str(), (dir_ + "/" + stem + kLive).c_str()) == 0;
  if (!ok) {
    ::unlink(tmp.c_str());
    ::close(fd);
    return;
  }
  fd_ = fd;
  file_ = stem + kLive;
}

CoreRegistry::~CoreRegistry() {
  if (fd_ < 0) return;
  ::unlink((dir_ + "/" + file_).c_str());
  ::close(fd_);
}

int CoreRegistry::sharing() const {
  if (fd_ < 0) return 1;
  DIR* d = ::opendir(dir_.c_str());
  if (!d) return 1;
  int n = 1;  // this process
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == file_ || !ends_with(name, kLive)) continue;
    const std::string path = dir_ + "/" + name;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // removed since the listing
    if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {
      ::unlink(path.c_str());  // its process has ended: nobody holds the lock
    } else {
      cpu_set_t other;
      CPU_ZERO(&other);
      if (::pread(fd, &other, sizeof other, 0) == ssize_t(sizeof other) && overlap(mask_, other)) ++n;
    }
    ::close(fd);
  }
  ::closedir(d);
  return n;
}

// ---- thread count -----------------------------------------------------------------------------------------

int launcher_local_size() {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE"}) {
    const char* v = std::getenv(var);
    if (v && std::atoi(v) > 0) return std::atoi(v);
  }
  return 0;
}

CpuThreads::CpuThreads(const std::string& registry_dir)
    : mask_(affinity_mask()), cores_(std::max(1, CPU_COUNT(&mask_))), registry_(registry_dir, mask_) {
  if (job_place().in_job) {
    job_sharing_ = ranks_sharing(mask_);  // collective; every rank registered before it
  } else if (const int local = launcher_local_size(); local > 1 && cores_ >= sysconf(_SC_NPROCESSORS_ONLN)) {
    job_sharing_ = local;
  }
  const char* env = std::getenv("OMP_NUM_THREADS");
  fixed_ = env && *env;
  sharing_ = std::max(job_sharing_, registry_.sharing());
  threads_ = fixed_ ? omp_get_max_threads() : std::max(1, cores_ / sharing_);
  if (!fixed_) omp_set_num_threads(threads_);
  openblas_set_num_threads(threads_);
}

bool CpuThreads::rebalance(std::chrono::milliseconds every) {
  if (fixed_ || !registry_.active()) return false;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_check_) return false;
  next_check_ = now + every;
  const int before = threads_;
  sharing_ = std::max(job_sharing_, registry_.sharing());
  threads_ = std::max(1, cores_ / sharing_);
  if (threads_ == before) return false;
  omp_set_num_threads(threads_);
  openblas_set_num_threads(threads_);
  return true;
}

std::string CpuThreads::describe() const {
  return str(threads_, threads_ == 1 ? " thread" : " threads", " (", cores_, cores_ == 1 ? " core" : " cores", ", ",
             sharing_, sharing_ == 1 ? " process" : " processes", ": ",
             fixed_ ? "OMP_NUM_THREADS" : "cores / processes", ")");
}

}  // namespace mt::cpu
