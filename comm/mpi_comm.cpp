// Why: collectives over MPI for CPU tensors, and for GPU tensors staged through the host (so that
// several ranks sharing one GPU can run through MPI in tests). MPI counts are int: counts above
// max_count are split into several calls, and every failed call becomes an mt::Error (MPI_ERRORS_RETURN
// + MT_MPI_CHECK), which main turns into MPI_Abort of the whole job.
#include "comm/mpi_comm.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "engine/core/check.h"

namespace mt {
namespace {

// The MPI type that moves elements of `t`; bf16 moves as opaque 16-bit words.
MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::BF16: return MPI_UINT16_T;
    case DType::I32: return MPI_INT32_T;
    case DType::I64: return MPI_INT64_T;
    case DType::U8: return MPI_UINT8_T;
  }
  MT_CHECK(false, "unknown dtype ", int(t));
  return MPI_DATATYPE_NULL;
}

// The MPI type for a sum of `t`: MPI has no bf16 arithmetic.
MPI_Datatype sum_type(DType t) {
  MT_CHECK(t != DType::BF16, "MPI cannot sum bf16 buffers: reduce them in fp32");
  return mpi_type(t);
}

// Grow-only host memory for staging device buffers (its content is not kept when it grows).
class HostBuffer {
 public:
  char* get(size_t bytes) {
    if (bytes > capacity_) {
      data_.reset();
      data_.reset(new char[bytes]);
      capacity_ = bytes;
    }
    return data_.get();
  }
  size_t capacity() const { return capacity_; }

 private:
  std::unique_ptr<char[]> data_;
  size_t capacity_ = 0;
};

class MpiComm;

// An iallreduce in flight: its MPI requests (one per chunk) and, for a staged device buffer, the host
// buffer that MPI reduces into, copied back to the device by wait().
class MpiRequest final : public CommRequest {
 public:
  MpiRequest(MpiComm& owner, std::unique_ptr<HostBuffer> stage, void* device_dst, size_t bytes)
      : owner_(owner), stage_(std::move(stage)), device_dst_(device_dst), bytes_(bytes) {}
  // Dropped without wait(): only while an error unwinds towards MPI_Abort. MPI may still write into
  // the staging buffer, so it is abandoned rather than freed.
  ~MpiRequest() override {
    if (!done_) (void)stage_.release();
  }
  MpiRequest(const MpiRequest&) = delete;
  MpiRequest& operator=(const MpiRequest&) = delete;

  std::vector<MPI_Request> requests;
  void wait() override;

 private:
  MpiComm& owner_;
  std::unique_ptr<HostBuffer> stage_;
  void* device_dst_;
  size_t bytes_;
  bool done_ = false;
};

class MpiComm final : public Comm {
 public:
  MpiComm(MPI_Comm comm, Device& device, std::string label, size_t max_count)
      : comm_(comm), device_(device), label_(std::move(label)), max_count_(max_count) {
    MT_CHECK(max_count >= 1 && max_count <= size_t(INT_MAX), "max_count ", max_count,
             " must be in [1, INT_MAX]");
    MT_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MT_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MT_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    for (auto* v : {&send_counts_, &send_displs_, &recv_counts_, &recv_displs_}) v->resize(size_);
  }
  ~MpiComm() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override { return str("mpi ", label_, " ", rank_, "/", size_); }

  void allreduce_sum(void* buf, size_t count, DType dtype, MemSpace space) override {
    count_launch(space);
    const MPI_Datatype t = sum_type(dtype);
    const size_t es = dtype_size(dtype), bytes = count * es;
    if (!staged(space)) return allreduce_host(static_cast<char*>(buf), count, es, t);
    char* h = stage_out(send_stage_, buf, bytes);
    allreduce_host(h, count, es, t);
    stage_in(buf, h, bytes);
  }

  std::unique_ptr<CommRequest> iallreduce_sum(void* buf, size_t count, DType dtype,
                                              MemSpace space) override {
    count_launch(space);
    const MPI_Datatype t = sum_type(dtype);
    const size_t es = dtype_size(dtype), bytes = count * es;
    char* p = static_cast<char*>(buf);
    std::unique_ptr<MpiRequest> req;
    if (staged(space)) {
      auto stage = take_buffer(bytes);
      p = stage_out(*stage, buf, bytes);
      req = std::make_unique<MpiRequest>(*this, std::move(stage), buf, bytes);
    } else {
      req = std::make_unique<MpiRequest>(*this, nullptr, nullptr, 0);
    }
    for_chunks(count, [&](size_t off, int n) {
      req->requests.push_back(MPI_REQUEST_NULL);
      MT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p + off * es, n, t, MPI_SUM, comm_,
                                  &req->requests.back()));
    });
    return req;
  }

  void allgather(const void* send, void* recv, size_t count, DType dtype, MemSpace space) override {
    count_launch(space);
    const MPI_Datatype t = mpi_type(dtype);
    const size_t es = dtype_size(dtype), bytes = count * es;
    if (count == 0) return;
    if (!staged(space)) return allgather_host(send, static_cast<char*>(recv), count, es, t);
    const char* s = stage_out(send_stage_, send, bytes);
    char* r = recv_stage_.get(bytes * size_);
    allgather_host(s, r, count, es, t);
    stage_in(recv, r, bytes * size_);
  }

  void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype,
                          MemSpace space) override {
    count_launch(space);
    const MPI_Datatype t = sum_type(dtype);
    const size_t es = dtype_size(dtype), bytes = count * es;
    if (count == 0) return;
    if (!staged(space))
      return reduce_scatter_host(static_cast<const char*>(send), static_cast<char*>(recv), count, es, t);
    const char* s = stage_out(send_stage_, send, bytes * size_);
    char* r = recv_stage_.get(bytes);
    reduce_scatter_host(s, r, count, es, t);
    stage_in(recv, r, bytes);
  }

  void alltoallv(const void* send, const size_t* send_counts, const size_t* send_displs, void* recv,
                 const size_t* recv_counts, const size_t* recv_displs, DType dtype,
                 MemSpace space) override {
    count_launch(space);
    const MPI_Datatype t = mpi_type(dtype);
    const size_t es = dtype_size(dtype);
    if (!staged(space)) {
      to_int("send", send_counts, send_displs, 0, send_counts_, send_displs_);
      to_int("recv", recv_counts, recv_displs, 0, recv_counts_, recv_displs_);
      MT_MPI_CHECK(MPI_Alltoallv(send, send_counts_.data(), send_displs_.data(), t, recv,
                                 recv_counts_.data(), recv_displs_.data(), t, comm_));
      return;
    }
    // Staged: the span of each side that holds data goes through the host; only the received blocks
    // are copied back, so whatever lies between them on the device is left as it was.
    const auto [send_lo, send_hi] = span(send_counts, send_displs);
    const auto [recv_lo, recv_hi] = span(recv_counts, recv_displs);
    to_int("send", send_counts, send_displs, send_lo, send_counts_, send_displs_);
    to_int("recv", recv_counts, recv_displs, recv_lo, recv_counts_, recv_displs_);
    const char* s = stage_out(send_stage_, static_cast<const char*>(send) + send_lo * es,
                              (send_hi - send_lo) * es);
    char* r = recv_stage_.get((recv_hi - recv_lo) * es);
    MT_MPI_CHECK(MPI_Alltoallv(s, send_counts_.data(), send_displs_.data(), t, r, recv_counts_.data(),
                               recv_displs_.data(), t, comm_));
    // Copy back runs of adjacent blocks in one piece each.
    char* dst = static_cast<char*>(recv);
    size_t run_start = 0, run_len = 0;
    auto copy_run = [&] { stage_in(dst + run_start * es, r + (run_start - recv_lo) * es, run_len * es); };
    for (int j = 0; j < size_; ++j) {
      if (recv_counts[j] == 0) continue;
      if (run_len > 0 && recv_displs[j] == run_start + run_len) {
        run_len += recv_counts[j];
        continue;
      }
      copy_run();
      run_start = recv_displs[j];
      run_len = recv_counts[j];
    }
    copy_run();
  }

  void alltoall_host(const void* send, void* recv, size_t count, DType dtype) override {
    MT_CHECK(count <= max_count_, "alltoall_host of ", count,
             " elements per rank exceeds the largest MPI count ", max_count_);
    const MPI_Datatype t = mpi_type(dtype);
    MT_MPI_CHECK(MPI_Alltoall(send, int(count), t, recv, int(count), t, comm_));
  }

  void broadcast(void* buf, size_t count, DType dtype, int root, MemSpace space) override {
    MT_CHECK(root >= 0 && root < size_, "broadcast root ", root, " outside ", describe());
    count_launch(space);
    const MPI_Datatype t = mpi_type(dtype);
    const size_t es = dtype_size(dtype), bytes = count * es;
    if (count == 0) return;
    if (!staged(space)) return bcast_host(static_cast<char*>(buf), count, es, t, root);
    char* h = rank_ == root ? stage_out(send_stage_, buf, bytes) : send_stage_.get(bytes);
    bcast_host(h, count, es, t, root);
    if (rank_ != root) stage_in(buf, h, bytes);
  }

  void barrier() override { MT_MPI_CHECK(MPI_Barrier(comm_)); }

  Device& device() { return device_; }

  // Host buffers for requests in flight, reused once they are waited for.
  std::unique_ptr<HostBuffer> take_buffer(size_t bytes) {
    if (free_buffers_.empty()) return std::make_unique<HostBuffer>();
    auto it = std::find_if(free_buffers_.begin(), free_buffers_.end(),
                           [&](const auto& b) { return b->capacity() >= bytes; });
    if (it == free_buffers_.end()) it = free_buffers_.begin();
    auto b = std::move(*it);
    free_buffers_.erase(it);
    return b;
  }
  void give_back(std::unique_ptr<HostBuffer> b) { free_buffers_.push_back(std::move(b)); }

 private:
  // A collective on device buffers is one launch (DeviceCounters), as NCCL's is on a GPU; staging
  // copies count as the device's own.
  void count_launch(MemSpace space) {
    if (space == MemSpace::Device) ++device_.counters().launches;
  }

  // Device buffers go through the host unless the device is the host.
  bool staged(MemSpace space) const {
    return space == MemSpace::Device && device_.kind() != DeviceKind::Cpu;
  }

  // Device memory -> host staging buffer, after the work queued on the device has finished.
  char* stage_out(HostBuffer& stage, const void* src, size_t bytes) {
    char* h = stage.get(bytes);
    if (bytes > 0) {
      device_.synchronize();
      device_.copy(h, src, bytes, CopyKind::DeviceToHost);
    }
    return h;
  }
  void stage_in(void* dst, const char* h, size_t bytes) {
    if (bytes > 0) device_.copy(dst, h, bytes, CopyKind::HostToDevice);
  }

  // Calls f(offset, n) for consecutive pieces of at most max_count_ elements.
  template <typename F>
  void for_chunks(size_t count, F&& f) const {
    for (size_t off = 0; off < count; off += max_count_) f(off, int(std::min(max_count_, count - off)));
  }

  void allreduce_host(char* buf, size_t count, size_t es, MPI_Datatype t) {
    for_chunks(count, [&](size_t off, int n) {
      MT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off * es, n, t, MPI_SUM, comm_));
    });
  }

  void bcast_host(char* buf, size_t count, size_t es, MPI_Datatype t, int root) {
    for_chunks(count, [&](size_t off, int n) { MT_MPI_CHECK(MPI_Bcast(buf + off * es, n, t, root, comm_)); });
  }

  void allgather_host(const void* send, char* recv, size_t count, size_t es, MPI_Datatype t) {
    if (count <= max_count_) {
      MT_MPI_CHECK(MPI_Allgather(send, int(count), t, recv, int(count), t, comm_));
      return;
    }
    // Too large for one call: every rank broadcasts its own block, in pieces.
    std::memcpy(recv + size_t(rank_) * count * es, send, count * es);
    for (int root = 0; root < size_; ++root) bcast_host(recv + size_t(root) * count * es, count, es, t, root);
  }

  void reduce_scatter_host(const char* send, char* recv, size_t count, size_t es, MPI_Datatype t) {
    if (count <= max_count_) {
      MT_MPI_CHECK(MPI_Reduce_scatter_block(send, recv, int(count), t, MPI_SUM, comm_));
      return;
    }
    // Too large for one call: block r is reduced onto rank r, in pieces.
    for (int root = 0; root < size_; ++root)
      for_chunks(count, [&](size_t off, int n) {
        char* dst = root == rank_ ? recv + off * es : nullptr;
        MT_MPI_CHECK(MPI_Reduce(send + (size_t(root) * count + off) * es, dst, n, t, MPI_SUM, root, comm_));
      });
  }

  // [lowest displacement, highest end) over the non-empty blocks; (0, 0) when all are empty.
  std::pair<size_t, size_t> span(const size_t* counts, const size_t* displs) const {
    size_t lo = SIZE_MAX, hi = 0;
    for (int j = 0; j < size_; ++j) {
      if (counts[j] == 0) continue;
      lo = std::min(lo, displs[j]);
      hi = std::max(hi, displs[j] + counts[j]);
    }
    return hi == 0 ? std::pair<size_t, size_t>{0, 0} : std::pair<size_t, size_t>{lo, hi};
  }

  // The int counts and displacements (relative to `base`) that MPI_Alltoallv takes.
  void to_int(const char* side, const size_t* counts, const size_t* displs, size_t base,
              std::vector<int>& int_counts, std::vector<int>& int_displs) const {
    for (int j = 0; j < size_; ++j) {
      const size_t displ = counts[j] == 0 ? 0 : displs[j] - base;
      MT_CHECK(counts[j] <= max_count_ && displ <= max_count_, "alltoallv ", side, " block ", j, " of ",
               describe(), " (", counts[j], " elements at ", displ,
               ") exceeds the largest MPI count ", max_count_, ": exchange it in smaller pieces");
      int_counts[j] = int(counts[j]);
      int_displs[j] = int(displ);
    }
  }

  MPI_Comm comm_;
  Device& device_;
  std::string label_;
  size_t max_count_;
  int rank_ = 0, size_ = 1;
  HostBuffer send_stage_, recv_stage_;
  std::vector<std::unique_ptr<HostBuffer>> free_buffers_;
  std::vector<int> send_counts_, send_displs_, recv_counts_, recv_displs_;
};

void MpiRequest::wait() {
  if (done_) return;
  MT_MPI_CHECK(MPI_Waitall(int(requests.size()), requests.data(), MPI_STATUSES_IGNORE));
  done_ = true;
  if (!stage_) return;
  if (bytes_ > 0) owner_.device().copy(device_dst_, stage_->get(bytes_), bytes_, CopyKind::HostToDevice);
  owner_.give_back(std::move(stage_));
}

}  // namespace

std::unique_ptr<Comm> make_mpi_comm(MPI_Comm comm, Device& device, const std::string& label,
                                    size_t max_count) {
  return std::make_unique<MpiComm>(comm, device, label, max_count);
}

}  // namespace mt
