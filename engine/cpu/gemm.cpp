// Why: every linear layer of the CPU backend is one OpenBLAS call; this file checks the shape
// (GemmShape::check) and handles the empty cases that BLAS leaves to the caller.
#include "engine/cpu/blas.h"
#include "engine/cpu/cpu_ops.h"

namespace mt {
using namespace cpu;

template <typename T>
void CpuOps<T>::gemm(T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  s.check();
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) {
    // op(A) op(B) is zero: C = beta C (beta 0 writes zeros, whatever C held).
    for (int i = 0; i < s.m; ++i)
      for (int j = 0; j < s.n; ++j) {
        T& x = c[size_t(i) * s.ldc + j];
        x = beta == 0 ? T(0) : T(beta) * x;
      }
    return;
  }
  blas_gemm(s.trans_a, s.trans_b, s.m, s.n, s.k, T(alpha), a, s.lda, b, s.ldb, T(beta), c, s.ldc);
}

template <typename T>
void CpuOps<T>::gemm_acc(acc_t<T>* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  // On the CPU the accumulation type is the compute type itself, so this is the same GEMM.
  static_assert(std::is_same_v<acc_t<T>, T>, "the CPU backend computes in its accumulation type");
  gemm(c, a, b, s, alpha, beta);
}

MT_CPU_INSTANTIATE(MT_OPS_GEMM)

}  // namespace mt
