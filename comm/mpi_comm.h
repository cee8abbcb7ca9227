// Why: the MPI implementation of Comm, exposed for make_grid and for the MPI tests (which build it
// over a duplicate of MPI_COMM_WORLD with a small max_count to exercise the big-count paths).
#pragma once

#include <mpi.h>

#include <climits>
#include <memory>
#include <string>

#include "comm/comm.h"

namespace mt {

// A Comm over `comm`, which it takes over: MPI_ERRORS_RETURN is set on it (so that MT_MPI_CHECK turns a
// failed call into mt::Error) and the destructor frees it. `label` names the group in describe().
// MemSpace::Device buffers of a non-CPU `device` are staged through host buffers kept by the comm
// (Device::copy out, MPI, copy back); on a CPU device they are used directly. `max_count` is the
// largest element count passed to one MPI call (INT_MAX, the limit of MPI's int counts; tests make it
// small): allreduce, iallreduce, broadcast, allgather and reduce_scatter split larger counts into
// several calls; alltoallv and alltoall_host reject counts or displacements above it.
// Calls come from one thread (MPI is initialised with MPI_THREAD_FUNNELED); requests from
// iallreduce_sum must be waited for before the comm is destroyed.
std::unique_ptr<Comm> make_mpi_comm(MPI_Comm comm, Device& device, const std::string& label,
                                    size_t max_count = INT_MAX);

}  // namespace mt
