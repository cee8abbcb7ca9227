// Why: the kernel interface, declared once. The model (engine/model: model_impl.h, moe.h, linear.h,
// experts.h) is written once against Ops<T>; the CPU backend (engine/cpu, T = float or double) and the
// CUDA backend (cuda/, T = float or bf16) implement it. Every op is one line of the table below, with
// its contract next to it; the table generates the pure virtuals of Ops<T>, the overrides of CpuOps and
// CudaOps (MT_OPS_OVERRIDE), each backend file's explicit instantiations (MT_CPU_INSTANTIATE,
// MT_CUDA_INSTANTIATE of the op's family) and the counting wrapper of the CPU backend
// (engine/cpu/counting_ops.h), and tests/test_op_coverage.cpp requires every op of the table to be
// called by some case of tests/op_cases.h. Adding an op: one entry here, its CPU body, its CUDA body,
// one case.
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
//   tokens, H heads of Dh; the sizes of attention, routing, dispatch / combine, permute and the grouped
//   linear layers travel as one struct each (engine/ops/dims.h), so that their order cannot be mixed up.
// - The MoE ops do not wait for the device: their sizes and statistics stay in device memory (rows past
//   the kept ones are marked, buffers sized for the most).
// - Names follow DESIGN.md and Megatron: routing_map (the chosen experts), probs, gates (the chosen
//   probabilities), tokens_per_expert, capacity.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/core/device.h"
#include "engine/core/dtype.h"
#include "engine/ops/dims.h"

namespace mt {

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

// Whether an op waits for the device before it returns (the table's last column).
enum class OpSync { Async, HostSync };

// The attention kernels of the CUDA backend (the CPU has one): the hand-written flash kernels, or
// cuDNN's fused SDPA graph (bf16 only; fp32 runs stay native). model.attention_impl chooses.
enum class AttentionImpl { Native, Cudnn };

// ---- the table ----------------------------------------------------------------------------------------
// One X(return type, name, (parameters), (arguments), sync) per op, in families: one list per backend
// file (the CPU file, then the CUDA file), which instantiates its family. T and P are the list's
// arguments; a return type names neither. (arguments) are the parameters' names, for the generated
// code that forwards a call (CountingOps). sync is an OpSync: HostSync for the ops that wait for the
// device (their results are needed on the host), Async for the rest. The contract of each op is the
// comment above its entry.

// (engine/cpu/gemm.cpp, cuda/cuda_ops.cpp)
#define MT_OPS_GEMM(X, T, P)                                                                                   \
  /* C (T) = alpha op(A) op(B) + beta C, accumulation in P. */                                                 \
  X(void, gemm, (T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta),                   \
    (c, a, b, s, alpha, beta), Async)                                                                          \
  /* C (P) = alpha op(A) op(B) + beta C: weight gradients (beta = 1) and router logits (beta = 0). */          \
  X(void, gemm_acc, (P* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta),               \
    (c, a, b, s, alpha, beta), Async)

// (engine/cpu/layers.cpp, cuda/layers.cu)
#define MT_OPS_LAYERS(X, T, P)                                                                                 \
  /* ---- embedding ---- */                                                                                    \
  /* out (N, Dm) = wte[tokens] */                                                                              \
  X(void, embedding_forward, (T* out, const int32_t* tokens, const T* wte, int N, int Dm),                     \
    (out, tokens, wte, N, Dm), Async)                                                                          \
  /* dwte (V, Dm) += scatter of dout (N, Dm) by token; deterministic (same result on every run). */            \
  X(void, embedding_backward, (P* dwte, const T* dout, const int32_t* tokens, int N, int Dm, int V),           \
    (dwte, dout, tokens, N, Dm, V), Async)                                                                     \
  /* ---- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w ---- */                                                   \
  /* out (N, Dm), rstd (N) saved for the backward. */                                                          \
  X(void, rmsnorm_forward, (T* out, P* rstd, const T* inp, const T* weight, int N, int Dm, float eps),         \
    (out, rstd, inp, weight, N, Dm, eps), Async)                                                               \
  /* dinp (N, Dm) += (the residual stream), dweight (Dm) +=. */                                                \
  X(void, rmsnorm_backward, (T* dinp, P* dweight, const T* dout, const T* inp, const T* weight, const P* rstd, \
    int N, int Dm),                                                                                            \
    (dinp, dweight, dout, inp, weight, rstd, N, Dm), Async)                                                    \
  /* ---- SwiGLU: out (N, F) = silu(gate) * up, with h13 (N, 2F) holding [gate | up] per row ---- */           \
  X(void, swiglu_forward, (T* out, const T* h13, int N, int F), (out, h13, N, F), Async)                       \
  /* dh13 (N, 2F) =. */                                                                                        \
  X(void, swiglu_backward, (T* dh13, const T* dout, const T* h13, int N, int F),                               \
    (dh13, dout, h13, N, F), Async)                                                                            \
  /* ---- loss ---- */                                                                                         \
  /* losses (N) = -log softmax(logits)[target] in P. If dlogits is not null, dlogits (N, V) = */               \
  /* (softmax - onehot(target)) * dloss (dlogits may alias logits). */                                         \
  X(void, cross_entropy, (P* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss, int N,  \
    int V),                                                                                                    \
    (losses, dlogits, logits, targets, dloss, N, V), Async)

// (engine/cpu/attention.cpp, cuda/attention.cu)
#define MT_OPS_ATTENTION(X, T, P)                                                                              \
  /* Causal ALiBi attention. qkv (B, S, 3, H, Dh): per token the H query heads, then H key heads, then H */    \
  /* value heads. out (B, S, H, Dh); lse (B, H, S) the log-sum-exp of each query's scores, saved for the */    \
  /* backward. Score(i, j) = q_i . k_j / sqrt(Dh) - slopes[h] * (i - j) for j <= i. slopes (H) in device */    \
  /* memory. */                                                                                                \
  X(void, attention_forward, (T* out, P* lse, const T* qkv, const float* slopes, const AttnDims& d),           \
    (out, lse, qkv, slopes, d), Async)                                                                         \
  /* dqkv (B, S, 3, H, Dh) =. */                                                                               \
  X(void, attention_backward, (T* dqkv, const T* dout, const T* qkv, const T* out, const P* lse,               \
    const float* slopes, const AttnDims& d),                                                                   \
    (dqkv, dout, qkv, out, lse, slopes, d), Async)

// (engine/cpu/router.cpp, cuda/moe.cu)
#define MT_OPS_MOE(X, T, P)                                                                                    \
  /* ---- router ---- */                                                                                       \
  /* probs (N, E) = softmax(logits) in P; lse (N) = logsumexp(logits); routing_map (N, K) the experts */       \
  /* of the K largest probabilities in descending order (ties: lower expert index first); gates (N, K) */      \
  /* their probabilities, renormalised to sum to 1 when norm = Renormalize. select_bias (E), when not */       \
  /* null, is added to the probabilities for the top-K only (the expert bias of aux-loss-free */               \
  /* balancing): it changes which experts are chosen, never the gates. */                                      \
  X(void, router_forward, (int32_t* routing_map, P* gates, P* probs, P* lse, const P* logits,                  \
    const P* select_bias, const RouteDims& d, GateNorm norm),                                                  \
    (routing_map, gates, probs, lse, logits, select_bias, d, norm), Async)                                     \
  /* dlogits (N, E) =, from: dgates (N, K) the gradient of the loss w.r.t. gates; the balance loss's */        \
  /* gradient added to every dprobs[t, e], P(balance_scale * (counts[e] / N) / N) computed in double, with */  \
  /* counts (E) from router_stats (balance_scale = coef * loss scale * E: d(E sum_i f_i p_i)/d probs); */      \
  /* z_scale times d(lse_t^2)/dlogits (the z-loss, 0 for none). */                                             \
  X(void, router_backward, (P* dlogits, const P* dgates, const int64_t* counts, double balance_scale,          \
    const P* probs, const P* lse, const int32_t* routing_map, const P* gates, float z_scale,                   \
    const RouteDims& d, GateNorm norm),                                                                        \
    (dlogits, dgates, counts, balance_scale, probs, lse, routing_map, gates, z_scale, d, norm), Async)         \
  /* Balance statistics, on the device: counts (E) = tokens that chose each expert; losses[0] = the */         \
  /* balance loss E sum_e (counts[e] / N) (prob_sum[e] / N), prob_sum[e] the sum over tokens of probs in */    \
  /* double; losses[1] = the z-loss sum_t lse_t^2 / N (0 when lse is null); losses[2] = the router */          \
  /* entropy -sum_t sum_e p ln p / N (nats; 0 ln 0 = 0); *bad |= 1 if a routing_map entry is outside */        \
  /* [0, E) (read with the step's statistics). */                                                              \
  X(void, router_stats, (double* losses, int64_t* counts, int64_t* bad, const int32_t* routing_map,            \
    const P* probs, const P* lse, const RouteDims& d),                                                         \
    (losses, counts, bad, routing_map, probs, lse, d), Async)                                                  \
  /* ---- dispatch / combine (the local part; the all-to-all lives in engine/model/dispatcher.h) ---- */       \
  /* Routing plan by a stable counting sort of the N*K choices by expert (token order within an expert). */    \
  /* capacity < 0: dropless. Else an expert keeps its first `capacity` tokens and drops the rest. */           \
  /* slot (N, K) = row of each choice in the permuted order, -1 if dropped; row_src (N K) = token of */        \
  /* each permuted row, -1 for rows [R, N K) past the kept ones; expert_offsets (E + 1) = the first row of */  \
  /* each expert, expert_offsets[E] = R; *bad |= 1 if a routing_map entry is outside [0, E). All on the */     \
  /* device: nothing waits. */                                                                                 \
  X(void, moe_route_plan, (int32_t* slot, int32_t* row_src, int64_t* expert_offsets, int64_t* bad,             \
    const int32_t* routing_map, const RouteDims& d, int capacity),                                             \
    (slot, row_src, expert_offsets, bad, routing_map, d, capacity), Async)                                     \
  /* out (R, Dm) = inp[row_src] (gather the token rows in expert order); a row whose row_src is -1 is */       \
  /* not written. */                                                                                           \
  X(void, moe_permute, (T* out, const T* inp, const int32_t* row_src, const PermuteDims& d),                   \
    (out, inp, row_src, d), Async)                                                                             \
  X(void, moe_permute_backward, (T* dinp, const T* dout, const int32_t* slot, const DispatchDims& d),          \
    (dinp, dout, slot, d), Async)                                                                              \
  /* out (N, Dm) = sum_k gates[t, k] * expert_out[slot[t, k]] over kept choices. */                            \
  X(void, moe_combine, (T* out, const T* expert_out, const P* gates, const int32_t* slot,                      \
    const DispatchDims& d),                                                                                    \
    (out, expert_out, gates, slot, d), Async)                                                                  \
  /* dexpert_out (R, Dm) = gates * dout[token]; dgates (N, K) = dout[t] . expert_out[slot] (0 if dropped). */  \
  X(void, moe_combine_backward, (T* dexpert_out, P* dgates, const T* dout, const T* expert_out,                \
    const P* gates, const int32_t* slot, const DispatchDims& d),                                               \
    (dexpert_out, dgates, dout, expert_out, gates, slot, d), Async)

// (engine/cpu/experts.cpp, cuda/experts.cu)
#define MT_OPS_EXPERTS(X, T, P)                                                                                \
  /* ---- grouped linear layers (the routed experts; GroupedLinearDims, StackedWeight in dims.h) ---- */       \
  /* Group g owns rows [offsets[g], offsets[g+1]) of the row buffers; offsets (G + 1, device) start at 0, */   \
  /* do not decrease and end at most at d.rows; rows past offsets[G] are neither read nor written. One */      \
  /* launch on the GPU whatever the rows per group: nothing waits. y (rows, Out) = x (rows, In) W_g^T. */      \
  X(void, grouped_linear_forward, (T* y, const T* x, const StackedWeight<const T>& w, const int64_t* offsets,  \
    const GroupedLinearDims& d),                                                                               \
    (y, x, w, offsets, d), Async)                                                                              \
  /* dx (rows, In) = dy (rows, Out) W_g (written, summed over all Out in P); dW_g (the stacked halves */       \
  /* in dw.top, dw.bottom) += dy^T x over the group's rows. */                                                 \
  X(void, grouped_linear_backward, (T* dx, const StackedWeight<P>& dw, const T* dy, const T* x,                \
    const StackedWeight<const T>& w, const int64_t* offsets, const GroupedLinearDims& d),                      \
    (dx, dw, dy, x, w, offsets, d), Async)

// (engine/cpu/elementwise.cpp, cuda/elementwise.cu)
#define MT_OPS_ELEMENTWISE(X, T, P)                                                                            \
  /* x (n) += y */                                                                                             \
  X(void, add_inplace, (T* x, const T* y, size_t n), (x, y, n), Async)                                         \
  /* out (n) = in, P -> T */                                                                                   \
  X(void, to_compute, (T* out, const P* in, size_t n), (out, in, n), Async)                                    \
  /* sum of x^2 */                                                                                             \
  X(double, sum_squares, (const P* x, size_t n), (x, n), HostSync)                                             \
  /* sums_host[g] (n_groups, host) = the sum over the spans of group g (spans_host: n_spans, host) of */       \
  /* their sums of squares, each taken as sum_squares takes it, added in span order: the squared */            \
  /* gradient norm of many tensors in one pass and one wait. */                                                \
  X(void, sum_squares_groups, (double* sums_host, int n_groups, const SquaresSpan<P>* spans_host,              \
    int n_spans),                                                                                              \
    (sums_host, n_groups, spans_host, n_spans), HostSync)                                                      \
  /* sum of x */                                                                                               \
  X(double, sum, (const P* x, size_t n), (x, n), HostSync)                                                     \
  /* one AdamW step over n elements (AdamWArgs) */                                                             \
  X(void, adamw, (P* param, const P* grad, P* m, P* v, size_t n, const AdamWArgs& args),                       \
    (param, grad, m, v, n, args), Async)

// Every op, family by family.
#define MT_OPS(X, T, P)                                                                                        \
  MT_OPS_GEMM(X, T, P) MT_OPS_LAYERS(X, T, P) MT_OPS_ATTENTION(X, T, P) MT_OPS_MOE(X, T, P)                    \
  MT_OPS_EXPERTS(X, T, P) MT_OPS_ELEMENTWISE(X, T, P)

// What the table generates here and in the backends: the interface's pure virtuals and a backend's
// overrides (in its class body: MT_OPS(MT_OPS_OVERRIDE, T, P)).
#define MT_OPS_PURE_VIRTUAL(ret, name, params, args, sync) virtual ret name params = 0;
#define MT_OPS_OVERRIDE(ret, name, params, args, sync) ret name params override;

template <typename T>
class Ops {
 public:
  using P = acc_t<T>;
  virtual ~Ops() = default;
  virtual Device& device() = 0;

  MT_OPS(MT_OPS_PURE_VIRTUAL, T, P)
};

// The ALiBi slopes of Press et al. for n heads (host): for a power of two n, 2^(-8 (h+1) / n);
// otherwise the slopes of the largest power of two n' < n, then every other slope of 2 n'.
void alibi_slopes(float* slopes_host, int n_heads);

}  // namespace mt
