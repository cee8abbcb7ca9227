// Why: the MoE router and the local half of dispatch / combine on the CPU. The router is a softmax and a
// top-K per token; the routing plan is a stable counting sort of the N*K choices by expert, so that each
// expert's rows are contiguous and in token order (which the experts' grouped GEMMs and the capacity
// rule rely on); permute / combine move rows by that plan.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/core/check.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/parallel.h"
#include "engine/cpu/vec_math.h"

namespace mt {
using namespace cpu;

// ---- router -------------------------------------------------------------------------------------------------

template <typename T>
void CpuOps<T>::router_forward(int32_t* routing_map, acc_t<T>* gates, acc_t<T>* probs, acc_t<T>* lse,
                               const acc_t<T>* logits, const acc_t<T>* select_bias, const RouteDims& dims,
                               GateNorm norm) {
  const int N = dims.N, E = dims.E, K = dims.K;
  MT_CHECK(E > 0 && K > 0 && K <= E, "router with E ", E, " K ", K);
#pragma omp parallel for schedule(static) if (size_t(N) * E > cpu::kParallelMin)
  for (int t = 0; t < N; ++t) {
    const P* z = logits + size_t(t) * E;
    P* p = probs + size_t(t) * E;
    P mx = z[0];
    for (int e = 1; e < E; ++e) mx = std::max(mx, z[e]);
    P s = 0;
    for (int e = 0; e < E; ++e) {
      p[e] = vexp(z[e] - mx);
      s += p[e];
    }
    lse[t] = mx + std::log(s);
    for (int e = 0; e < E; ++e) p[e] /= s;
    // Top-K by repeated selection: the largest remaining score (the probability, plus select_bias when
    // given), the lower index on ties (strict > keeps the first maximum). Chosen experts are remembered
    // in idx, so K * (E + K) steps. The gates are the probabilities: the bias only selects.
    auto score = [&](int e) { return select_bias ? p[e] + select_bias[e] : p[e]; };
    int32_t* idx = routing_map + size_t(t) * K;
    P* gate = gates + size_t(t) * K;
    P chosen_sum = 0;
    for (int k = 0; k < K; ++k) {
      int best = -1;
      for (int e = 0; e < E; ++e) {
        if (std::find(idx, idx + k, e) != idx + k) continue;
        if (best < 0 || score(e) > score(best)) best = e;
      }
      idx[k] = best;
      gate[k] = p[best];
      chosen_sum += p[best];
    }
    if (norm == GateNorm::Renormalize)
      for (int k = 0; k < K; ++k) gate[k] /= chosen_sum;
  }
}

// d loss / d probs[t, j] = the balance gradient pg[j] + (for the chosen j = idx[k]) dgates[k], through
// the renormalisation g_k = s_k / S (S = the chosen probabilities' sum) when on:
// d/ds_j = (dgate_j - sum_k dgate_k g_k) / S. Then the softmax backward
// dlogit_e = p_e (dprob_e - sum_j p_j dprob_j), plus z_scale d(lse^2)/dlogit_e = z_scale 2 lse p_e.
template <typename T>
void CpuOps<T>::router_backward(acc_t<T>* dlogits, const acc_t<T>* dgates, const int64_t* counts,
                                double balance_scale, const acc_t<T>* probs, const acc_t<T>* lse,
                                const int32_t* routing_map, const acc_t<T>* gates, float z_scale,
                                const RouteDims& dims, GateNorm norm) {
  const int N = dims.N, E = dims.E, K = dims.K;
  std::vector<P> pg(E);
  for (int j = 0; j < E; ++j) pg[j] = P(balance_scale * (double(counts[j]) / N) / N);
#pragma omp parallel if (size_t(N) * E > cpu::kParallelMin)
  {
    std::vector<P> dprob(E);
#pragma omp for schedule(static)
    for (int t = 0; t < N; ++t) {
      const P* p = probs + size_t(t) * E;
      const int32_t* idx = routing_map + size_t(t) * K;
      const P* dg = dgates + size_t(t) * K;
      for (int e = 0; e < E; ++e) dprob[e] = pg[e];
      if (norm == GateNorm::Renormalize) {
        const P* g = gates + size_t(t) * K;
        P chosen_sum = 0, dot = 0;
        for (int k = 0; k < K; ++k) {
          chosen_sum += p[idx[k]];
          dot += dg[k] * g[k];
        }
        for (int k = 0; k < K; ++k) dprob[idx[k]] += (dg[k] - dot) / chosen_sum;
      } else {
        for (int k = 0; k < K; ++k) dprob[idx[k]] += dg[k];
      }
      P pd = 0;
      for (int e = 0; e < E; ++e) pd += p[e] * dprob[e];
      const P z = P(2) * P(z_scale) * lse[t];
      P* d = dlogits + size_t(t) * E;
      for (int e = 0; e < E; ++e) d[e] = p[e] * (dprob[e] - pd + z);
    }
  }
}

// O(N E): small next to the router GEMM, so one thread in a fixed order.
template <typename T>
void CpuOps<T>::router_stats(double* losses, int64_t* counts, int64_t* bad, const int32_t* routing_map,
                             const acc_t<T>* probs, const acc_t<T>* lse, const RouteDims& dims) {
  const int N = dims.N, E = dims.E, K = dims.K;
  std::fill(counts, counts + E, int64_t(0));
  for (size_t i = 0; i < size_t(N) * K; ++i) {
    if (routing_map[i] < 0 || routing_map[i] >= E) {
      *bad |= 1;
      continue;
    }
    ++counts[routing_map[i]];
  }
  std::vector<double> prob_sum(E, 0.0), plogp(E, 0.0);
  for (int t = 0; t < N; ++t)
    for (int e = 0; e < E; ++e) {
      const double p = double(probs[size_t(t) * E + e]);
      prob_sum[e] += p;
      if (p > 0) plogp[e] += p * std::log(p);
    }
  double bal = 0, entropy = 0;
  for (int i = 0; i < E; ++i) bal += (double(counts[i]) / N) * (prob_sum[i] / N);
  for (int i = 0; i < E; ++i) entropy -= plogp[i];
  losses[0] = double(E) * bal;
  losses[1] = lse ? sum_squares(lse, size_t(N)) / N : 0.0;
  losses[2] = entropy / N;
}

// ---- dispatch / combine -----------------------------------------------------------------------------------------

template <typename T>
void CpuOps<T>::moe_route_plan(int32_t* slot, int32_t* row_src, int64_t* expert_offsets, int64_t* bad,
                               const int32_t* routing_map, const RouteDims& dims, int capacity) {
  const int N = dims.N, E = dims.E, K = dims.K;
  const size_t choices = size_t(N) * K;
  MT_CHECK(choices <= size_t(std::numeric_limits<int32_t>::max()), "routing plan of ", choices, " choices");
  std::vector<int64_t> chosen(E, 0);
  for (size_t i = 0; i < choices; ++i) {
    if (routing_map[i] < 0 || routing_map[i] >= E) {
      *bad |= 1;
      continue;
    }
    ++chosen[routing_map[i]];
  }
  // Kept rows per expert and where each expert's rows start.
  expert_offsets[0] = 0;
  for (int e = 0; e < E; ++e)
    expert_offsets[e + 1] = expert_offsets[e] + (capacity < 0 ? chosen[e] : std::min<int64_t>(chosen[e], capacity));
  // Choices in token order (t, then k): an expert's first `capacity` choices are its first tokens.
  std::vector<int64_t> filled(E, 0);
  for (size_t i = 0; i < choices; ++i) {
    const int e = routing_map[i];
    if (e >= 0 && e < E && filled[e] < expert_offsets[e + 1] - expert_offsets[e]) {
      const int64_t row = expert_offsets[e] + filled[e]++;
      slot[i] = int32_t(row);
      row_src[row] = int32_t(i / K);
    } else {
      slot[i] = -1;
    }
  }
  std::fill(row_src + expert_offsets[E], row_src + choices, -1);
}

template <typename T>
void CpuOps<T>::moe_permute(T* out, const T* inp, const int32_t* row_src, const PermuteDims& dims) {
  const int R = dims.R, Dm = dims.Dm;
#pragma omp parallel for schedule(static) if (size_t(R) * Dm > cpu::kParallelMin)
  for (int r = 0; r < R; ++r)
    if (row_src[r] >= 0) std::memcpy(out + size_t(r) * Dm, inp + size_t(row_src[r]) * Dm, sizeof(T) * Dm);
}

template <typename T>
void CpuOps<T>::moe_permute_backward(T* dinp, const T* dout, const int32_t* slot, const DispatchDims& dims) {
  const int N = dims.N, K = dims.K, Dm = dims.Dm;
#pragma omp parallel for schedule(static) if (size_t(N) * K * Dm > cpu::kParallelMin)
  for (int t = 0; t < N; ++t) {
    T* d = dinp + size_t(t) * Dm;
    std::fill(d, d + Dm, T(0));
    for (int k = 0; k < K; ++k) {
      const int32_t row = slot[size_t(t) * K + k];
      if (row < 0) continue;
      const T* g = dout + size_t(row) * Dm;
#pragma omp simd
      for (int c = 0; c < Dm; ++c) d[c] += g[c];
    }
  }
}

template <typename T>
void CpuOps<T>::moe_combine(T* out, const T* expert_out, const acc_t<T>* gates, const int32_t* slot,
                            const DispatchDims& dims) {
  const int N = dims.N, K = dims.K, Dm = dims.Dm;
#pragma omp parallel for schedule(static) if (size_t(N) * K * Dm > cpu::kParallelMin)
  for (int t = 0; t < N; ++t) {
    T* y = out + size_t(t) * Dm;
    std::fill(y, y + Dm, T(0));
    for (int k = 0; k < K; ++k) {
      const int32_t row = slot[size_t(t) * K + k];
      if (row < 0) continue;
      const T g = T(gates[size_t(t) * K + k]);
      const T* x = expert_out + size_t(row) * Dm;
#pragma omp simd
      for (int c = 0; c < Dm; ++c) y[c] += g * x[c];
    }
  }
}

// Each kept choice owns one row of dexpert_out, so the rows are written without races.
template <typename T>
void CpuOps<T>::moe_combine_backward(T* dexpert_out, acc_t<T>* dgates, const T* dout, const T* expert_out,
                                     const acc_t<T>* gates, const int32_t* slot, const DispatchDims& dims) {
  const int N = dims.N, K = dims.K, Dm = dims.Dm;
#pragma omp parallel for schedule(static) if (size_t(N) * K * Dm > cpu::kParallelMin)
  for (int t = 0; t < N; ++t) {
    const T* g = dout + size_t(t) * Dm;
    for (int k = 0; k < K; ++k) {
      const size_t i = size_t(t) * K + k;
      const int32_t row = slot[i];
      if (row < 0) {
        dgates[i] = 0;
        continue;
      }
      const T* x = expert_out + size_t(row) * Dm;
      T* dx = dexpert_out + size_t(row) * Dm;
      const T w = T(gates[i]);
      P dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int c = 0; c < Dm; ++c) {
        dot += P(g[c]) * P(x[c]);
        dx[c] = w * g[c];
      }
      dgates[i] = dot;
    }
  }
}

MT_CPU_INSTANTIATE(MT_OPS_MOE)

}  // namespace mt
