// Why: the bf16 attention of ops.h on the tensor cores (flash_attention.cu), in the FlashAttention-2
// manner: mma.sync bf16 products with fp32 accumulation, the ALiBi bias and the causal mask computed in
// registers, key tiles past the diagonal skipped, only out and lse = m + log l saved; the backward
// recomputes the probabilities from lse, in two deterministic kernels (dK and dV per key tile, dQ per
// query tile: no atomics). Same arguments and layouts as CudaOps<bf16>::attention_forward / _backward.
//
// Which kernel runs (model.attention_impl "native", bf16): this one wherever it supports the shape (head
// dimension 64 or 128) on a GPU of compute capability 8.0 or more; the fp32-FMA kernels of attention.cu
// otherwise. A rule, not a timing: a choice by timing could differ between two runs of one job, and so
// could its rounding, which a bit-identical resume forbids. The rule holds because the tensor cores do
// bf16 products 16 times faster than the FMA units and both kernels move the same bytes;
// gpu_attention_job times both on the GPU to keep it honest.
#pragma once

#include "engine/core/dtype.h"
#include "engine/ops/ops.h"

namespace mt::cuda {

class Context;

// Which of our own bf16 attention kernels runs under model.attention_impl "native": the rule above
// (Auto), or one forced (the GPU tests and gpu_attention_job check and time each).
enum class NativeAttention { Auto, Simt, TensorCore };

// Whether the tensor-core kernels support `d` on the context's GPU.
bool flash_attention_supports(const Context& ctx, const AttnDims& d);

void flash_attention_forward(Context& ctx, bf16* out, float* lse, const bf16* qkv, const float* slopes,
                             const AttnDims& d);
void flash_attention_backward(Context& ctx, bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out,
                              const float* lse, const float* slopes, const AttnDims& d);

}  // namespace mt::cuda
