// Why: one typed entry point to OpenBLAS's row-major GEMM for the kernels (float -> sgemm, double ->
// dgemm), so that templated code calls blas_gemm<T> and never names the precision.
//
// Threading: this is the OpenMP build of OpenBLAS. Called outside a parallel region it uses
// OMP_NUM_THREADS threads; called inside one (attention) it runs on the calling thread alone. Checked
// by timing on the 2-core machine: 20000 sgemm of 64 x 256 x 64 from inside `omp parallel` on two
// threads run at 2.0x the single-thread rate (172 vs 86 GFLOP/s), i.e. no oversubscription.
#pragma once

#include <cblas.h>

#include "engine/ops/ops.h"

namespace mt::cpu {

inline CBLAS_TRANSPOSE cblas_trans(Trans t) { return t == Trans::Yes ? CblasTrans : CblasNoTrans; }

// C[m, n] = alpha op(A) op(B) + beta C, row-major. The caller guarantees m, n, k > 0.
inline void blas_gemm(Trans ta, Trans tb, int m, int n, int k, float alpha, const float* a, int lda,
                      const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, cblas_trans(ta), cblas_trans(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void blas_gemm(Trans ta, Trans tb, int m, int n, int k, double alpha, const double* a, int lda,
                      const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, cblas_trans(ta), cblas_trans(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace mt::cpu
