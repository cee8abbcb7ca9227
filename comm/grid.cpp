// Why: builds the tp x ep x dp process grid of DESIGN.md "Parallelism" from MPI_COMM_WORLD, and keeps
// single-process runs free of MPI: without a launcher's environment MPI is never initialised and every
// group is a SelfComm.
#include "comm/grid.h"

#include <mpi.h>

#include <cstdlib>

#include "comm/mpi_comm.h"
#include "engine/core/check.h"

namespace mt {

std::string ProcessGrid::describe() const {
  return str("world ", world_size, " = tp ", tp_size, " x dp ", dp_size, " (ep ", ep_size, ")");
}

bool launched_by_mpi() {
  // Open MPI's mpirun, PMI (MPICH hydra, Intel MPI, srun --mpi=pmi2), PMIx (srun --mpi=pmix, prterun).
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(var)) return true;
  // A Slurm job step of several tasks (set by srun, not in the batch script itself).
  const char* tasks = std::getenv("SLURM_STEP_NUM_TASKS");
  return tasks && std::atoi(tasks) > 1;
}

int init_distributed() {
  if (!launched_by_mpi()) return 1;
  // srun without an MPI plugin starts N copies that each think they are alone (or, with Open MPI, abort
  // with a page of text): none of the PMI / PMIx / mpirun variables is set.
  const bool pmi = std::getenv("PMIX_RANK") || std::getenv("PMI_RANK") || std::getenv("OMPI_COMM_WORLD_RANK");
  MT_INPUT(pmi, "srun started ", std::getenv("SLURM_STEP_NUM_TASKS"),
           " tasks without PMI (no PMIX_RANK / PMI_RANK in the environment), so they cannot form one MPI job: "
           "run them with `srun --mpi=pmix` (Debian's and most Open MPI builds; see `srun --mpi=list`), or set "
           "MpiDefault=pmix in slurm.conf");
  int initialized = 0, finalized = 0;
  MT_MPI_CHECK(MPI_Initialized(&initialized));
  MT_MPI_CHECK(MPI_Finalized(&finalized));
  MT_CHECK(!finalized, "init_distributed after MPI_Finalize");
  if (!initialized) {
    // FUNNELED: OpenMP threads compute, only the main thread calls MPI.
    int provided = 0;
    MT_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    MT_CHECK(provided >= MPI_THREAD_FUNNELED, "the MPI library gives thread level ", provided,
             "; moetrain needs MPI_THREAD_FUNNELED");
  }
  int size = 1;
  MT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  return size;
}

namespace {

// The group of this rank among the ranks of `parent` with the same color, ordered by key. Groups of
// one rank need no MPI (and every rank agrees on the size, so either all ranks split or none does).
std::unique_ptr<Comm> group(MPI_Comm parent, int size, int color, int key, const char* label,
                            Device& device) {
  if (size == 1) return make_self_comm(device);
  MPI_Comm comm = MPI_COMM_NULL;
  MT_MPI_CHECK(MPI_Comm_split(parent, color, key, &comm));
  auto c = make_mpi_comm(comm, device, label);
  MT_CHECK(c->rank() == key && c->size() == size, c->describe(), ": expected rank ", key, " of ", size);
  return c;
}

}  // namespace

std::unique_ptr<ProcessGrid> make_grid(int tp, int ep, Device& device) {
  MT_INPUT(tp >= 1, "parallel.tp = ", tp, " must be at least 1");
  MT_INPUT(ep >= 1, "parallel.ep = ", ep, " must be at least 1");
  const int world = init_distributed();
  MT_INPUT(world % tp == 0, "parallel.tp = ", tp, " does not divide the world size ", world,
           " (world = tp x dp)");
  const int dp = world / tp;
  MT_INPUT(dp % ep == 0, "parallel.ep = ", ep, " does not divide dp = ", dp, " (world size ", world,
           " / parallel.tp ", tp, ")");

  auto g = std::make_unique<ProcessGrid>();
  g->world_size = world;
  g->tp_size = tp;
  g->dp_size = dp;
  g->ep_size = ep;
  g->edp_size = dp / ep;
  if (world == 1) {
    for (auto* c : {&g->world_, &g->tp_, &g->dp_, &g->ep_, &g->edp_}) *c = make_self_comm(device);
    return g;
  }

  int w = 0;
  MT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w));
  g->world_rank = w;
  g->tp_rank = w % tp;
  g->dp_rank = w / tp;
  g->ep_rank = g->dp_rank % ep;
  g->edp_rank = g->dp_rank / ep;

  // The job's own duplicate of the world, returning errors; the groups are split from it.
  MPI_Comm world_comm = MPI_COMM_NULL;
  MT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world_comm));
  g->world_ = make_mpi_comm(world_comm, device, "world");
  g->tp_ = group(world_comm, tp, g->dp_rank, g->tp_rank, "tp group", device);
  g->dp_ = group(world_comm, dp, g->tp_rank, g->dp_rank, "dp group", device);
  g->ep_ = group(world_comm, ep, (g->dp_rank / ep) * tp + g->tp_rank, g->ep_rank, "ep group", device);
  g->edp_ = group(world_comm, dp / ep, g->ep_rank * tp + g->tp_rank, g->edp_rank, "edp group", device);
  return g;
}

}  // namespace mt
