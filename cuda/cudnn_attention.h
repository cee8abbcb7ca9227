// Why: model.attention_impl "cudnn": the causal ALiBi attention of ops.h (same layouts, same lse) as
// cuDNN's fused flash-attention graphs, built with the cuDNN graph (backend) API. cuDNN's SDPA operation
// node takes neither a causal mask nor a bias, so the graphs are the decomposed form that cuDNN's
// runtime-fusion engines recognise as one fused attention kernel: QK^T, the scale 1/sqrt(Dh), the ALiBi
// bias built in the graph from generated row/column indices and the slopes tensor (H), the causal mask
// (index compare and select), softmax with fp32 statistics (lse), and PV; the backward recomputes the
// probabilities from lse. bf16 in and out, fp32 statistics and accumulation. An execution plan is built
// once per shape (B, S, H, Dh) and kept.
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
  // Executes `p` on the stream with these tensors, the scale and -inf, and (rowdot_bytes > 0) the
  // backward's row sums in scratch.
  void run(Plan& p, int Dh, std::vector<int64_t> uids, std::vector<void*> ptrs, size_t rowdot_bytes);

  Context& ctx_;
  void* handle_ = nullptr;  // cudnnHandle_t
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace mt::cuda
