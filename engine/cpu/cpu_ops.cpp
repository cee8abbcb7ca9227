// Why: CpuOps<T> is a thin forwarding layer; the kernels and their contracts live in kernels.h and the
// files beside it. Instantiated here for float and double.
#include "engine/cpu/cpu_ops.h"

#include "engine/cpu/kernels.h"

namespace mt {

template <typename T>
Device& CpuOps<T>::device() {
  return cpu_device();
}

template <typename T>
void CpuOps<T>::gemm(T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  cpu::gemm(c, a, b, s, alpha, beta);
}
template <typename T>
void CpuOps<T>::gemm_acc(P* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  cpu::gemm_acc<T>(c, a, b, s, alpha, beta);
}

template <typename T>
void CpuOps<T>::embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int C) {
  cpu::embedding_forward(out, tokens, wte, N, C);
}
template <typename T>
void CpuOps<T>::embedding_backward(P* dwte, const T* dout, const int32_t* tokens, int N, int C, int V) {
  cpu::embedding_backward<T>(dwte, dout, tokens, N, C, V);
}

template <typename T>
void CpuOps<T>::rmsnorm_forward(T* out, P* rstd, const T* inp, const T* weight, int N, int C, float eps) {
  cpu::rmsnorm_forward<T>(out, rstd, inp, weight, N, C, eps);
}
template <typename T>
void CpuOps<T>::rmsnorm_backward(T* dinp, P* dweight, const T* dout, const T* inp, const T* weight, const P* rstd,
                                 int N, int C) {
  cpu::rmsnorm_backward<T>(dinp, dweight, dout, inp, weight, rstd, N, C);
}

template <typename T>
void CpuOps<T>::attention_forward(T* out, P* lse, const T* qkv, const float* slopes, int B, int T_, int H,
                                  int Dh) {
  cpu::attention_forward<T>(out, lse, qkv, slopes, B, T_, H, Dh);
}
template <typename T>
void CpuOps<T>::attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const P* lse,
                                   const float* slopes, int B, int T_, int H, int Dh) {
  cpu::attention_backward<T>(dqkv, dout, qkv, out, lse, slopes, B, T_, H, Dh);
}

template <typename T>
void CpuOps<T>::swiglu_forward(T* out, const T* h13, int N, int F) {
  cpu::swiglu_forward(out, h13, N, F);
}
template <typename T>
void CpuOps<T>::swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F) {
  cpu::swiglu_backward(dh13, dout, h13, N, F);
}

template <typename T>
void CpuOps<T>::router_forward(int32_t* topk_idx, P* topk_gate, P* probs, P* lse, const P* logits, int N, int E,
                               int K, GateNorm norm) {
  cpu::router_forward<T>(topk_idx, topk_gate, probs, lse, logits, N, E, K, norm);
}
template <typename T>
void CpuOps<T>::router_backward(P* dlogits, const P* dgate, const P* prob_grad, const P* probs, const P* lse,
                                const int32_t* topk_idx, const P* topk_gate, float z_scale, int N, int E, int K,
                                GateNorm norm) {
  cpu::router_backward<T>(dlogits, dgate, prob_grad, probs, lse, topk_idx, topk_gate, z_scale, N, E, K, norm);
}
template <typename T>
void CpuOps<T>::router_stats(int64_t* counts_host, double* prob_sum_host, const int32_t* topk_idx, const P* probs,
                             int N, int E, int K) {
  cpu::router_stats<T>(counts_host, prob_sum_host, topk_idx, probs, N, E, K);
}

template <typename T>
int CpuOps<T>::moe_route_plan(int32_t* slot, int32_t* row_src, int64_t* tokens_per_expert_host,
                              const int32_t* topk_idx, int N, int K, int E, int capacity) {
  return cpu::moe_route_plan(slot, row_src, tokens_per_expert_host, topk_idx, N, K, E, capacity);
}
template <typename T>
void CpuOps<T>::moe_permute(T* out, const T* inp, const int32_t* row_src, int R, int C) {
  cpu::moe_permute(out, inp, row_src, R, C);
}
template <typename T>
void CpuOps<T>::moe_permute_backward(T* dinp, const T* dout, const int32_t* slot, int N, int K, int C) {
  cpu::moe_permute_backward(dinp, dout, slot, N, K, C);
}
template <typename T>
void CpuOps<T>::moe_combine(T* out, const T* expert_out, const P* gate, const int32_t* slot, int N, int K, int C) {
  cpu::moe_combine<T>(out, expert_out, gate, slot, N, K, C);
}
template <typename T>
void CpuOps<T>::moe_combine_backward(T* dexpert_out, P* dgate, const T* dout, const T* expert_out, const P* gate,
                                     const int32_t* slot, int N, int K, int C) {
  cpu::moe_combine_backward<T>(dexpert_out, dgate, dout, expert_out, gate, slot, N, K, C);
}

template <typename T>
void CpuOps<T>::experts_forward(T* out, T* h13, T* act, const T* inp, const T* w1, const T* w3, const T* w2,
                                const int64_t* offsets, int E, int C, int F) {
  cpu::experts_forward(out, h13, act, inp, w1, w3, w2, offsets, E, C, F);
}
template <typename T>
void CpuOps<T>::experts_backward(T* dinp, P* dw1, P* dw3, P* dw2, T* dh13, T* dact, const T* dout, const T* inp,
                                 const T* h13, const T* act, const T* w1, const T* w3, const T* w2,
                                 const int64_t* offsets, int E, int C, int F) {
  cpu::experts_backward<T>(dinp, dw1, dw3, dw2, dh13, dact, dout, inp, h13, act, w1, w3, w2, offsets, E, C, F);
}

template <typename T>
void CpuOps<T>::cross_entropy(P* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss, int N,
                              int V) {
  cpu::cross_entropy<T>(losses, dlogits, logits, targets, dloss, N, V);
}

template <typename T>
void CpuOps<T>::add_inplace(T* x, const T* y, size_t n) {
  cpu::add_inplace(x, y, n);
}
template <typename T>
void CpuOps<T>::to_compute(T* out, const P* in, size_t n) {
  cpu::to_compute<T>(out, in, n);
}
template <typename T>
void CpuOps<T>::to_acc(P* out, const T* in, size_t n) {
  cpu::to_acc<T>(out, in, n);
}
template <typename T>
void CpuOps<T>::scale_inplace(P* x, float s, size_t n) {
  cpu::scale_inplace<T>(x, s, n);
}
template <typename T>
double CpuOps<T>::sum_squares(const P* x, size_t n) {
  return cpu::sum_squares<T>(x, n);
}
template <typename T>
double CpuOps<T>::sum(const P* x, size_t n) {
  return cpu::sum<T>(x, n);
}
template <typename T>
void CpuOps<T>::adamw(P* param, const P* grad, P* m, P* v, size_t n, const AdamWArgs& args) {
  cpu::adamw<T>(param, grad, m, v, n, args);
}

template class CpuOps<float>;
template class CpuOps<double>;

}  // namespace mt
