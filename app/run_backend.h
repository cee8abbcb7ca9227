// Why: commands that run a model (train, eval, bench) pick the backend once: the CPU (fp32) or, in a
// CUDA build with a GPU, the GPU in bf16 or fp32. with_backend() builds the ops and the process grid and
// calls a generic function with them, so each command's body is written once for every backend.
#pragma once

#include <cstdio>
#include <functional>
#include <string>

#include "app/common.h"
#include "comm/grid.h"
#include "engine/core/backend.h"
#include "engine/cpu/counting_ops.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/gemm_rate.h"
#include "engine/cpu/threads.h"
#include "engine/run/trainer.h"
#ifdef MOETRAIN_HAVE_CUDA
#include "cuda/backend.h"
#endif

namespace mt::app {

struct BackendInfo {
  std::string name;        // "cpu (2 threads)", "cuda NVIDIA H100 80GB HBM3 bf16"
  double peak_flops = 0;   // per process: the MFU reference
  // Call between optimizer steps: the CPU backend re-divides its cores among the processes now sharing
  // them (engine/cpu/threads.h). Returns a line for the log when the thread count changed, else "".
  std::function<std::string()> between_steps = [] { return std::string(); };
};

// `attention`: the manifest's model.attention_impl (the CUDA backend's bf16 attention kernels).
template <typename Fn>
auto with_backend(const RunArgs& args, const ParallelConfig& par, Fn&& fn,
                  AttentionImpl attention = AttentionImpl::Native) {
  BackendChoice choice = resolve_backend({parse_device(args.device), parse_precision(args.precision)});
  init_distributed();
#ifdef MOETRAIN_HAVE_CUDA
  if (choice.device == DeviceChoice::Cuda) {
    auto gpu = cuda::open_backend(choice.precision == Precision::Bf16 ? cuda::Compute::Bf16 : cuda::Compute::Fp32);
    gpu->set_attention(attention);
    auto grid = cuda::make_grid(par.tp, par.ep, *gpu);
    BackendInfo info{gpu->describe(), gpu->peak_flops()};
    if (choice.precision == Precision::Bf16) return fn(gpu->ops_bf16(), *grid, info);
    return fn(gpu->ops_fp32(), *grid, info);
  }
#else
  (void)choice;  // resolve_backend() refused cuda in a build without it
  (void)attention;
#endif
  cpu::CpuThreads threads;
  CpuOps<float> kernels;
  CountingOps<float> ops(kernels);  // launches and host syncs, counted as a GPU would (bench prints them)
  auto grid = make_grid(par.tp, par.ep, ops.device());
  // The thread count of each host (one text on one host).
  BackendInfo info{"cpu, " + grid->per_host(threads.describe()), cpu::measure_gemm_flops()};
  info.between_steps = [&threads] { return threads.rebalance() ? "cpu: now " + threads.describe() : std::string(); };
  return fn(ops, *grid, info);
}

}  // namespace mt::app
