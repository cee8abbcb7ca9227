// Why: see threads.h: one thread count per process from its affinity mask and the ranks sharing it.
#include "engine/cpu/threads.h"

#include <cblas.h>
#include <mpi.h>
#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/core/check.h"

namespace mt::cpu {

namespace {

// Number of ranks on this node whose CPU sets overlap `mine` (this rank included): collective over the
// node's shared-memory communicator.
int ranks_sharing(const cpu_set_t& mine) {
  MPI_Comm node = MPI_COMM_NULL;
  MT_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int n = 1;
  MT_MPI_CHECK(MPI_Comm_size(node, &n));
  std::vector<cpu_set_t> all(static_cast<size_t>(n));
  MT_MPI_CHECK(MPI_Allgather(&mine, int(sizeof(cpu_set_t)), MPI_BYTE, all.data(), int(sizeof(cpu_set_t)), MPI_BYTE, node));
  MT_MPI_CHECK(MPI_Comm_free(&node));
  int sharing = 0;
  for (const cpu_set_t& other : all) {
    cpu_set_t both;
    CPU_AND(&both, &mine, &other);
    sharing += CPU_COUNT(&both) > 0;
  }
  return std::max(1, sharing);
}

}  // namespace

std::string CpuThreads::describe() const {
  return str(threads, threads == 1 ? " thread" : " threads", " (", cores, cores == 1 ? " core" : " cores", ", ",
             sharing, sharing == 1 ? " process" : " processes", ": ", source, ")");
}

int launcher_local_size() {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE"}) {
    const char* v = std::getenv(var);
    if (v && std::atoi(v) > 0) return std::atoi(v);
  }
  return 0;
}

CpuThreads configure_cpu_threads() {
  CpuThreads t;
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof mask, &mask) == 0) {
    t.cores = std::max(1, CPU_COUNT(&mask));
  } else {
    t.cores = std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
    CPU_ZERO(&mask);
    for (int c = 0; c < t.cores && c < CPU_SETSIZE; ++c) CPU_SET(c, &mask);
  }
  int mpi = 0;
  MT_MPI_CHECK(MPI_Initialized(&mpi));
  if (mpi) {
    t.sharing = ranks_sharing(mask);   // collective: every rank computes it, also with OMP_NUM_THREADS
  } else if (const int local = launcher_local_size(); local > 1 && t.cores >= sysconf(_SC_NPROCESSORS_ONLN)) {
    t.sharing = local;
  }
  if (const char* env = std::getenv("OMP_NUM_THREADS"); env && *env) {
    t.threads = omp_get_max_threads();
    t.source = "OMP_NUM_THREADS";
  } else {
    t.threads = std::max(1, t.cores / t.sharing);
    t.source = "cores / processes";
    omp_set_num_threads(t.threads);
  }
  openblas_set_num_threads(t.threads);
  return t;
}

}  // namespace mt::cpu
