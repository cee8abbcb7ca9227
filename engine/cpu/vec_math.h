// Why: exp is the inner operation of softmax, attention, cross-entropy and SiLU, and glibc's expf is
// vectorised only under -ffast-math, which this project does not use. vexp(float) is a branch-free
// polynomial that GCC vectorises in `#pragma omp simd` loops; vexp(double) is std::exp (the double
// backend is the exact reference of the gradient checks, where speed does not matter).
#pragma once

#include <cmath>
#include <cstdint>

namespace mt::cpu {

// e^x for float: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two parts for an exact reduction),
// e^r by the degree-7 minimax polynomial of Cephes' expf, 2^n put in the exponent bits. Relative
// error below 1e-7 (8.3e-8 measured against double exp on a 1e-4 grid) on [-87, 88], where the
// result is a normal float. Below -87 (e^-87 = 1.6e-38) the result is 0, -inf included; above 88 it
// is e^88, never inf; NaN stays NaN.
inline float vexp(float x) {
  const bool underflow = x < -87.0f;
  x = underflow ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  // Round to nearest by adding and subtracting 1.5 * 2^23 (std::floor / nearbyint do not vectorise
  // without -ffast-math); exact for |x log2 e| < 2^22.
  const float magic = 12582912.0f;
  const float n = (x * 1.44269504088896341f + magic) - magic;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // (A memcpy here would keep GCC from vectorising; the builtin is the same bit copy.)
  const float y = p * __builtin_bit_cast(float, (int32_t(n) + 127) << 23);
  return underflow ? 0.0f : y;
}

inline double vexp(double x) { return std::exp(x); }

}  // namespace mt::cpu
