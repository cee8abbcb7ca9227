// Why: the kernel interface. The model (engine/model: model_impl.h, moe.h, linear.h, experts.h) is
// written once against Ops<T>; the CPU backend (engine/cpu, T = float or double) and the CUDA backend
// (cuda/, T = float or bf16) implement it with the same signatures (ops_overrides.inc declares them
// once for both), and every op is tested on every backend against CpuOps<double> (one case each in
// tests/op_cases.h).
//
// Conventions (every op):
// - Each layer is a forward / backward pair; arguments are outputs first, then inputs, then saved
//   statistics, then sizes. All pointers are in the backend's memory unless marked "host".
// - T is the activation / compute type, P = acc_t<T> the type of master weights, gradients and
//   statistics (float for float and bf16; double for double). Weights passed to ops are compute copies
//   of type T.
// - Parameter gradients ACCUMULATE (+=) into P buffers. Activation gradients are WRITTEN (=), except
//   the gradient of the residual stream, which accumulates: rmsnorm_backward adds into dinp.
// - Matrices are row-major; weights have PyTorch's [out, in] layout, so a linear layer is y = x W^T.
// - Sizes: N tokens (rows), Dm model width (the length of a token's row), V vocabulary, E experts, K
//   experts per token, R permuted rows (the kept choices), F hidden width of a SwiGLU, B sequences of S
//   tokens, H heads of Dh; the sizes of attention, routing, dispatch / combine and permute travel as one
//   struct each (AttnDims, RouteDims, DispatchDims, PermuteDims), so that their order cannot be mixed up.
// - Names follow DESIGN.md and Megatron: routing_map (the chosen experts), probs, gates (the chosen
//   probabilities), tokens_per_expert, capacity.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/core/device.h"
#include "engine/core/dtype.h"

namespace mt {

enum class Trans { No, Yes };

// Row-major C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C. op(A) is A (m x k, leading
// dimension lda) or A^T (A stored k x m); likewise B. ldc is C's leading dimension.
struct GemmShape {
  Trans trans_a = Trans::No;
  Trans trans_b = Trans::No;
  int m = 0, n = 0, k = 0;
  int lda = 0, ldb = 0, ldc = 0;

  // Dense operands (each leading dimension the stored row length): A B, A B^T (y = x W^T) and A^T B.
  static GemmShape nn(int m, int n, int k) { return {Trans::No, Trans::No, m, n, k, k, n, n}; }
  static GemmShape nt(int m, int n, int k) { return {Trans::No, Trans::Yes, m, n, k, k, k, n}; }
  static GemmShape tn(int m, int n, int k) { return {Trans::Yes, Trans::No, m, n, k, m, n, n}; }
  // The same shape on strided operands (a column block of a wider matrix).
  GemmShape with_ld(int a, int b, int c) const { return {trans_a, trans_b, m, n, k, a, b, c}; }
  // Every backend calls this first: sizes >= 0 and leading dimensions that hold the rows (a wrong one
  // would read out of bounds silently).
  void check() const;
};

// Causal attention over B sequences of S tokens with H heads of Dh.
struct AttnDims {
  int B = 0, S = 0, H = 0, Dh = 0;
};

// Routing of N tokens to K of E experts.
struct RouteDims {
  int N = 0, E = 0, K = 0;
};

// Dispatch / combine of N tokens of width Dm, each with K choices (slot and gates are (N, K)).
struct DispatchDims {
  int N = 0, K = 0, Dm = 0;
};

// A gather of R rows of width Dm.
struct PermuteDims {
  int R = 0, Dm = 0;
};

// Renormalisation of the K chosen router probabilities.
enum class GateNorm { None, Renormalize };

// A run of consecutive elements of a flat buffer with one weight decay: [the previous run's end, end).
struct DecayRun {
  size_t end = 0;
  float weight_decay = 0;
};

struct AdamWArgs {
  float lr = 0;
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
  float weight_decay = 0;  // decoupled: param -= lr * wd * param (0 for tensors that do not decay)
  float grad_scale = 1;    // multiplies the gradient first (global-norm clipping)
  int step = 1;            // 1-based, for bias correction
  // Optional (host memory): n_runs runs covering [0, n) in order, each with its own weight decay in
  // place of weight_decay, so that a whole buffer of tensors is one call (one launch on the GPU).
  const DecayRun* runs = nullptr;
  int n_runs = 0;
};

// A span of a buffer whose squares sum_squares_groups adds to the total of `group`.
template <typename P>
struct SquaresSpan {
  const P* data = nullptr;
  size_t n = 0;
  int group = 0;
};

template <typename T>
class Ops {
 public:
  using P = acc_t<T>;
  virtual ~Ops() = default;
  virtual Device& device() = 0;

  // ---- GEMM ---------------------------------------------------------------------------------------
  // C (T) = alpha op(A) op(B) + beta C, accumulation in P.
  virtual void gemm(T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) = 0;
  // C (P) = alpha op(A) op(B) + beta C: weight gradients (beta = 1) and router logits (beta = 0).
  virtual void gemm_acc(P* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) = 0;

  // ---- embedding -----------------------------------------------------------------------------------
  // out (N, Dm) = wte[tokens]
  virtual void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int Dm) = 0;
  // dwte (V, Dm) += scatter of dout (N, Dm) by token; deterministic (same result on every run).
  virtual void embedding_backward(P* dwte, const T* dout, const int32_t* tokens, int N, int Dm, int V) = 0;

  // ---- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w ---------------------------------------------------
  // out (N, Dm), rstd (N) saved for the backward.
  virtual void rmsnorm_forward(T* out, P* rstd, const T* inp, const T* weight, int N, int Dm, float eps) = 0;
  // dinp (N, Dm) += (the residual stream), dweight (Dm) +=.
  virtual void rmsnorm_backward(T* dinp, P* dweight, const T* dout, const T* inp, const T* weight,
                                const P* rstd, int N, int Dm) = 0;

  // ---- causal ALiBi attention ----------------------------------------------------------------------
  // qkv (B, S, 3, H, Dh): per token the H query heads, then H key heads, then H value heads.
  // out (B, S, H, Dh); lse (B, H, S) the log-sum-exp of each query's scores, saved for the backward.
  // Score(i, j) = q_i . k_j / sqrt(Dh) - slopes[h] * (i - j) for j <= i. slopes (H) in device memory.
  virtual void attention_forward(T* out, P* lse, const T* qkv, const float* slopes, const AttnDims& d) = 0;
  // dqkv (B, S, 3, H, Dh) =.
  virtual void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const P* lse, const float* slopes,
                                  const AttnDims& d) = 0;

  // ---- SwiGLU: out = silu(gate) * up, with h13 (N, 2F) holding [gate | up] per row ---------------------
  virtual void swiglu_forward(T* out, const T* h13, int N, int F) = 0;
  // dh13 (N, 2F) =.
  virtual void swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F) = 0;

  // ---- router ----------------------------------------------------------------------------------------
  // probs (N, E) = softmax(logits) in P; lse (N) = logsumexp(logits); routing_map (N, K) the experts
  // of the K largest probabilities in descending order (ties: lower expert index first); gates (N, K)
  // their probabilities, renormalised to sum to 1 when norm = Renormalize.
  virtual void router_forward(int32_t* routing_map, P* gates, P* probs, P* lse, const P* logits, const RouteDims& d,
                              GateNorm norm) = 0;
  // dlogits (N, E) =, from: dgates (N, K) the gradient of the loss w.r.t. gates; prob_grad (E) a
  // gradient added to every dprobs[t, e] (the balance loss: coef * E * f_e / N * loss scale); z_scale
  // times d(lse_t^2)/dlogits (the z-loss, 0 for none).
  virtual void router_backward(P* dlogits, const P* dgates, const P* prob_grad, const P* probs, const P* lse,
                               const int32_t* routing_map, const P* gates, float z_scale, const RouteDims& d,
                               GateNorm norm) = 0;
  // Balance statistics: counts (E) = tokens that chose each expert (host), prob_sum (E) = sum over
  // tokens of probs (host). Synchronises.
  virtual void router_stats(int64_t* counts_host, double* prob_sum_host, const int32_t* routing_map, const P* probs,
                            const RouteDims& d) = 0;

  // ---- dispatch / combine (local part; the all-to-all lives in moe.h) -------------------------
  // Routing plan by a stable counting sort of the N*K choices by expert (token order within an expert).
  // capacity < 0: dropless. Else an expert keeps its first `capacity` tokens and drops the rest.
  // slot (N, K) = row of each choice in the permuted order, -1 if dropped; row_src (R) = token of each
  // permuted row; tokens_per_expert (E, host) = rows kept per expert; returns R = their sum.
  // Synchronises (the sizes are needed on the host).
  virtual int moe_route_plan(int32_t* slot, int32_t* row_src, int64_t* tokens_per_expert_host,
                             const int32_t* routing_map, const RouteDims& d, int capacity) = 0;
  // out (R, Dm) = inp[row_src] (gather the token rows in expert order).
  virtual void moe_permute(T* out, const T* inp, const int32_t* row_src, const PermuteDims& d) = 0;
  // dinp (N, Dm) = sum over the token's kept choices of dout[slot] (a gather; dropped choices add 0).
  virtual void moe_permute_backward(T* dinp, const T* dout, const int32_t* slot, const DispatchDims& d) = 0;
  // out (N, Dm) = sum_k gates[t, k] * expert_out[slot[t, k]] over kept choices.
  virtual void moe_combine(T* out, const T* expert_out, const P* gates, const int32_t* slot, const DispatchDims& d) = 0;
  // dexpert_out (R, Dm) = gates * dout[token]; dgates (N, K) = dout[t] . expert_out[slot] (0 if dropped).
  virtual void moe_combine_backward(T* dexpert_out, P* dgates, const T* dout, const T* expert_out, const P* gates,
                                    const int32_t* slot, const DispatchDims& d) = 0;

  // ---- loss --------------------------------------------------------------------------------------------
  // losses (N) = -log softmax(logits)[target] in P. If dlogits is not null, dlogits (N, V) =
  // (softmax - onehot(target)) * dloss (dlogits may alias logits).
  virtual void cross_entropy(P* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss,
                             int N, int V) = 0;

  // ---- elementwise and reductions ----------------------------------------------------------------------
  virtual void add_inplace(T* x, const T* y, size_t n) = 0;                 // x += y
  virtual void to_compute(T* out, const P* in, size_t n) = 0;               // P -> T
  virtual double sum_squares(const P* x, size_t n) = 0;                     // synchronises
  // sums_host[g] (n_groups, host) = the sum over the spans of group g (spans_host: n_spans, host) of
  // their sums of squares, each taken as sum_squares takes it, added in span order: the squared
  // gradient norm of many tensors in one pass and one wait. Synchronises (once).
  virtual void sum_squares_groups(double* sums_host, int n_groups, const SquaresSpan<P>* spans_host, int n_spans) = 0;
  virtual double sum(const P* x, size_t n) = 0;                            // synchronises
  virtual void adamw(P* param, const P* grad, P* m, P* v, size_t n, const AdamWArgs& args) = 0;
};

// The ALiBi slopes of Press et al. for n heads (host): for a power of two n, 2^(-8 (h+1) / n);
// otherwise the slopes of the largest power of two n' < n, then every other slope of 2 n'.
void alibi_slopes(float* slopes_host, int n_heads);

}  // namespace mt
