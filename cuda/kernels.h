// Why: the kernels that code outside CudaOps<T> calls directly: the conversions between fp32 and the
// compute type, which the bf16 communicator (nccl_comm.cpp) uses to sum bf16 buffers in fp32. Every other
// kernel is reached through CudaOps<T> (cuda_ops.h), defined next to it in the .cu file of its family.
// Pointers are device memory; the functions only queue work on the context's stream.
#pragma once

#include <cstddef>

#include "cuda/context.h"

namespace mt::cuda {

// out (T) = in (fp32), rounded to nearest even for bf16 (elementwise.cu).
template <typename T>
void to_compute(Context& ctx, T* out, const float* in, size_t n);
// out (fp32) = in (T), exact.
template <typename T>
void to_acc(Context& ctx, float* out, const T* in, size_t n);

}  // namespace mt::cuda
