// Why: the CUDA backend of the kernel interface (engine/model/ops.h) for T = float (the fp32 mode: tight
// comparisons with the CPU) and T = bf16 (training: bf16 activations and compute weights, fp32
// accumulation, statistics, master weights and gradients). Each method is defined, next to its kernels,
// in the file of its family (layers.cu, attention.cu, moe.cu, elementwise.cu; the GEMMs in cuda_ops.cpp),
// as on the CPU; buffers are device memory of the context's GPU, and all work is queued on its one stream.
#pragma once

#include "cuda/context.h"
#include "engine/model/ops.h"

namespace mt::cuda {

template <typename T>
class CudaOps final : public Ops<T> {
 public:
  using P = acc_t<T>;
  static_assert(std::is_same_v<P, float>, "the CUDA backend accumulates in fp32");

  explicit CudaOps(Context& ctx) : ctx_(ctx) {}
  Context& context() { return ctx_; }

  Device& device() override;

#include "engine/model/ops_overrides.inc"

 private:
  Context& ctx_;
};

extern template class CudaOps<float>;
extern template class CudaOps<mt::bf16>;

}  // namespace mt::cuda
