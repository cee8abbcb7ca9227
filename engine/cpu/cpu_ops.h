// Why: the CPU backend of the kernel interface (engine/ops.h) for T = float (training on the CPU) and
// T = double (the exact reference of the gradient checks). Every method forwards to the free function
// of the same name in engine/cpu/kernels.h; the buffers are host memory from cpu_device().
//
// Gradient convention: parameter gradients accumulate (+=), activation gradients are written (=),
// except the residual stream: rmsnorm_backward adds into dinp.
#pragma once

#include "engine/model/ops.h"

namespace mt {

template <typename T>
class CpuOps final : public Ops<T> {
 public:
  using P = acc_t<T>;

  Device& device() override;

  void gemm(T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) override;
  void gemm_acc(P* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) override;

  void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int C) override;
  void embedding_backward(P* dwte, const T* dout, const int32_t* tokens, int N, int C, int V) override;

  void rmsnorm_forward(T* out, P* rstd, const T* inp, const T* weight, int N, int C, float eps) override;
  void rmsnorm_backward(T* dinp, P* dweight, const T* dout, const T* inp, const T* weight, const P* rstd, int N,
                        int C) override;

  void attention_forward(T* out, P* lse, const T* qkv, const float* slopes, int B, int T_, int H,
                         int Dh) override;
  void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const P* lse, const float* slopes,
                          int B, int T_, int H, int Dh) override;

  void swiglu_forward(T* out, const T* h13, int N, int F) override;
  void swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F) override;

  void router_forward(int32_t* topk_idx, P* topk_gate, P* probs, P* lse, const P* logits, int N, int E, int K,
                      GateNorm norm) override;
  void router_backward(P* dlogits, const P* dgate, const P* prob_grad, const P* probs, const P* lse,
                       const int32_t* topk_idx, const P* topk_gate, float z_scale, int N, int E, int K,
                       GateNorm norm) override;
  void router_stats(int64_t* counts_host, double* prob_sum_host, const int32_t* topk_idx, const P* probs, int N,
                    int E, int K) override;

  int moe_route_plan(int32_t* slot, int32_t* row_src, int64_t* tokens_per_expert_host, const int32_t* topk_idx,
                     int N, int K, int E, int capacity) override;
  void moe_permute(T* out, const T* inp, const int32_t* row_src, int R, int C) override;
  void moe_permute_backward(T* dinp, const T* dout, const int32_t* slot, int N, int K, int C) override;
  void moe_combine(T* out, const T* expert_out, const P* gate, const int32_t* slot, int N, int K,
                   int C) override;
  void moe_combine_backward(T* dexpert_out, P* dgate, const T* dout, const T* expert_out, const P* gate,
                            const int32_t* slot, int N, int K, int C) override;

  void experts_forward(T* out, T* h13, T* act, const T* inp, const T* w1, const T* w3, const T* w2,
                       const int64_t* offsets, int E, int C, int F) override;
  void experts_backward(T* dinp, P* dw1, P* dw3, P* dw2, T* dh13, T* dact, const T* dout, const T* inp,
                        const T* h13, const T* act, const T* w1, const T* w3, const T* w2, const int64_t* offsets,
                        int E, int C, int F) override;

  void cross_entropy(P* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss, int N,
                     int V) override;

  void add_inplace(T* x, const T* y, size_t n) override;
  void to_compute(T* out, const P* in, size_t n) override;
  void to_acc(P* out, const T* in, size_t n) override;
  void scale_inplace(P* x, float s, size_t n) override;
  double sum_squares(const P* x, size_t n) override;
  double sum(const P* x, size_t n) override;
  void adamw(P* param, const P* grad, P* m, P* v, size_t n, const AdamWArgs& args) override;
};

extern template class CpuOps<float>;
extern template class CpuOps<double>;

}  // namespace mt
