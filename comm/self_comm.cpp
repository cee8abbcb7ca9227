// Why: the communicator of a single rank, so that a single-process run takes the same code path as a
// distributed one without MPI: sums are the identity and every gather or exchange is a copy (through
// the Device for device buffers).
#include <cstring>

#include "comm/comm.h"
#include "engine/core/check.h"

namespace mt {
namespace {

class DoneRequest final : public CommRequest {
 public:
  void wait() override {}
};

class SelfComm final : public Comm {
 public:
  explicit SelfComm(Device& device) : device_(device) {}

  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override { return "self (1 rank)"; }

  void allreduce_sum(void*, size_t, DType, MemSpace) override {}

  std::unique_ptr<CommRequest> iallreduce_sum(void*, size_t, DType, MemSpace) override {
    return std::make_unique<DoneRequest>();
  }

  void allgather(const void* send, void* recv, size_t count, DType dtype, MemSpace space) override {
    copy(recv, send, count * dtype_size(dtype), space);
  }

  void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype,
                          MemSpace space) override {
    copy(recv, send, count * dtype_size(dtype), space);
  }

  void alltoallv(const void* send, const size_t* send_counts, const size_t* send_displs, void* recv,
                 const size_t* recv_counts, const size_t* recv_displs, DType dtype,
                 MemSpace space) override {
    MT_CHECK(send_counts[0] == recv_counts[0], "alltoallv on one rank sends ", send_counts[0],
             " elements to itself but expects ", recv_counts[0]);
    const size_t es = dtype_size(dtype);
    copy(static_cast<char*>(recv) + recv_displs[0] * es,
         static_cast<const char*>(send) + send_displs[0] * es, send_counts[0] * es, space);
  }

  void alltoall_host(const void* send, void* recv, size_t count, DType dtype) override {
    copy(recv, send, count * dtype_size(dtype), MemSpace::Host);
  }

  void broadcast(void*, size_t, DType, int root, MemSpace) override {
    MT_CHECK(root == 0, "broadcast root ", root, " on a communicator of one rank");
  }

  void barrier() override {}

 private:
  void copy(void* dst, const void* src, size_t bytes, MemSpace space) {
    if (dst == src || bytes == 0) return;
    if (space == MemSpace::Host)
      std::memmove(dst, src, bytes);
    else
      device_.copy(dst, src, bytes, CopyKind::DeviceToDevice);
  }

  Device& device_;
};

}  // namespace

std::unique_ptr<Comm> make_self_comm(Device& device) { return std::make_unique<SelfComm>(device); }

}  // namespace mt
