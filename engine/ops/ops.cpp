// Why: what every backend shares on the host: the ALiBi slopes (part of the numerics contract,
// DESIGN.md "The model") and the checks of the GEMM shape and the attention sizes.
#include "engine/ops/ops.h"

#include <algorithm>
#include <cmath>

#include "engine/core/check.h"

namespace mt {

void GemmShape::check() const {
  MT_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm sizes m ", m, " n ", n, " k ", k);
  // Row-major: the stored A is m x k (k x m when transposed), its rows lda apart; likewise B, C.
  const int a_cols = trans_a == Trans::No ? k : m;
  const int b_cols = trans_b == Trans::No ? n : k;
  MT_CHECK(lda >= std::max(1, a_cols) && ldb >= std::max(1, b_cols) && ldc >= std::max(1, n),
           "gemm leading dimensions lda ", lda, " ldb ", ldb, " ldc ", ldc, " too small for m ", m, " n ", n, " k ",
           k);
}

void AttnDims::check() const {
  MT_CHECK(B >= 0 && S >= 0 && H > 0 && Dh > 0, "attention sizes B ", B, " S ", S, " H ", H, " Dh ", Dh);
}

// Press et al.: for a power of two n, slope_h = 2^(-8 (h + 1) / n). Otherwise the n' = 2^floor(log2 n)
// slopes of n', then slopes 0, 2, 4, ... of 2 n' (2^(-8 (2 i + 1) / (2 n'))), the first n - n' of them.
void alibi_slopes(float* slopes_host, int n_heads) {
  MT_CHECK(n_heads > 0, "alibi_slopes for ", n_heads, " heads");
  int np = 1;
  while (np * 2 <= n_heads) np *= 2;
  for (int h = 0; h < np; ++h) slopes_host[h] = float(std::exp2(-8.0 * (h + 1) / np));
  for (int i = 0; i < n_heads - np; ++i) slopes_host[np + i] = float(std::exp2(-8.0 * (2 * i + 1) / (2.0 * np)));
}

}  // namespace mt
