// Why: the NCCL implementation of Comm (comm/comm.h) for device buffers when each rank has its own GPU.
// Collectives are queued on the backend's stream, so they are ordered with the kernels around them and
// the host never waits for them; iallreduce_sum runs on a second stream so that the data-parallel
// gradient reduction overlaps the rest of the backward. Host-memory collectives (and alltoall_host)
// go to the MPI comm of the same group, which the NcclComm keeps.
//
// Launch order. CUDA does not promise that kernels of two streams run concurrently, so if a dp
// all-reduce on the side stream and a tp / ep collective on the main stream (other communicators)
// could both be pending, one GPU might run the first and another GPU the second, each waiting for its
// peers in the other: a deadlock. So every NCCL operation of a process is ordered after the one issued
// before it, whatever its stream: side-stream work waits for the main stream (an event), and each
// main-stream collective waits for the side stream's work issued so far. The order is then the host's
// issue order, the same on every rank (SPMD); compute kernels still overlap the side stream.
#pragma once

#include <nccl.h>

#include <memory>
#include <string>

#include "comm/comm.h"
#include "cuda/device.h"

namespace mt::cuda {

// The side stream that every NcclComm of a process shares (see above).
class NcclOrder;
std::shared_ptr<NcclOrder> make_nccl_order(CudaDevice& device);

// Takes over `comm` (destroyed with the NcclComm) and `host` (the same group over MPI, same ranks).
std::unique_ptr<Comm> make_nccl_comm(ncclComm_t comm, std::unique_ptr<Comm> host, CudaDevice& device,
                                     std::shared_ptr<NcclOrder> order, const std::string& label);

// Wraps a Comm for device buffers of `device` whose transport cannot sum bf16 (MPI): bf16 sums are
// converted to fp32 on the GPU, summed in fp32 and converted back (one rounding, as NCCL's would be
// at most); everything else is passed through.
class Context;
std::unique_ptr<Comm> make_bf16_sum_comm(std::unique_ptr<Comm> inner, Context& ctx);

}  // namespace mt::cuda
