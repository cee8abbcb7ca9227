// Why: the ALiBi slopes are part of the numerics contract (DESIGN.md, "The model") and shared by every
// backend, so they are computed once, on the host, here.
#include "engine/model/ops.h"

#include <cmath>

#include "engine/core/check.h"

namespace mt {

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
