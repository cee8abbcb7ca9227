// Why: the NCCL implementation of Comm (comm/comm.h) for device buffers when each rank has its own GPU.
// Collectives are queued on the backend's stream, so they are ordered with the kernels around them and
// the host never waits for them; iallreduce_sum runs on a second stream so that the data-parallel
// gradient reduction overlaps the rest of the backward. Host-memory collectives (and alltoall_host)
// go to the MPI comm of the same group, which the NcclComm keeps.
#pragma once

#include <nccl.h>

#include <memory>
#include <string>

#include "comm/comm.h"
#include "cuda/device.h"

namespace mt::cuda {

// Takes over `comm` (destroyed with the NcclComm) and `host` (the same group over MPI, same ranks).
std::unique_ptr<Comm> make_nccl_comm(ncclComm_t comm, std::unique_ptr<Comm> host, CudaDevice& device,
                                     const std::string& label);

// Wraps a Comm for device buffers of `device` whose transport cannot sum bf16 (MPI): bf16 sums are
// converted to fp32 on the GPU, summed in fp32 and converted back (one rounding, as NCCL's would be
// at most); everything else is passed through.
class Context;
std::unique_ptr<Comm> make_bf16_sum_comm(std::unique_ptr<Comm> inner, Context& ctx);

}  // namespace mt::cuda
