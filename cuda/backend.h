// Why: the one entry point of the app into the GPU (app/run_backend.h): open_backend picks this rank's
// GPU (by local rank), builds the stream, the cuBLASLt context and the ops for both precisions; make_grid
// builds the tp x ep x dp process grid with the right transport for device buffers: NCCL when each rank
// has its own GPU, MPI with host staging when ranks share one (tests on one GPU). MOETRAIN_COMM=mpi|nccl
// forces the choice.
#pragma once

#include <memory>
#include <string>

#include "comm/grid.h"
#include "cuda/flash_attention.h"
#include "engine/core/device.h"
#include "engine/core/dtype.h"
#include "engine/ops/ops.h"

namespace mt::cuda {

enum class Compute { Fp32, Bf16 };

class Backend {
 public:
  struct Impl;
  explicit Backend(std::unique_ptr<Impl> impl);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // "cuda:0 NVIDIA H100 80GB HBM3 (132 SMs, sm_90) bf16"
  std::string describe() const;
  // Datasheet dense peak (FLOP/s) of this GPU for the compute mode: the bf16 tensor-core peak in bf16
  // mode, the plain fp32 (FMA, not TF32) peak in fp32 mode, which computes in true fp32.
  double peak_flops() const;
  Compute compute() const;
  // model.attention_impl for the bf16 ops (see Context::set_attention), and under "native" which of our
  // kernels (Context::set_native_attention; Auto, the default, is flash_attention.h's rule).
  void set_attention(AttentionImpl impl);
  void set_native_attention(NativeAttention which);
  Ops<bf16>& ops_bf16();
  Ops<float>& ops_fp32();
  Device& device();
  // Local ranks that share this GPU (1: the GPU is this rank's alone).
  int ranks_per_gpu() const;

  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Opens GPU (local rank mod GPU count) for this process; under mpirun MPI is initialised first.
std::unique_ptr<Backend> open_backend(Compute compute);

// The grid of comm/grid.h whose collectives on MemSpace::Device buffers run on this backend's GPU.
std::unique_ptr<ProcessGrid> make_grid(int tp, int ep, Backend& backend);

// The datasheet peak for a GPU by name and SM count (see Backend::peak_flops); unknown GPUs are
// estimated from the closest known one per SM and clock-free (Hopper, Ampere) or 0 when unknown.
double datasheet_peak_flops(const std::string& name, int sm_count, int cc_major, Compute compute);

}  // namespace mt::cuda
