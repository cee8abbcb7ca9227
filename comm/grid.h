// Why: the process grid of DESIGN.md "Parallelism": world = tp * dp ranks, tp fastest (world rank =
// dp_rank * tp + tp_rank); ep divides dp and groups consecutive dp ranks (ep_rank = dp_rank % ep).
// Groups: tp (same dp rank), dp (same tp rank: dense gradients reduce here), ep (same tp rank, the
// same block of ep dp ranks: tokens move here), edp (same tp rank and ep rank: the replicas of the same
// experts, whose gradients reduce here). The grid is built once and passed explicitly.
#pragma once

#include <memory>
#include <string>

#include "comm/comm.h"

namespace mt {

class ProcessGrid {
 public:
  int world_rank = 0, world_size = 1;
  int tp_rank = 0, tp_size = 1;
  int dp_rank = 0, dp_size = 1;
  int ep_rank = 0, ep_size = 1;
  int edp_rank = 0, edp_size = 1;  // edp_size = dp_size / ep_size

  Comm& world() const { return *world_; }
  Comm& tp() const { return *tp_; }
  Comm& dp() const { return *dp_; }
  Comm& ep() const { return *ep_; }
  Comm& edp() const { return *edp_; }
  bool is_root() const { return world_rank == 0; }
  std::string describe() const;  // "world 8 = tp 2 x dp 4 (ep 2)"

  std::unique_ptr<Comm> world_, tp_, dp_, ep_, edp_;
};

// True when this process was started by mpirun / srun (an MPI launcher's environment is present).
bool launched_by_mpi();

// Initialises MPI when launched_by_mpi() (idempotent) and returns the world size (1 otherwise).
int init_distributed();

// Builds the grid for this process. A layout that does not fit the world size (world % tp, dp % ep)
// is an InputError naming parallel.tp / parallel.ep. Without MPI: a single-rank grid of SelfComms.
// Collectives on MemSpace::Device buffers go through `device` (staged through the host for MPI).
std::unique_ptr<ProcessGrid> make_grid(int tp, int ep, Device& device);

}  // namespace mt
