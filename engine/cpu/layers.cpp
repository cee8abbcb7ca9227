// Why: the row-wise layers of the CPU backend (embedding, RMSNorm, SwiGLU, cross-entropy): memory-bound
// loops, parallel over rows with OpenMP and vectorised over the row. Reductions over rows (the weight
// gradients of the embedding and RMSNorm) run per block of columns, each block walking the rows in
// order, so they are deterministic for any thread count without per-thread partial sums.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/core/check.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/parallel.h"
#include "engine/cpu/vec_math.h"

namespace mt {
using namespace cpu;

namespace {

// Columns per task of the column-parallel reductions: a cache line of doubles or four of floats per
// row, and enough blocks at model widths (>= 6 at Dm = 384) to keep two threads busy.
constexpr int kColumnBlock = 64;

int column_blocks(int Dm) { return (Dm + kColumnBlock - 1) / kColumnBlock; }

}  // namespace

// ---- embedding -----------------------------------------------------------------------------------------

template <typename T>
void CpuOps<T>::embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int Dm) {
#pragma omp parallel for schedule(static) if (size_t(N) * Dm > cpu::kParallelMin)
  for (int t = 0; t < N; ++t)
    std::memcpy(out + size_t(t) * Dm, wte + size_t(tokens[t]) * Dm, sizeof(T) * Dm);
}

template <typename T>
void CpuOps<T>::embedding_backward(acc_t<T>* dwte, const T* dout, const int32_t* tokens, int N, int Dm, int V) {
  for (int t = 0; t < N; ++t) MT_CHECK(tokens[t] >= 0 && tokens[t] < V, "token ", tokens[t], " not in [0, ", V, ")");
  // Each column block adds the tokens' rows in token order: a scatter without races or atomics.
  const int nb = column_blocks(Dm);
#pragma omp parallel for schedule(static) if (size_t(N) * Dm > cpu::kParallelMin)
  for (int cb = 0; cb < nb; ++cb) {
    const int c0 = cb * kColumnBlock, w = std::min(kColumnBlock, Dm - c0);
    for (int t = 0; t < N; ++t) {
      acc_t<T>* d = dwte + size_t(tokens[t]) * Dm + c0;
      const T* g = dout + size_t(t) * Dm + c0;
#pragma omp simd
      for (int c = 0; c < w; ++c) d[c] += g[c];
    }
  }
}

// ---- RMSNorm -------------------------------------------------------------------------------------------

template <typename T>
void CpuOps<T>::rmsnorm_forward(T* out, acc_t<T>* rstd, const T* inp, const T* weight, int N, int Dm, float eps) {
#pragma omp parallel for schedule(static) if (size_t(N) * Dm > cpu::kParallelMin)
  for (int t = 0; t < N; ++t) {
    const T* x = inp + size_t(t) * Dm;
    T* y = out + size_t(t) * Dm;
    P ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int c = 0; c < Dm; ++c) ss += P(x[c]) * P(x[c]);
    const P r = P(1) / std::sqrt(ss / P(Dm) + P(eps));
    rstd[t] = r;
#pragma omp simd
    for (int c = 0; c < Dm; ++c) y[c] = T(P(x[c]) * r * P(weight[c]));
  }
}

// y = x r w with r = (mean(x^2) + eps)^(-1/2): dr/dx_c = -r^3 x_c / Dm, so with g = dy * w,
// dx_c = r g_c - r^3 x_c (g . x) / Dm and dw_c = sum over rows of dy_c x_c r.
template <typename T>
void CpuOps<T>::rmsnorm_backward(T* dinp, acc_t<T>* dweight, const T* dout, const T* inp, const T* weight,
                                 const acc_t<T>* rstd, int N, int Dm) {
  // dweight first: it reads dout, which the dinp pass may overwrite when dinp aliases dout.
  const int nb = column_blocks(Dm);
#pragma omp parallel for schedule(static) if (size_t(N) * Dm > cpu::kParallelMin)
  for (int cb = 0; cb < nb; ++cb) {
    const int c0 = cb * kColumnBlock, w = std::min(kColumnBlock, Dm - c0);
    P acc[kColumnBlock] = {};
    for (int t = 0; t < N; ++t) {
      const T* g = dout + size_t(t) * Dm + c0;
      const T* x = inp + size_t(t) * Dm + c0;
      const P r = rstd[t];
#pragma omp simd
      for (int c = 0; c < w; ++c) acc[c] += P(g[c]) * P(x[c]) * r;
    }
    for (int c = 0; c < w; ++c) dweight[c0 + c] += acc[c];
  }
#pragma omp parallel for schedule(static) if (size_t(N) * Dm > cpu::kParallelMin)
  for (int t = 0; t < N; ++t) {
    const T* g = dout + size_t(t) * Dm;
    const T* x = inp + size_t(t) * Dm;
    T* dx = dinp + size_t(t) * Dm;
    const P r = rstd[t];
    P gx = 0;
#pragma omp simd reduction(+ : gx)
    for (int c = 0; c < Dm; ++c) gx += P(g[c]) * P(weight[c]) * P(x[c]);
    const P coef = r * r * r * gx / P(Dm);
#pragma omp simd
    for (int c = 0; c < Dm; ++c) dx[c] += T(r * P(g[c]) * P(weight[c]) - coef * P(x[c]));
  }
}

// ---- SwiGLU: out = silu(a) * b with silu(a) = a sigmoid(a) ------------------------------------------------

template <typename T>
void CpuOps<T>::swiglu_forward(T* out, const T* h13, int N, int F) {
#pragma omp parallel for schedule(static) if (size_t(N) * F > cpu::kParallelMin)
  for (int t = 0; t < N; ++t) {
    const T* a = h13 + size_t(t) * 2 * F;
    const T* b = a + F;
    T* y = out + size_t(t) * F;
#pragma omp simd
    for (int f = 0; f < F; ++f) {
      const T sig = T(1) / (T(1) + vexp(-a[f]));
      y[f] = a[f] * sig * b[f];
    }
  }
}

// d silu(a) / da = sig (1 + a (1 - sig)).
template <typename T>
void CpuOps<T>::swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F) {
#pragma omp parallel for schedule(static) if (size_t(N) * F > cpu::kParallelMin)
  for (int t = 0; t < N; ++t) {
    const T* a = h13 + size_t(t) * 2 * F;
    const T* b = a + F;
    const T* g = dout + size_t(t) * F;
    T* da = dh13 + size_t(t) * 2 * F;
    T* db = da + F;
#pragma omp simd
    for (int f = 0; f < F; ++f) {
      const T sig = T(1) / (T(1) + vexp(-a[f]));
      da[f] = g[f] * b[f] * sig * (T(1) + a[f] * (T(1) - sig));
      db[f] = g[f] * a[f] * sig;
    }
  }
}

// ---- cross-entropy ------------------------------------------------------------------------------------------

template <typename T>
void CpuOps<T>::cross_entropy(acc_t<T>* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss, int N,
                              int V) {
  for (int t = 0; t < N; ++t) MT_CHECK(targets[t] >= 0 && targets[t] < V, "target ", targets[t], " not in [0, ", V, ")");
#pragma omp parallel for schedule(static) if (size_t(N) * V > cpu::kParallelMin)
  for (int t = 0; t < N; ++t) {
    const T* z = logits + size_t(t) * V;
    P mx = P(z[0]);
#pragma omp simd reduction(max : mx)
    for (int v = 0; v < V; ++v) mx = std::max(mx, P(z[v]));
    P s = 0;
#pragma omp simd reduction(+ : s)
    for (int v = 0; v < V; ++v) s += vexp(P(z[v]) - mx);
    const P lse = mx + std::log(s);
    const int target = targets[t];
    losses[t] = lse - P(z[target]);  // before dlogits, which may be this very row, is written
    if (!dlogits) continue;
    T* d = dlogits + size_t(t) * V;
    const P scale = P(dloss);
#pragma omp simd
    for (int v = 0; v < V; ++v) d[v] = T(vexp(P(z[v]) - lse) * scale);
    d[target] -= T(scale);
  }
}

MT_CPU_INSTANTIATE(MT_OPS_LAYERS)

}  // namespace mt
