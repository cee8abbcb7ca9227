// Why: the GEMM family of CudaOps<T> (MT_OPS_GEMM of engine/ops/ops.h) and the class's one explicit
// instantiation (its vtable), which instantiates the GEMM family with it; the other methods are defined,
// next to their kernels, in the .cu file of their family (layers.cu, attention.cu, moe.cu, elementwise.cu)
// and instantiated there (MT_CUDA_INSTANTIATE). Each GEMM is one Context::gemm call (cuBLASLt): bf16
// or fp32 operands, fp32 accumulation, output in T (gemm) or fp32 (gemm_acc: weight gradients and
// router logits).
#include "cuda/cuda_ops.h"

#include <type_traits>

namespace mt::cuda {

namespace {
template <typename T>
constexpr cudaDataType_t cuda_type() {
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
}
}  // namespace

template <typename T>
Device& CudaOps<T>::device() {
  return ctx_.device();
}

template <typename T>
void CudaOps<T>::gemm(T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  ctx_.gemm(c, cuda_type<T>(), a, b, cuda_type<T>(), s, alpha, beta);
}
template <typename T>
void CudaOps<T>::gemm_acc(P* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  ctx_.gemm(c, CUDA_R_32F, a, b, cuda_type<T>(), s, alpha, beta);
}

template class CudaOps<float>;
template class CudaOps<mt::bf16>;

}  // namespace mt::cuda
