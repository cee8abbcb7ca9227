// Why: every linear layer of the CPU backend is one OpenBLAS call; this file checks the shape against
// the leading dimensions (a wrong one would read out of bounds silently) and handles the empty cases
// that BLAS leaves to the caller.
#include <algorithm>

#include "engine/core/check.h"
#include "engine/cpu/blas.h"
#include "engine/cpu/kernels.h"

namespace mt::cpu {

template <typename T>
void gemm(T* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  MT_CHECK(s.m >= 0 && s.n >= 0 && s.k >= 0, "gemm sizes m ", s.m, " n ", s.n, " k ", s.k);
  // Row-major: the stored A is m x k (k x m when transposed), its rows lda apart; likewise B, C.
  const int a_cols = s.trans_a == Trans::No ? s.k : s.m;
  const int b_cols = s.trans_b == Trans::No ? s.n : s.k;
  MT_CHECK(s.lda >= std::max(1, a_cols) && s.ldb >= std::max(1, b_cols) && s.ldc >= std::max(1, s.n),
           "gemm leading dimensions lda ", s.lda, " ldb ", s.ldb, " ldc ", s.ldc, " too small for m ", s.m, " n ",
           s.n, " k ", s.k);
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
void gemm_acc(acc_t<T>* c, const T* a, const T* b, const GemmShape& s, float alpha, float beta) {
  // On the CPU the accumulation type is the compute type itself, so this is the same GEMM.
  static_assert(std::is_same_v<acc_t<T>, T>, "the CPU backend computes in its accumulation type");
  gemm<T>(c, a, b, s, alpha, beta);
}

template void gemm<float>(float*, const float*, const float*, const GemmShape&, float, float);
template void gemm<double>(double*, const double*, const double*, const GemmShape&, float, float);
template void gemm_acc<float>(float*, const float*, const float*, const GemmShape&, float, float);
template void gemm_acc<double>(double*, const double*, const double*, const GemmShape&, float, float);

}  // namespace mt::cpu
