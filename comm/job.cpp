// Why: see job.h. The node's ranks come from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), which knows the
// hosts whatever the launcher (mpirun, srun) and its environment.
#include "comm/job.h"

#include <mpi.h>

#include <climits>
#include <cstdlib>

#include "engine/core/check.h"

namespace mt {

namespace {

bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

// The ranks of this node; the caller frees it.
MPI_Comm node_comm() {
  MPI_Comm node = MPI_COMM_NULL;
  MT_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  return node;
}

}  // namespace

JobPlace job_place() {
  JobPlace p;
  p.in_job = mpi_running();
  if (p.in_job) {
    MPI_Comm_size(MPI_COMM_WORLD, &p.size);
    MPI_Comm_rank(MPI_COMM_WORLD, &p.rank);
  }
  return p;
}

void exit_job(int code) {
  const JobPlace p = job_place();
  if (p.in_job && p.size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  if (p.in_job) MPI_Finalize();
  std::exit(code);
}

void finalize_job() {
  if (mpi_running()) MPI_Finalize();
}

NodePlace node_place() {
  NodePlace p;
  if (!mpi_running()) return p;
  MPI_Comm node = node_comm();
  MT_MPI_CHECK(MPI_Comm_rank(node, &p.rank));
  MT_MPI_CHECK(MPI_Comm_size(node, &p.size));
  MT_MPI_CHECK(MPI_Comm_free(&node));
  return p;
}

std::vector<unsigned char> gather_bytes_on_node(const void* mine, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(mine);
  if (!mpi_running()) return std::vector<unsigned char>(p, p + bytes);
  MT_CHECK(bytes <= size_t(INT_MAX), "gather_bytes_on_node of ", bytes, " bytes");
  MPI_Comm node = node_comm();
  int n = 1;
  MT_MPI_CHECK(MPI_Comm_size(node, &n));
  std::vector<unsigned char> all(size_t(n) * bytes);
  MT_MPI_CHECK(MPI_Allgather(mine, int(bytes), MPI_BYTE, all.data(), int(bytes), MPI_BYTE, node));
  MT_MPI_CHECK(MPI_Comm_free(&node));
  return all;
}

}  // namespace mt
