// Why: the CUDA backend of the kernel interface (engine/ops/ops.h) for T = float (the fp32 mode: tight
// comparisons with the CPU) and T = bf16 (training: bf16 activations and compute weights, fp32
// accumulation, statistics, master weights and gradients). Each method is defined, next to its kernels,
// in the file of its family (layers.cu, attention.cu, moe.cu, elementwise.cu; the GEMMs in cuda_ops.cpp),
// as on the CPU; buffers are device memory of the context's GPU, and all work is queued on its one stream.
#pragma once

#include "cuda/context.h"
#include "engine/ops/ops.h"

namespace mt::cuda {

template <typename T>
class CudaOps final : public Ops<T> {
 public:
  using P = acc_t<T>;
  static_assert(std::is_same_v<P, float>, "the CUDA backend accumulates in fp32");

  explicit CudaOps(Context& ctx) : ctx_(ctx) {}
  Context& context() { return ctx_; }

  Device& device() override;

  MT_OPS(MT_OPS_OVERRIDE, T, P)

 private:
  Context& ctx_;
};

extern template class CudaOps<float>;
extern template class CudaOps<mt::bf16>;

// The explicit instantiation, for float and bf16, of one family of the table (engine/ops/ops.h), at the
// end of the file that defines its ops: MT_CUDA_INSTANTIATE(MT_OPS_MOE).
#define MT_CUDA_OP_FLOAT_(ret, name, params, args, sync) template ret CudaOps<float>::name params;
#define MT_CUDA_OP_BF16_(ret, name, params, args, sync) template ret CudaOps<mt::bf16>::name params;
#define MT_CUDA_INSTANTIATE(FAMILY) FAMILY(MT_CUDA_OP_FLOAT_, float, float) FAMILY(MT_CUDA_OP_BF16_, mt::bf16, float)

}  // namespace mt::cuda
