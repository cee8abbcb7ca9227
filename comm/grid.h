// Why: the process grid of DESIGN.md "Parallelism": world = tp * dp ranks, tp fastest (world rank =
// dp_rank * tp + tp_rank); ep divides dp and groups consecutive dp ranks (ep_rank = dp_rank % ep).
// Groups: tp (same dp rank), dp (same tp rank: dense gradients reduce here), ep (same tp rank, the
// same block of ep dp ranks: tokens move here), edp (same tp rank and ep rank: the replicas of the same
// experts, whose gradients reduce here). The grid is built once and passed explicitly.
// On several nodes, consecutive world ranks share a node (Slurm's block distribution, mpirun's
// --map-by slot), so a tp group lies inside a node when the ranks per node are a multiple of tp, and an ep
// group (tp x ep consecutive ranks) when they are a multiple of tp x ep; describe() says where they lie.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/comm.h"

namespace mt {

class ProcessGrid {
 public:
  int world_rank = 0, world_size = 1;
  int tp_rank = 0, tp_size = 1;
  int dp_rank = 0, dp_size = 1;
  int ep_rank = 0, ep_size = 1;
  int edp_rank = 0, edp_size = 1;  // edp_size = dp_size / ep_size
  std::vector<std::string> hosts;  // (world) the host name of each world rank
  int local_rank = 0, local_size = 1;  // among the ranks on this rank's host, in world order

  Comm& world() const { return *world_; }
  Comm& tp() const { return *tp_; }
  Comm& dp() const { return *dp_; }
  Comm& ep() const { return *ep_; }
  Comm& edp() const { return *edp_; }
  bool is_root() const { return world_rank == 0; }
  // "world 8 = tp 2 x dp 4 (ep 2)"; on several nodes followed by placement_note().
  std::string describe() const;
  // Collective over world(): each host's `mine` (e.g. this rank's thread count), as "mine" on one host
  // and "node1, node2: A; node3: B" on several (hosts with the same text together, in world order).
  std::string per_host(const std::string& mine) const;

  std::unique_ptr<Comm> world_, tp_, dp_, ep_, edp_;
};

// The hosts of a job in order of their first rank, with the world ranks on each (from ProcessGrid::hosts).
struct HostRanks {
  std::string host;
  std::vector<int> ranks;
};
std::vector<HostRanks> ranks_by_host(const std::vector<std::string>& hosts);

// "rank 3", "ranks 0-3" (consecutive) or "ranks 0,2,4".
std::string rank_list(const std::vector<int>& ranks);

// Where the ranks and groups of a tp x ep grid lie on the nodes of `hosts` (the host of each world rank):
// "on 2 nodes (node1: ranks 0-1, node2: ranks 2-3); tp, ep groups inside a node", or for groups that
// cross nodes "; ep groups span nodes (ranks 0,1 on node1, node2): their all-to-all crosses the network".
// "" on one node.
std::string placement_note(const std::vector<std::string>& hosts, int tp, int ep);

// True when this process was started by mpirun / srun (an MPI launcher's environment is present).
bool launched_by_mpi();

// Initialises MPI when launched_by_mpi() (idempotent) and returns the world size (1 otherwise).
int init_distributed();

// Builds the grid for this process. A layout that does not fit the world size (world % tp, dp % ep)
// is an InputError naming parallel.tp / parallel.ep. Without MPI: a single-rank grid of SelfComms.
// Collectives on MemSpace::Device buffers go through `device` (staged through the host for MPI).
std::unique_ptr<ProcessGrid> make_grid(int tp, int ep, Device& device);

}  // namespace mt
