// Why: `moetrain sweep --slurm`: instead of running the runs itself, the sweep writes a Slurm job array
// (one task per run, each checkpointing before its time limit and requeueing itself) and a job that
// collects the results once the array is over.
#pragma once

#include <string>
#include <vector>

#include "sweep/sweep.h"

namespace mt {

struct SlurmOptions {
  std::string moetrain;                 // the executable, absolute
  int tasks_per_run = 0;                // ranks per run; 0: one per GPU (gpus_per_run), at least one
  int cpus_per_task = 0;                // CPUs (OpenMP threads) per rank; 0: the site's default
  int gpus_per_run = 0;                 // GPUs per run (on one node); 0: a CPU job
  std::string srun_mpi = "pmix";        // srun --mpi=...; "": the site's MpiDefault
  int signal_lead_s = 120;              // USR1 this long before the time limit: checkpoint and requeue
  int max_parallel = 0;                 // array throttle (%N); 0: none
  std::string device = "auto";
  std::string precision = "auto";
  std::vector<std::string> sbatch_lines;  // extra "#SBATCH ..." options (partition, account, time); last, so they win
};

// scripts/slurm/train.sbatch as built in: one run under srun that checkpoints before its time limit
// and requeues itself (its header says how the signals work). `sweep --slurm` writes it to DIR/slurm/.
const char* slurm_train_script();

// DIR/sweep.sbatch: a job array with one task per run; each task runs DIR/slurm/train.sbatch on its run
// (which skips a finished run, else trains it with --resume auto, requeueing itself near the time limit).
std::string slurm_array_script(const SweepState& state, const std::string& dir, const SlurmOptions& opts);
// DIR/collect.sbatch: `moetrain sweep --collect DIR` once the array is over (submitted afterany).
std::string slurm_collect_script(const SweepState& state, const std::string& dir, const SlurmOptions& opts);

}  // namespace mt
