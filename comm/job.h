// Why: only comm/ talks MPI. What the rest of the program needs to know about the MPI job it runs in
// (its rank, the ranks on its own node) and how it ends (an error aborts every rank, a normal end
// finalises) is asked here, so that app/, engine/cpu and cuda/ never include <mpi.h>.
#pragma once

#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

namespace mt {

// This process in its MPI job: in_job while MPI is initialised and not yet finalised; then rank and
// size in MPI_COMM_WORLD, else rank 0 of 1.
struct JobPlace {
  bool in_job = false;
  int rank = 0, size = 1;
};
JobPlace job_place();

// Ends the process with `code` after an error: in a job of several ranks MPI_Abort ends every rank (a
// peer left waiting in a collective would hang); in a job of one, MPI is finalised first. Never throws.
[[noreturn]] void exit_job(int code);

// The normal end of a process: MPI_Finalize when MPI is initialised and not yet finalised.
void finalize_job();

// This rank among the ranks of its node (MPI_COMM_TYPE_SHARED: those that can share memory): its local
// rank and their count. Collective over MPI_COMM_WORLD while in a job; rank 0 of 1 otherwise.
struct NodePlace {
  int rank = 0, size = 1;
};
NodePlace node_place();

// `bytes` bytes from every rank of this node, in local-rank order. Collective over MPI_COMM_WORLD while
// in a job; this rank's alone otherwise.
std::vector<unsigned char> gather_bytes_on_node(const void* mine, size_t bytes);

// `mine` (a plain value: an affinity mask, a count) from every rank of this node, in local-rank order.
template <typename X>
std::vector<X> gather_on_node(const X& mine) {
  static_assert(std::is_trivially_copyable_v<X>, "gather_on_node moves raw bytes");
  const std::vector<unsigned char> all = gather_bytes_on_node(&mine, sizeof(X));
  std::vector<X> out(all.size() / sizeof(X));
  for (size_t i = 0; i < out.size(); ++i) std::memcpy(&out[i], all.data() + i * sizeof(X), sizeof(X));
  return out;
}

}  // namespace mt
