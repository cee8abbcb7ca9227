// Why: a linear layer y = x W^T (x (M, Kin), W (Nout, Kin), PyTorch's [out, in]) and its backward as
// GEMMs on the op interface, with their FLOPs counted, written once for the dense transformer
// (model_impl.h) and the MoE layer (moe.h).
#pragma once

#include "engine/ops/ops.h"
#include "engine/model/profile.h"

namespace mt {

// y (M, Nout) = x W^T + beta y.
template <typename T>
void linear_forward(Ops<T>& ops, Profiler& prof, OpFamily f, T* y, const T* x, const T* W, int M, int Kin, int Nout,
                    float beta = 0.f) {
  ops.gemm(y, x, W, GemmShape::nt(M, Nout, Kin), 1.f, beta);
  prof.add_flops(f, 2.0 * M * Nout * Kin);
}

// The same, written in the accumulation type (the router's logits).
template <typename T>
void linear_forward_acc(Ops<T>& ops, Profiler& prof, OpFamily f, acc_t<T>* y, const T* x, const T* W, int M,
                        int Kin, int Nout) {
  ops.gemm_acc(y, x, W, GemmShape::nt(M, Nout, Kin), 1.f, 0.f);
  prof.add_flops(f, 2.0 * M * Nout * Kin);
}

// dx (M, Kin) = dy W (written; added with dx_beta 1), dW (Nout, Kin) += dy^T x.
template <typename T>
void linear_backward(Ops<T>& ops, Profiler& prof, OpFamily f, T* dx, acc_t<T>* dW, const T* dy, const T* x,
                     const T* W, int M, int Kin, int Nout, float dx_beta = 0.f) {
  ops.gemm(dx, dy, W, GemmShape::nn(M, Kin, Nout), 1.f, dx_beta);
  ops.gemm_acc(dW, dy, x, GemmShape::tn(Nout, Kin, M), 1.f, 1.f);
  prof.add_flops(f, 4.0 * M * Nout * Kin);
}

}  // namespace mt
