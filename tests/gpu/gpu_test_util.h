// Why: what the GPU tests share: one CUDA backend per test process (main.cpp runs no test without a
// GPU: tests/gpu/gpu_probe.h). The op cases, their buffers over the Device interface and the error measures
// are backend-agnostic and live in tests/op_cases.h (the driver in tests/op_harness.h).
#pragma once

#include "cuda/context.h"
#include "cuda/cuda_ops.h"
#include "cuda/device.h"
#include "engine/ops/ops.h"

namespace mt::gputest {

// One device, context and pair of ops for the whole test process.
struct Gpu {
  cuda::CudaDevice device{0};
  cuda::Context ctx{device};
  cuda::CudaOps<float> fp32{ctx};
  cuda::CudaOps<mt::bf16> bf16_ops{ctx};
};
inline Gpu& gpu() {
  static Gpu g;
  return g;
}

}  // namespace mt::gputest
