// Why: what the GPU tests share: the skip exit code (main.cpp runs no test without a GPU) and one CUDA
// backend per test process. The op cases, their buffers over the Device interface and the error measures
// are backend-agnostic and live in tests/op_cases.h (the driver in tests/op_harness.h).
#pragma once

#include "cuda/context.h"
#include "cuda/cuda_ops.h"
#include "cuda/device.h"
#include "engine/ops/ops.h"

extern "C" int mt_cuda_device_count();

namespace mt::gputest {

inline bool have_gpu() {
  static const bool present = mt_cuda_device_count() > 0;
  return present;
}

// The exit code of a GPU test process that found no GPU: ctest's SKIP_RETURN_CODE, run.sh's SKIPPED.
constexpr int kSkipped = 77;

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
