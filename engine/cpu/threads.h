// Why: OpenMP threads that outnumber the cores spin against each other and run many times slower (two
// runs of a tiny MoE on two cores: ~100x), and neither Open MPI nor Slurm sets OMP_NUM_THREADS. So each
// process of the CPU backend chooses its own thread count once, at start: the cores it may use divided
// among the ranks that share them, unless the user set OMP_NUM_THREADS. Also the threshold below which
// the kernels' loops run without a parallel region (starting one costs more than a tiny loop).
#pragma once

#include <cstddef>
#include <string>

namespace mt::cpu {

// Loops with at most this many elements (or rows x columns) run on the calling thread: at ~1 ns an
// element, the work is then below the few microseconds that waking the team costs.
constexpr size_t kParallelMin = size_t(1) << 14;

struct CpuThreads {
  int threads = 1;        // OpenMP (and OpenBLAS) threads of this process
  int cores = 1;          // CPUs in this process's affinity mask
  int sharing = 1;        // processes counted as sharing those cores (this one included)
  std::string source;     // how `threads` was chosen, for the log
  std::string describe() const;  // "2 threads (2 cores, 1 rank: default)"
};

// Node-local ranks from the launcher's environment (OMPI_COMM_WORLD_LOCAL_SIZE, SLURM_STEP_TASKS_PER_NODE,
// SLURM_NTASKS_PER_NODE; Slurm's "2(x3),1" form gives its first count); 0 when none is set.
int launcher_local_size();

// Chooses and sets the thread count (omp_set_num_threads, openblas_set_num_threads). OMP_NUM_THREADS set:
// it is kept. Else under MPI: the ranks of this node (MPI_COMM_TYPE_SHARED) whose affinity masks overlap
// this rank's share its cores; without MPI: the launcher's local size when the mask is the whole machine
// (a launcher that binds gives each rank its own mask). Call after MPI_Init, on every rank (collective).
CpuThreads configure_cpu_threads();

}  // namespace mt::cpu
