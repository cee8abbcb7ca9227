// Why: every collective the engine needs, behind one interface, so that the model and the trainer
// never touch MPI or NCCL directly. Implementations: SelfComm (one rank, copies), MpiComm (host memory
// through MPI; device memory staged through the host), and NcclComm (device memory, in cuda/).
// Counts are in elements of `dtype`; buffers live in `space` (host or the device the comm was made
// for). The grid of groups (tp x ep x dp) is built in comm/grid.h and passed explicitly: no globals.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/device.h"
#include "engine/core/dtype.h"

namespace mt {

// A non-blocking operation in flight; wait() completes it (and copies staged data back).
class CommRequest {
 public:
  virtual ~CommRequest() = default;
  virtual void wait() = 0;
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string describe() const = 0;  // e.g. "mpi tp group 1/2"

  // In place: buf (count) = sum over ranks.
  virtual void allreduce_sum(void* buf, size_t count, DType dtype, MemSpace space) = 0;
  // Started now, completed by wait(); buf must stay untouched until then.
  virtual std::unique_ptr<CommRequest> iallreduce_sum(void* buf, size_t count, DType dtype,
                                                      MemSpace space) = 0;
  // recv (size * count) = the send (count) of every rank, in rank order.
  virtual void allgather(const void* send, void* recv, size_t count, DType dtype, MemSpace space) = 0;
  // send (size * count): rank r receives into recv (count) the sum over ranks of block r.
  virtual void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype,
                                  MemSpace space) = 0;
  // Every rank sends send_counts[j] elements starting at send_displs[j] to rank j and receives
  // recv_counts[j] elements from rank j at recv_displs[j] (all host arrays of size()).
  virtual void alltoallv(const void* send, const size_t* send_counts, const size_t* send_displs, void* recv,
                         const size_t* recv_counts, const size_t* recv_displs, DType dtype,
                         MemSpace space) = 0;
  // Host only: every rank sends `count` elements to each rank (send and recv hold size * count).
  virtual void alltoall_host(const void* send, void* recv, size_t count, DType dtype) = 0;
  virtual void broadcast(void* buf, size_t count, DType dtype, int root, MemSpace space) = 0;
  virtual void barrier() = 0;
};

// The communicator of a single rank: every collective is the identity (or a copy).
std::unique_ptr<Comm> make_self_comm(Device& device);

}  // namespace mt
