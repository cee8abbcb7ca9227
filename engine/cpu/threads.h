// Why: OpenMP threads that outnumber the cores spin against each other and run many times slower (two
// runs of a tiny MoE on two cores: ~100x), and neither Open MPI nor Slurm sets OMP_NUM_THREADS. So each
// process of the CPU backend divides the cores it may use among the processes that share them, unless
// the user set OMP_NUM_THREADS. Ranks of one job know each other (MPI, the launcher's local size);
// independent runs find each other in a per-machine registry of live CPU-backend processes, re-read
// between steps, so a run that started alone gives up threads when a second one starts and takes them
// back when it ends. (When a kernel's loop runs in parallel at all is the kernels' concern: parallel.h.)
#pragma once

#include <sched.h>

#include <chrono>
#include <string>

namespace mt::cpu {

// Node-local ranks from the launcher's environment (OMPI_COMM_WORLD_LOCAL_SIZE, SLURM_STEP_TASKS_PER_NODE,
// SLURM_NTASKS_PER_NODE; Slurm's "2(x3),1" form gives its first count); 0 when none is set.
int launcher_local_size();

// The CPU-backend processes alive on this machine: one file per process in a folder, holding its
// affinity mask and locked (flock) by it for its life. The kernel drops the lock when the process
// ends, however it ends, so a file whose lock another process can take is a dead process's and is
// removed by whoever finds it. A file appears under its final name only once it is locked.
class CoreRegistry {
 public:
  // Registers this process with `mask` in `dir` (created, mode 0700, if missing). An empty `dir`, or one
  // that cannot be written, leaves the registry off: sharing() is then 1.
  CoreRegistry(const std::string& dir, const cpu_set_t& mask);
  ~CoreRegistry();  // removes this process's file
  CoreRegistry(const CoreRegistry&) = delete;
  CoreRegistry& operator=(const CoreRegistry&) = delete;

  bool active() const { return fd_ >= 0; }
  // Live registered processes whose masks overlap this one's, this one included (>= 1).
  int sharing() const;
  // $MOETRAIN_CORE_REGISTRY ("off": none), else /dev/shm/moetrain-cores-UID, else TMPDIR's (or /tmp's).
  static std::string default_dir();

 private:
  std::string dir_;
  std::string file_;  // this process's file name in dir_
  int fd_ = -1;       // open and locked while this process lives
  cpu_set_t mask_;
};

// This process's OpenMP (and OpenBLAS) thread count.
class CpuThreads {
 public:
  // Registers the process, chooses the count and sets it (omp_set_num_threads, openblas_set_num_threads).
  // OMP_NUM_THREADS set: that count is kept for the whole run (and the process still counts for others).
  // Else cores in the affinity mask / processes sharing them, the largest of: ranks of this node whose
  // masks overlap (comm/job.h, in an MPI job: collective, call on every rank), the
  // launcher's local size (without MPI, when the mask is the whole machine), the registry's count.
  explicit CpuThreads(const std::string& registry_dir = CoreRegistry::default_dir());
  CpuThreads(const CpuThreads&) = delete;
  CpuThreads& operator=(const CpuThreads&) = delete;

  int threads() const { return threads_; }
  int cores() const { return cores_; }
  int sharing() const { return sharing_; }
  std::string describe() const;  // "1 thread (2 cores, 2 processes: cores / processes)"

  // Between steps, outside any parallel region: re-reads the registry (at most once per `every`) and sets
  // the new count. Returns true when it changed. Does nothing when OMP_NUM_THREADS is set.
  bool rebalance(std::chrono::milliseconds every = std::chrono::milliseconds(1000));

 private:
  cpu_set_t mask_;         // this process's affinity mask (all online CPUs when it cannot be read)
  int cores_ = 1;          // CPUs in mask_
  CoreRegistry registry_;  // after mask_: registered with it
  int job_sharing_ = 1;  // ranks of this job sharing the cores (MPI or the launcher): a floor
  int sharing_ = 1;      // processes counted as sharing the cores (this one included)
  int threads_ = 1;
  bool fixed_ = false;   // OMP_NUM_THREADS
  std::chrono::steady_clock::time_point next_check_{};  // the first rebalance() re-reads
};

}  // namespace mt::cpu
