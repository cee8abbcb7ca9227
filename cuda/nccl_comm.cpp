// Why: see nccl_comm.h. Counts map one to one onto NCCL's (size_t counts, no int limit); alltoallv is a
// group of point-to-point sends and receives, NCCL's idiom for it.
#include "cuda/nccl_comm.h"

#include <cuda_runtime_api.h>

#include <utility>
#include <vector>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/kernels.h"

namespace mt::cuda {

namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::BF16: return ncclBfloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    case DType::U8: return ncclUint8;
  }
  MT_CHECK(false, "unknown dtype ", int(t));
  return ncclFloat32;
}

}  // namespace

// See nccl_comm.h: the side stream of the process and an event that marks the end of its work so far.
class NcclOrder {
 public:
  explicit NcclOrder(CudaDevice& device) : device_(device) {
    MT_CUDA_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
    MT_CUDA_CHECK(cudaEventCreateWithFlags(&side_done_, cudaEventDisableTiming));
  }
  ~NcclOrder() {
    cudaStreamSynchronize(side_);
    cudaEventDestroy(side_done_);
    cudaStreamDestroy(side_);
  }
  NcclOrder(const NcclOrder&) = delete;
  NcclOrder& operator=(const NcclOrder&) = delete;

  cudaStream_t side() const { return side_; }
  // Before a main-stream collective: the main stream waits for the side stream's work issued so far.
  cudaStream_t main_after_side() {
    MT_CUDA_CHECK(cudaEventRecord(side_done_, side_));
    MT_CUDA_CHECK(cudaStreamWaitEvent(device_.stream(), side_done_, 0));
    return device_.stream();
  }

 private:
  CudaDevice& device_;
  cudaStream_t side_ = nullptr;
  cudaEvent_t side_done_ = nullptr;
};

namespace {

// An allreduce queued on the side stream; wait() makes the main stream wait for it (the host does not).
class NcclRequest final : public CommRequest {
 public:
  NcclRequest(cudaEvent_t done, cudaStream_t main) : done_(done), main_(main) {}
  ~NcclRequest() override { cudaEventDestroy(done_); }
  NcclRequest(const NcclRequest&) = delete;
  NcclRequest& operator=(const NcclRequest&) = delete;
  void wait() override {
    if (waited_) return;
    MT_CUDA_CHECK(cudaStreamWaitEvent(main_, done_, 0));
    waited_ = true;
  }

 private:
  cudaEvent_t done_;
  cudaStream_t main_;
  bool waited_ = false;
};

class NcclComm final : public Comm {
 public:
  NcclComm(ncclComm_t comm, std::unique_ptr<Comm> host, CudaDevice& device, std::shared_ptr<NcclOrder> order,
           std::string label)
      : comm_(comm), host_(std::move(host)), device_(device), order_(std::move(order)), label_(std::move(label)) {}
  ~NcclComm() override {
    cudaStreamSynchronize(order_->side());
    cudaStreamSynchronize(device_.stream());
    ncclCommDestroy(comm_);
  }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string describe() const override { return str("nccl ", label_, " ", rank(), "/", size()); }

  void allreduce_sum(void* buf, size_t count, DType dtype, MemSpace space) override {
    if (space == MemSpace::Host) return host_->allreduce_sum(buf, count, dtype, space);
    if (count == 0) return;
    MT_NCCL_CHECK(ncclAllReduce(buf, buf, count, nccl_type(dtype), ncclSum, comm_, ordered()));
    launched();
  }

  std::unique_ptr<CommRequest> iallreduce_sum(void* buf, size_t count, DType dtype, MemSpace space) override {
    if (space == MemSpace::Host) return host_->iallreduce_sum(buf, count, dtype, space);
    // The side stream starts once the main stream has produced buf.
    cudaEvent_t ready = nullptr, done = nullptr;
    MT_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    MT_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    auto req = std::make_unique<NcclRequest>(done, stream());
    MT_CUDA_CHECK(cudaEventRecord(ready, stream()));
    MT_CUDA_CHECK(cudaStreamWaitEvent(order_->side(), ready, 0));
    MT_CUDA_CHECK(cudaEventDestroy(ready));  // released once recorded work completes
    if (count) {
      MT_NCCL_CHECK(ncclAllReduce(buf, buf, count, nccl_type(dtype), ncclSum, comm_, order_->side()));
      launched();
    }
    MT_CUDA_CHECK(cudaEventRecord(done, order_->side()));
    return req;
  }

  void allgather(const void* send, void* recv, size_t count, DType dtype, MemSpace space) override {
    if (space == MemSpace::Host) return host_->allgather(send, recv, count, dtype, space);
    if (count == 0) return;
    MT_NCCL_CHECK(ncclAllGather(send, recv, count, nccl_type(dtype), comm_, ordered()));
    launched();
  }

  void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype, MemSpace space) override {
    if (space == MemSpace::Host) return host_->reduce_scatter_sum(send, recv, count, dtype, space);
    if (count == 0) return;
    MT_NCCL_CHECK(ncclReduceScatter(send, recv, count, nccl_type(dtype), ncclSum, comm_, ordered()));
    launched();
  }

  void alltoallv(const void* send, const size_t* send_counts, const size_t* send_displs, void* recv,
                 const size_t* recv_counts, const size_t* recv_displs, DType dtype, MemSpace space) override {
    if (space == MemSpace::Host)
      return host_->alltoallv(send, send_counts, send_displs, recv, recv_counts, recv_displs, dtype, space);
    const size_t es = dtype_size(dtype);
    const ncclDataType_t t = nccl_type(dtype);
    cudaStream_t st = ordered();
    MT_NCCL_CHECK(ncclGroupStart());
    for (int j = 0; j < size(); ++j) {
      if (send_counts[j])
        MT_NCCL_CHECK(ncclSend(static_cast<const char*>(send) + send_displs[j] * es, send_counts[j], t, j, comm_,
                               st));
      if (recv_counts[j])
        MT_NCCL_CHECK(ncclRecv(static_cast<char*>(recv) + recv_displs[j] * es, recv_counts[j], t, j, comm_,
                               st));
    }
    MT_NCCL_CHECK(ncclGroupEnd());
    launched();  // one grouped collective
  }

  void alltoall_host(const void* send, void* recv, size_t count, DType dtype) override {
    host_->alltoall_host(send, recv, count, dtype);
  }

  void broadcast(void* buf, size_t count, DType dtype, int root, MemSpace space) override {
    if (space == MemSpace::Host) return host_->broadcast(buf, count, dtype, root, space);
    MT_CHECK(root >= 0 && root < size(), "broadcast root ", root, " outside ", describe());
    if (count == 0) return;
    MT_NCCL_CHECK(ncclBroadcast(buf, buf, count, nccl_type(dtype), root, comm_, ordered()));
    launched();
  }

  void barrier() override {
    device_.synchronize();
    host_->barrier();
  }

 private:
  cudaStream_t stream() const { return device_.stream(); }
  // One collective queued: a launch in the device's counters (engine/core/device.h).
  void launched() { device_.counters().launches += 1; }
  // The main stream, after the side stream's NCCL work so far (nccl_comm.h: launch order).
  cudaStream_t ordered() { return order_->main_after_side(); }

  ncclComm_t comm_;
  std::unique_ptr<Comm> host_;
  CudaDevice& device_;
  std::shared_ptr<NcclOrder> order_;
  std::string label_;
};

class DoneRequest final : public CommRequest {
 public:
  void wait() override {}
};

// See nccl_comm.h: bf16 sums through fp32 on the device.
class Bf16SumComm final : public Comm {
 public:
  Bf16SumComm(std::unique_ptr<Comm> inner, Context& ctx) : inner_(std::move(inner)), ctx_(ctx) {}
  ~Bf16SumComm() override {
    if (wide_) ctx_.device().release(wide_);
  }
  Bf16SumComm(const Bf16SumComm&) = delete;
  Bf16SumComm& operator=(const Bf16SumComm&) = delete;

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string describe() const override { return inner_->describe() + " (bf16 sums in fp32)"; }

  void allreduce_sum(void* buf, size_t count, DType dtype, MemSpace space) override {
    if (!widened(dtype, space)) return inner_->allreduce_sum(buf, count, dtype, space);
    float* w = wide(count);
    auto* b = static_cast<mt::bf16*>(buf);
    to_acc<mt::bf16>(ctx_, w, b, count);
    inner_->allreduce_sum(w, count, DType::F32, space);
    to_compute<mt::bf16>(ctx_, b, w, count);
  }

  // A bf16 reduction is done at once (the engine's overlapped reductions are fp32 gradients).
  std::unique_ptr<CommRequest> iallreduce_sum(void* buf, size_t count, DType dtype, MemSpace space) override {
    if (!widened(dtype, space)) return inner_->iallreduce_sum(buf, count, dtype, space);
    allreduce_sum(buf, count, dtype, space);
    return std::make_unique<DoneRequest>();
  }

  void allgather(const void* send, void* recv, size_t count, DType dtype, MemSpace space) override {
    inner_->allgather(send, recv, count, dtype, space);
  }

  void reduce_scatter_sum(const void* send, void* recv, size_t count, DType dtype, MemSpace space) override {
    if (!widened(dtype, space)) return inner_->reduce_scatter_sum(send, recv, count, dtype, space);
    const size_t n = count * size_t(size());
    float* w = wide(n + count);
    to_acc<mt::bf16>(ctx_, w, static_cast<const mt::bf16*>(send), n);
    inner_->reduce_scatter_sum(w, w + n, count, DType::F32, space);
    to_compute<mt::bf16>(ctx_, static_cast<mt::bf16*>(recv), w + n, count);
  }

  void alltoallv(const void* send, const size_t* send_counts, const size_t* send_displs, void* recv,
                 const size_t* recv_counts, const size_t* recv_displs, DType dtype, MemSpace space) override {
    inner_->alltoallv(send, send_counts, send_displs, recv, recv_counts, recv_displs, dtype, space);
  }
  void alltoall_host(const void* send, void* recv, size_t count, DType dtype) override {
    inner_->alltoall_host(send, recv, count, dtype);
  }
  void broadcast(void* buf, size_t count, DType dtype, int root, MemSpace space) override {
    inner_->broadcast(buf, count, dtype, root, space);
  }
  void barrier() override { inner_->barrier(); }

 private:
  static bool widened(DType dtype, MemSpace space) { return dtype == DType::BF16 && space == MemSpace::Device; }
  // Grow-only fp32 device buffer (release waits for queued work, so no kernel still uses the old one).
  float* wide(size_t count) {
    if (count > wide_count_) {
      if (wide_) ctx_.device().release(wide_);
      wide_ = nullptr;
      wide_ = static_cast<float*>(ctx_.device().alloc(count * sizeof(float)));
      wide_count_ = count;
    }
    return wide_;
  }

  std::unique_ptr<Comm> inner_;
  Context& ctx_;
  float* wide_ = nullptr;
  size_t wide_count_ = 0;
};

}  // namespace

std::shared_ptr<NcclOrder> make_nccl_order(CudaDevice& device) { return std::make_shared<NcclOrder>(device); }

std::unique_ptr<Comm> make_nccl_comm(ncclComm_t comm, std::unique_ptr<Comm> host, CudaDevice& device,
                                     std::shared_ptr<NcclOrder> order, const std::string& label) {
  return std::make_unique<NcclComm>(comm, std::move(host), device, std::move(order), label);
}

std::unique_ptr<Comm> make_bf16_sum_comm(std::unique_ptr<Comm> inner, Context& ctx) {
  return std::make_unique<Bf16SumComm>(std::move(inner), ctx);
}

}  // namespace mt::cuda
