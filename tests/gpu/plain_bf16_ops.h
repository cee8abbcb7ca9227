// Why: the whole-model bf16 check needs, per tensor, what bf16 alone costs on THIS batch, so that a small
// tensor with cancelling sums (norm weights, the router) is held to its own accuracy rather than hiding
// in a whole-buffer bound. PlainBf16Ops is the CPU float backend with every compute-type (T) output
// rounded to bf16, as the bf16 GPU backend stores it (fp32 arithmetic, bf16 activations); parameter
// gradients and statistics (P) stay fp32. A Model<float> on it, with its parameters rounded to bf16
// (the GPU's compute copies), is the "plain bf16 version" of the model, as tests/op_harness.h has one
// per op. (The float model accumulates a few activation gradients in T where the bf16 model uses an fp32
// buffer, so the plain version rounds slightly more often: its errors are, if anything, larger.) The ops
// with no T output pass through unchanged (ForwardingOps, generated from the table of engine/ops/ops.h);
// an op with a T output is written here with its rounding.
#pragma once

#include <algorithm>
#include <cstdint>

#include "engine/core/dtype.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/ops/forwarding_ops.h"

namespace mt::gputest {

// The wrapped CPU backend, a base so that it is built before ForwardingOps takes it.
struct CpuFloatBase {
  CpuOps<float> cpu;
};

class PlainBf16Ops final : private CpuFloatBase, public ForwardingOps<float> {
 public:
  using P = float;
  using T = float;

  PlainBf16Ops() : ForwardingOps<float>(cpu) {}

  void gemm(T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) override {
    inner_.gemm(c, a, b, s, alpha, beta);
    for (int i = 0; i < s.m; ++i) round(c + size_t(i) * s.ldc, size_t(s.n));
  }

  void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int Dm) override {
    inner_.embedding_forward(out, tokens, wte, N, Dm);
    round(out, size_t(N) * Dm);
  }

  void rmsnorm_forward(T* out, P* rstd, const T* inp, const T* weight, int N, int Dm, float eps) override {
    inner_.rmsnorm_forward(out, rstd, inp, weight, N, Dm, eps);
    round(out, size_t(N) * Dm);
  }
  void rmsnorm_backward(T* dinp, P* dweight, const T* dout, const T* inp, const T* weight, const P* rstd, int N,
                        int Dm) override {
    inner_.rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, Dm);
    round(dinp, size_t(N) * Dm);
  }

  void attention_forward(T* out, P* lse, const T* qkv, const float* slopes, const AttnDims& d) override {
    inner_.attention_forward(out, lse, qkv, slopes, d);
    round(out, size_t(d.B) * d.S * d.H * d.Dh);
  }
  void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const P* lse, const float* slopes,
                          const AttnDims& d) override {
    inner_.attention_backward(dqkv, dout, qkv, out, lse, slopes, d);
    round(dqkv, size_t(d.B) * d.S * 3 * d.H * d.Dh);
  }

  void swiglu_forward(T* out, const T* h13, int N, int F) override {
    inner_.swiglu_forward(out, h13, N, F);
    round(out, size_t(N) * F);
  }
  void swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F) override {
    inner_.swiglu_backward(dh13, dout, h13, N, F);
    round(dh13, size_t(N) * 2 * F);
  }

  void moe_permute(T* out, const T* inp, const int32_t* row_src, const PermuteDims& d) override {
    inner_.moe_permute(out, inp, row_src, d);
    round(out, size_t(d.R) * d.Dm);
  }
  void moe_permute_backward(T* dinp, const T* dout, const int32_t* slot, const DispatchDims& d) override {
    inner_.moe_permute_backward(dinp, dout, slot, d);
    round(dinp, size_t(d.N) * d.Dm);
  }
  void moe_combine(T* out, const T* expert_out, const P* gates, const int32_t* slot, const DispatchDims& d) override {
    inner_.moe_combine(out, expert_out, gates, slot, d);
    round(out, size_t(d.N) * d.Dm);
  }
  void moe_combine_backward(T* dexpert_out, P* dgates, const T* dout, const T* expert_out, const P* gates,
                            const int32_t* slot, const DispatchDims& d) override {
    inner_.moe_combine_backward(dexpert_out, dgates, dout, expert_out, gates, slot, d);
    // Its rows are the kept choices, 0 .. the largest slot.
    int32_t rows = 0;
    for (size_t i = 0; i < size_t(d.N) * d.K; ++i) rows = std::max(rows, slot[i] + 1);
    round(dexpert_out, size_t(rows) * d.Dm);
  }

  // The routed experts' rows in use are [0, offsets[G]) (host memory on the CPU).
  void grouped_linear_forward(T* y, const T* x, const StackedWeight<const T>& w, const int64_t* offsets,
                              const GroupedLinearDims& d) override {
    inner_.grouped_linear_forward(y, x, w, offsets, d);
    round(y, size_t(offsets[d.G]) * d.Out);
  }
  void grouped_linear_backward(T* dx, const StackedWeight<P>& dw, const T* dy, const T* x,
                               const StackedWeight<const T>& w, const int64_t* offsets,
                               const GroupedLinearDims& d) override {
    inner_.grouped_linear_backward(dx, dw, dy, x, w, offsets, d);
    round(dx, size_t(offsets[d.G]) * d.In);
  }

  void cross_entropy(P* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss, int N,
                     int V) override {
    inner_.cross_entropy(losses, dlogits, logits, targets, dloss, N, V);
    if (dlogits) round(dlogits, size_t(N) * V);
  }

  void add_inplace(T* x, const T* y, size_t n) override {
    inner_.add_inplace(x, y, n);
    round(x, n);
  }
  void to_compute(T* out, const P* in, size_t n) override {
    inner_.to_compute(out, in, n);
    round(out, n);
  }

 private:
  static void round(float* x, size_t n) {
    for (size_t i = 0; i < n; ++i) x[i] = to_float(to_bf16(x[i]));
  }
};

}  // namespace mt::gputest
