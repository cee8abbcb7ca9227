// Why: the CUDA kernels' host entry points as free functions, one per Ops<T> method with the same
// arguments in the same order (after the Context), so that CudaOps<T> (cuda_ops.h) is a thin
// forwarding layer, and tests and benchmarks can call one kernel directly. T is float (the fp32 mode) or mt::bf16; P = acc_t<T> = float for both. All pointers are
// device memory unless named *_host; every function only queues work on the context's stream, except
// those documented as synchronising.
//
// Conventions (engine/model/ops.h): parameter gradients ACCUMULATE (+=) into P buffers, activation gradients
// are WRITTEN (=), except rmsnorm_backward which ADDS into dinp (the residual stream). Every kernel is
// deterministic: no floating-point atomics; reductions run in an order fixed by the sizes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/context.h"
#include "engine/core/dtype.h"
#include "engine/model/ops.h"

namespace mt::cuda {

// ---- layers (layers.cu) -----------------------------------------------------------------------------
template <typename T>
void embedding_forward(Context& ctx, T* out, const int32_t* tokens, const T* wte, int N, int C);
// Synchronises: the tokens are sorted on the host (a deterministic scatter without atomics).
template <typename T>
void embedding_backward(Context& ctx, float* dwte, const T* dout, const int32_t* tokens, int N, int C, int V);
template <typename T>
void rmsnorm_forward(Context& ctx, T* out, float* rstd, const T* inp, const T* weight, int N, int C, float eps);
// dinp may alias dout.
template <typename T>
void rmsnorm_backward(Context& ctx, T* dinp, float* dweight, const T* dout, const T* inp, const T* weight,
                      const float* rstd, int N, int C);
template <typename T>
void swiglu_forward(Context& ctx, T* out, const T* h13, int N, int F);
template <typename T>
void swiglu_backward(Context& ctx, T* dh13, const T* dout, const T* h13, int N, int F);
// dlogits may alias logits; a target outside [0, V) gives a NaN loss (caught by the trainer's check).
template <typename T>
void cross_entropy(Context& ctx, float* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss,
                   int N, int V);

// ---- attention (attention.cu) -------------------------------------------------------------------------
template <typename T>
void attention_forward(Context& ctx, T* out, float* lse, const T* qkv, const float* slopes, int B, int T_, int H,
                       int Dh);
template <typename T>
void attention_backward(Context& ctx, T* dqkv, const T* dout, const T* qkv, const T* out, const float* lse,
                        const float* slopes, int B, int T_, int H, int Dh);

// ---- router, dispatch, combine (moe.cu) -----------------------------------------------------------------
void router_forward(Context& ctx, int32_t* routing_map, float* gates, float* probs, float* lse,
                    const float* logits, const RouteDims& d, GateNorm norm);
void router_backward(Context& ctx, float* dlogits, const float* dgates, const float* prob_grad, const float* probs,
                     const float* lse, const int32_t* routing_map, const float* gates, float z_scale,
                     const RouteDims& d, GateNorm norm);
// Synchronises.
void router_stats(Context& ctx, int64_t* counts_host, double* prob_sum_host, const int32_t* routing_map,
                  const float* probs, const RouteDims& d);
// Synchronises.
int moe_route_plan(Context& ctx, int32_t* slot, int32_t* row_src, int64_t* tokens_per_expert_host,
                   const int32_t* routing_map, const RouteDims& d, int capacity);
template <typename T>
void moe_permute(Context& ctx, T* out, const T* inp, const int32_t* row_src, int R, int C);
template <typename T>
void moe_permute_backward(Context& ctx, T* dinp, const T* dout, const int32_t* slot, int N, int K, int C);
template <typename T>
void moe_combine(Context& ctx, T* out, const T* expert_out, const float* gate, const int32_t* slot, int N, int K,
                 int C);
template <typename T>
void moe_combine_backward(Context& ctx, T* dexpert_out, float* dgate, const T* dout, const T* expert_out,
                          const float* gate, const int32_t* slot, int N, int K, int C);

// ---- GEMM (cuda_ops.cpp through Context::gemm) --------------------------------------------------------------
template <typename T>
void gemm(Context& ctx, T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta);
template <typename T>
void gemm_acc(Context& ctx, float* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta);

// ---- elementwise, reductions, optimizer (elementwise.cu) ------------------------------------------------------
template <typename T>
void add_inplace(Context& ctx, T* x, const T* y, size_t n);
template <typename T>
void to_compute(Context& ctx, T* out, const float* in, size_t n);
template <typename T>
void to_acc(Context& ctx, float* out, const T* in, size_t n);
// Synchronise; the sum is in double over fixed chunks, the same bits on every run.
double sum_squares(Context& ctx, const float* x, size_t n);
double sum(Context& ctx, const float* x, size_t n);
void adamw(Context& ctx, float* param, const float* grad, float* m, float* v, size_t n, const AdamWArgs& args);

}  // namespace mt::cuda
