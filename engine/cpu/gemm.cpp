// Why: every linear layer of the CPU backend is one OpenBLAS call; this file checks the shape
// (GemmShape::check) and handles the empty cases that BLAS leaves to the caller. Also the GEMM rate
// that is the CPU's MFU reference (gemm_rate.h).
#include <algorithm>
#include <chrono>
#include <vector>

#include "engine/cpu/blas.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/gemm_rate.h"

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

double cpu::measure_gemm_flops() {
  // A square sgemm large enough to reach OpenBLAS's steady rate; the best of seven after a warm-up (a
  // single short timing on a busy machine would understate the peak and put MFU above 100%). Measured once.
  static const double rate = [] {
    const int n = 1024;
    std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n, 0.f);
    double best = 0;
    for (int rep = 0; rep < 8; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      blas_gemm(Trans::No, Trans::No, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (rep > 0) best = std::max(best, 2.0 * n * n * n / dt);
    }
    return best;
  }();
  return rate;
}

}  // namespace mt
