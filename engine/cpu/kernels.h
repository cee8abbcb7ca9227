// Why: the CPU reference kernels as free functions, one per Ops<T> method with the same arguments in
// the same order (outputs first, then inputs, saved statistics, sizes), so that tests and benchmarks
// can call a kernel without the virtual interface. CpuOps<T> (cpu_ops.h) forwards to them. T is float
// or double and P = acc_t<T> (the same type on the CPU).
//
// Gradient convention (as in engine/ops.h): parameter gradients ACCUMULATE (+=); activation gradients
// are WRITTEN (=), except the residual stream: rmsnorm_backward ADDS into dinp.
//
// Every kernel is deterministic (the same bits on every run with the same thread count, which a
// bit-identical resume needs): no float atomics, and every sum of our own loops is taken in an order
// fixed by the sizes alone (reductions over rows run per column in row order, or over fixed-size
// chunks combined in chunk order), so those do not even depend on the thread count. The GEMMs are
// OpenBLAS's, deterministic for a fixed thread count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/core/dtype.h"
#include "engine/model/ops.h"

namespace mt::cpu {

// ---- GEMM (OpenBLAS) ---------------------------------------------------------------------------------
template <typename T>
void gemm(T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta);
template <typename T>
void gemm_acc(acc_t<T>* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta);

// ---- embedding ---------------------------------------------------------------------------------------
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int C);
template <typename T>
void embedding_backward(acc_t<T>* dwte, const T* dout, const int32_t* tokens, int N, int C, int V);

// ---- RMSNorm -------------------------------------------------------------------------------------------
template <typename T>
void rmsnorm_forward(T* out, acc_t<T>* rstd, const T* inp, const T* weight, int N, int C, float eps);
// dinp +=, dweight +=. dinp may alias dout.
template <typename T>
void rmsnorm_backward(T* dinp, acc_t<T>* dweight, const T* dout, const T* inp, const T* weight,
                      const acc_t<T>* rstd, int N, int C);

// ---- causal ALiBi attention ------------------------------------------------------------------------------
template <typename T>
void attention_forward(T* out, acc_t<T>* lse, const T* qkv, const float* slopes, int B, int T_, int H, int Dh);
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const acc_t<T>* lse,
                        const float* slopes, int B, int T_, int H, int Dh);

// ---- SwiGLU --------------------------------------------------------------------------------------------
template <typename T>
void swiglu_forward(T* out, const T* h13, int N, int F);
template <typename T>
void swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F);

// ---- router ----------------------------------------------------------------------------------------------
template <typename T>
void router_forward(int32_t* topk_idx, acc_t<T>* topk_gate, acc_t<T>* probs, acc_t<T>* lse,
                    const acc_t<T>* logits, int N, int E, int K, GateNorm norm);
template <typename T>
void router_backward(acc_t<T>* dlogits, const acc_t<T>* dgate, const acc_t<T>* prob_grad, const acc_t<T>* probs,
                     const acc_t<T>* lse, const int32_t* topk_idx, const acc_t<T>* topk_gate, float z_scale, int N,
                     int E, int K, GateNorm norm);
template <typename T>
void router_stats(int64_t* counts_host, double* prob_sum_host, const int32_t* topk_idx, const acc_t<T>* probs,
                  int N, int E, int K);

// ---- dispatch / combine ------------------------------------------------------------------------------------
// Not templated: integers only.
int moe_route_plan(int32_t* slot, int32_t* row_src, int64_t* tokens_per_expert_host, const int32_t* topk_idx,
                   int N, int K, int E, int capacity);
template <typename T>
void moe_permute(T* out, const T* inp, const int32_t* row_src, int R, int C);
template <typename T>
void moe_permute_backward(T* dinp, const T* dout, const int32_t* slot, int N, int K, int C);
template <typename T>
void moe_combine(T* out, const T* expert_out, const acc_t<T>* gate, const int32_t* slot, int N, int K, int C);
template <typename T>
void moe_combine_backward(T* dexpert_out, acc_t<T>* dgate, const T* dout, const T* expert_out,
                          const acc_t<T>* gate, const int32_t* slot, int N, int K, int C);

// ---- experts (grouped SwiGLU) ------------------------------------------------------------------------------
template <typename T>
void experts_forward(T* out, T* h13, T* act, const T* inp, const T* w1, const T* w3, const T* w2,
                     const int64_t* offsets, int E, int C, int F);
template <typename T>
void experts_backward(T* dinp, acc_t<T>* dw1, acc_t<T>* dw3, acc_t<T>* dw2, T* dh13, T* dact, const T* dout,
                      const T* inp, const T* h13, const T* act, const T* w1, const T* w3, const T* w2,
                      const int64_t* offsets, int E, int C, int F);

// ---- loss ----------------------------------------------------------------------------------------------------
// dlogits may alias logits (each row is read before it is overwritten); dlogits null: losses only.
template <typename T>
void cross_entropy(acc_t<T>* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss, int N,
                   int V);

// ---- elementwise, reductions, optimizer -----------------------------------------------------------------------
template <typename T>
void add_inplace(T* x, const T* y, size_t n);
template <typename T>
void to_compute(T* out, const acc_t<T>* in, size_t n);
template <typename T>
void to_acc(acc_t<T>* out, const T* in, size_t n);
template <typename T>
void scale_inplace(acc_t<T>* x, float s, size_t n);
// Sums in double over fixed chunks combined in chunk order: the same bits for any thread count.
template <typename T>
double sum_squares(const acc_t<T>* x, size_t n);
template <typename T>
double sum(const acc_t<T>* x, size_t n);
template <typename T>
void adamw(acc_t<T>* param, const acc_t<T>* grad, acc_t<T>* m, acc_t<T>* v, size_t n, const AdamWArgs& args);

}  // namespace mt::cpu
