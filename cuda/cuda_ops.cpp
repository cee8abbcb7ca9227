// Why: CudaOps<T> is a thin forwarding layer over cuda/kernels.h (the .cu files hold the kernels); the
// GEMMs are here, one Context::gemm call each: bf16 or fp32 operands, fp32 accumulation, output in T
// (gemm) or fp32 (gemm_acc: weight gradients and router logits). Instantiated for float and bf16. bf16
// attention goes to cuDNN when the context says so (model.attention_impl).
#include "cuda/cuda_ops.h"

#include <type_traits>

#include "cuda/cudnn_attention.h"
#include "cuda/kernels.h"

namespace mt::cuda {

namespace {
template <typename T>
constexpr cudaDataType_t cuda_type() {
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
}
}  // namespace

template <typename T>
void gemm(Context& ctx, T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  ctx.gemm(c, cuda_type<T>(), a, b, cuda_type<T>(), s, alpha, beta);
}
template <typename T>
void gemm_acc(Context& ctx, float* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  ctx.gemm(c, CUDA_R_32F, a, b, cuda_type<T>(), s, alpha, beta);
}
template void gemm<float>(Context&, float*, const float*, const float*, const GemmShape&, float, float);
template void gemm<mt::bf16>(Context&, mt::bf16*, const mt::bf16*, const mt::bf16*, const GemmShape&, float, float);
template void gemm_acc<float>(Context&, float*, const float*, const float*, const GemmShape&, float, float);
template void gemm_acc<mt::bf16>(Context&, float*, const mt::bf16*, const mt::bf16*, const GemmShape&, float, float);

template <typename T>
Device& CudaOps<T>::device() {
  return ctx_.device();
}

template <typename T>
void CudaOps<T>::gemm(T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  cuda::gemm<T>(ctx_, c, a, b, s, alpha, beta);
}
template <typename T>
void CudaOps<T>::gemm_acc(P* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  cuda::gemm_acc<T>(ctx_, c, a, b, s, alpha, beta);
}

template <typename T>
void CudaOps<T>::embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int C) {
  cuda::embedding_forward<T>(ctx_, out, tokens, wte, N, C);
}
template <typename T>
void CudaOps<T>::embedding_backward(P* dwte, const T* dout, const int32_t* tokens, int N, int C, int V) {
  cuda::embedding_backward<T>(ctx_, dwte, dout, tokens, N, C, V);
}

template <typename T>
void CudaOps<T>::rmsnorm_forward(T* out, P* rstd, const T* inp, const T* weight, int N, int C, float eps) {
  cuda::rmsnorm_forward<T>(ctx_, out, rstd, inp, weight, N, C, eps);
}
template <typename T>
void CudaOps<T>::rmsnorm_backward(T* dinp, P* dweight, const T* dout, const T* inp, const T* weight, const P* rstd,
                                  int N, int C) {
  cuda::rmsnorm_backward<T>(ctx_, dinp, dweight, dout, inp, weight, rstd, N, C);
}

template <typename T>
void CudaOps<T>::attention_forward(T* out, P* lse, const T* qkv, const float* slopes, const AttnDims& d) {
  if constexpr (std::is_same_v<T, mt::bf16>)
    if (ctx_.attention() == AttentionImpl::Cudnn)
      return ctx_.cudnn().forward(out, lse, qkv, slopes, d.B, d.S, d.H, d.Dh);
  cuda::attention_forward<T>(ctx_, out, lse, qkv, slopes, d.B, d.S, d.H, d.Dh);
}
template <typename T>
void CudaOps<T>::attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const P* lse,
                                    const float* slopes, const AttnDims& d) {
  if constexpr (std::is_same_v<T, mt::bf16>)
    if (ctx_.attention() == AttentionImpl::Cudnn)
      return ctx_.cudnn().backward(dqkv, dout, qkv, out, lse, slopes, d.B, d.S, d.H, d.Dh);
  cuda::attention_backward<T>(ctx_, dqkv, dout, qkv, out, lse, slopes, d.B, d.S, d.H, d.Dh);
}

template <typename T>
void CudaOps<T>::swiglu_forward(T* out, const T* h13, int N, int F) {
  cuda::swiglu_forward<T>(ctx_, out, h13, N, F);
}
template <typename T>
void CudaOps<T>::swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F) {
  cuda::swiglu_backward<T>(ctx_, dh13, dout, h13, N, F);
}

template <typename T>
void CudaOps<T>::router_forward(int32_t* routing_map, P* gates, P* probs, P* lse, const P* logits, const RouteDims& d,
                                GateNorm norm) {
  cuda::router_forward(ctx_, routing_map, gates, probs, lse, logits, d, norm);
}
template <typename T>
void CudaOps<T>::router_backward(P* dlogits, const P* dgates, const P* prob_grad, const P* probs, const P* lse,
                                 const int32_t* routing_map, const P* gates, float z_scale, const RouteDims& d,
                                 GateNorm norm) {
  cuda::router_backward(ctx_, dlogits, dgates, prob_grad, probs, lse, routing_map, gates, z_scale, d, norm);
}
template <typename T>
void CudaOps<T>::router_stats(int64_t* counts_host, double* prob_sum_host, const int32_t* routing_map, const P* probs,
                              const RouteDims& d) {
  cuda::router_stats(ctx_, counts_host, prob_sum_host, routing_map, probs, d);
}

template <typename T>
int CudaOps<T>::moe_route_plan(int32_t* slot, int32_t* row_src, int64_t* tokens_per_expert_host,
                               const int32_t* routing_map, const RouteDims& d, int capacity) {
  return cuda::moe_route_plan(ctx_, slot, row_src, tokens_per_expert_host, routing_map, d, capacity);
}
template <typename T>
void CudaOps<T>::moe_permute(T* out, const T* inp, const int32_t* row_src, int R, int C) {
  cuda::moe_permute<T>(ctx_, out, inp, row_src, R, C);
}
template <typename T>
void CudaOps<T>::moe_permute_backward(T* dinp, const T* dout, const int32_t* slot, int N, int K, int C) {
  cuda::moe_permute_backward<T>(ctx_, dinp, dout, slot, N, K, C);
}
template <typename T>
void CudaOps<T>::moe_combine(T* out, const T* expert_out, const P* gates, const int32_t* slot, int N, int K, int C) {
  cuda::moe_combine<T>(ctx_, out, expert_out, gates, slot, N, K, C);
}
template <typename T>
void CudaOps<T>::moe_combine_backward(T* dexpert_out, P* dgates, const T* dout, const T* expert_out, const P* gates,
                                      const int32_t* slot, int N, int K, int C) {
  cuda::moe_combine_backward<T>(ctx_, dexpert_out, dgates, dout, expert_out, gates, slot, N, K, C);
}

template <typename T>
void CudaOps<T>::cross_entropy(P* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss, int N,
                               int V) {
  cuda::cross_entropy<T>(ctx_, losses, dlogits, logits, targets, dloss, N, V);
}

template <typename T>
void CudaOps<T>::add_inplace(T* x, const T* y, size_t n) {
  cuda::add_inplace<T>(ctx_, x, y, n);
}
template <typename T>
void CudaOps<T>::to_compute(T* out, const P* in, size_t n) {
  cuda::to_compute<T>(ctx_, out, in, n);
}
template <typename T>
double CudaOps<T>::sum_squares(const P* x, size_t n) {
  return cuda::sum_squares(ctx_, x, n);
}
template <typename T>
double CudaOps<T>::sum(const P* x, size_t n) {
  return cuda::sum(ctx_, x, n);
}
template <typename T>
void CudaOps<T>::adamw(P* param, const P* grad, P* m, P* v, size_t n, const AdamWArgs& args) {
  cuda::adamw(ctx_, param, grad, m, v, n, args);
}

template class CudaOps<float>;
template class CudaOps<mt::bf16>;

}  // namespace mt::cuda
