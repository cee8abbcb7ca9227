// Why: model.attention_impl "cudnn": the causal ALiBi attention of ops.h (same layouts, same lse) as
// cuDNN's fused flash-attention graphs, built with the cuDNN graph (backend) API in the decomposed form
// that the cuDNN frontend builds for its SDPA node and cuDNN's runtime-fusion engines recognise as one
// fused kernel (the tensor types and op order are the frontend's: cudnn_attention.cpp): QK^T, the scale
// 1/sqrt(Dh), the ALiBi bias from generated row/column indices and this rank's slopes tensor (H), the
// causal mask, softmax with fp32 statistics (lse), and PV; the backward recomputes the probabilities
// from lse and accumulates dQ in fp32. bf16 in and out. An execution plan is built once per shape
// (B, S, H, Dh) and kept.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "engine/core/dtype.h"

namespace mt::cuda {

class Context;

class CudnnAttention {
 public:
  explicit CudnnAttention(Context& ctx);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // ops.h attention_forward / attention_backward for bf16.
  void forward(bf16* out, float* lse, const bf16* qkv, const float* slopes, int B, int S, int H, int Dh);
  void backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse,
                const float* slopes, int B, int S, int H, int Dh);

  struct Plan;

 private:
  using Key = std::tuple<bool, int, int, int, int>;  // backward?, B, S, H, Dh
  Plan& plan(bool backward, int B, int S, int H, int Dh);
  // Executes `p` on the stream with these tensors, the by-value scalars and (dq_acc_bytes > 0, the
  // backward) its zeroed fp32 dQ accumulator in scratch.
  void run(Plan& p, int Dh, std::vector<int64_t> uids, std::vector<void*> ptrs, size_t dq_acc_bytes);

  Context& ctx_;
  void* handle_ = nullptr;  // cudnnHandle_t
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace mt::cuda
