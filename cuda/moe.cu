// Why: the MoE router and the local half of dispatch / combine of CudaOps<T> (the all-to-all lives in
// engine/model/dispatcher.h). The router is a softmax and a top-K per token (one warp per token); the
// routing plan is a stable counting sort of the N*K choices by expert, in token order within an expert
// (the order the capacity rule and the CPU reference use), built from per-tile ranks and a scan over
// tiles, so it needs neither a global sort nor float atomics. Permute / combine move rows by that plan.
// Nothing here waits for the device: the plan's offsets, the balance statistics and the index checks
// stay in device memory (the MoE layer's record, read once per step).
#include <algorithm>
#include <climits>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"

namespace mt::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxExperts = 2048;  // the router keeps one bit per (lane, slot) of E / 32 slots
constexpr int kPlanTile = 256;     // choices per block of the routing plan

// (value, index) a better choice than (bv, bi): larger value, the lower index on ties.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

// ---- router: one warp per token ------------------------------------------------------------------------------
// The top-K ranks experts by score = probability + select_bias (when given); the gate is the probability.
__global__ void router_forward_kernel(int32_t* routing_map, float* gates, float* probs, float* lse,
                                      const float* logits, const float* select_bias, int N, int E, int K,
                                      bool renormalize) {
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= N) return;
  const float* z = logits + size_t(row) * E;
  float* p = probs + size_t(row) * E;
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32) mx = fmaxf(mx, z[e]);
  mx = warp_max(mx);
  float s = 0.f;
  for (int e = lane; e < E; e += 32) s += expf(z[e] - mx);
  s = warp_sum(s);
  if (lane == 0) lse[row] = mx + logf(s);
  for (int e = lane; e < E; e += 32) p[e] = expf(z[e] - mx) / s;  // each lane rereads only what it wrote
  // Top-K by K rounds of a warp arg-max over the experts not yet chosen; bit k of `taken` marks this
  // lane's expert lane + 32 k as chosen.
  uint64_t taken = 0;
  int32_t* idx = routing_map + size_t(row) * K;
  float* gate = gates + size_t(row) * K;
  float chosen_sum = 0.f;
  for (int k = 0; k < K; ++k) {
    float bv = -INFINITY, bp = 0.f;  // the best score and its probability
    int bi = INT_MAX;
    for (int e = lane, slot = 0; e < E; e += 32, ++slot) {
      const float v = select_bias ? p[e] + select_bias[e] : p[e];
      if (!((taken >> slot) & 1ull) && better(v, e, bv, bi)) {
        bv = v;
        bp = p[e];
        bi = e;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(kFullMask, bv, o);
      const float op = __shfl_xor_sync(kFullMask, bp, o);
      const int oi = __shfl_xor_sync(kFullMask, bi, o);
      if (better(ov, oi, bv, bi)) {
        bv = ov;
        bp = op;
        bi = oi;
      }
    }
    if (bi != INT_MAX && lane == (bi & 31)) taken |= 1ull << (bi >> 5);  // INT_MAX: all NaN
    if (lane == 0) {
      idx[k] = bi;
      gate[k] = select_bias ? bp : bv;
    }
    chosen_sum += select_bias ? bp : bv;
  }
  if (renormalize && lane == 0)
    for (int k = 0; k < K; ++k) gate[k] /= chosen_sum;
}

// d loss / d probs[t, e] = pg[e] + (for a chosen e = idx[k]) dgate[k], through the renormalisation
// when on: (dgate_k - sum_k' dgate_k' g_k') / S, with the balance gradient pg[e] = balance_scale
// (counts[e] / N) / N (in double, rounded to float: the CPU's formula), made once per block in shared
// memory. Then the softmax backward dlogit_e = p_e (dprob_e - sum_j p_j dprob_j) + z_scale 2 lse p_e.
__global__ void router_backward_kernel(float* dlogits, const float* dgate, const int64_t* counts, double balance_scale,
                                       const float* probs, const float* lse, const int32_t* routing_map,
                                       const float* gates, float z_scale, int N, int E, int K, bool renormalize) {
  extern __shared__ float prob_grad[];  // (E)
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    prob_grad[e] = float(balance_scale * (double(counts[e]) / N) / N);
  __syncthreads();
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= N) return;
  const float* p = probs + size_t(row) * E;
  const int32_t* idx = routing_map + size_t(row) * K;
  const float* dg = dgate + size_t(row) * K;
  float chosen_sum = 0.f, dot = 0.f;
  if (renormalize) {
    const float* g = gates + size_t(row) * K;
    for (int k = 0; k < K; ++k) {
      chosen_sum += p[idx[k]];
      dot += dg[k] * g[k];
    }
  }
  auto dprob = [&](int e) {
    float d = prob_grad[e];
    for (int k = 0; k < K; ++k)
      if (idx[k] == e) d += renormalize ? (dg[k] - dot) / chosen_sum : dg[k];
    return d;
  };
  float pd = 0.f;
  for (int e = lane; e < E; e += 32) pd += p[e] * dprob(e);
  pd = warp_sum(pd);
  const float zterm = 2.f * z_scale * lse[row];
  float* d = dlogits + size_t(row) * E;
  for (int e = lane; e < E; e += 32) d[e] = p[e] * (dprob(e) - pd + zterm);
}

// The index check's flag: nonzero when any routing_map entry is outside [0, E).
__device__ __forceinline__ void flag_bad(int64_t* bad) {
  atomicOr(reinterpret_cast<unsigned long long*>(bad), 1ull);
}

__global__ void count_choices_kernel(int64_t* counts, int64_t* bad, const int32_t* routing_map, size_t choices,
                                     int E) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < choices; i += size_t(gridDim.x) * blockDim.x) {
    const int e = routing_map[i];
    // integer: the same result in any order
    if (e >= 0 && e < E) atomicAdd(reinterpret_cast<unsigned long long*>(&counts[e]), 1ull);
    else flag_bad(bad);
  }
}

// prob_sum[e] = sum over tokens of probs[t, e] and plogp[e] = of probs[t, e] ln probs[t, e] (0 ln 0 = 0),
// in double, one block per expert, a fixed order.
__global__ void prob_sum_kernel(double* prob_sum, double* plogp, const float* probs, int N, int E) {
  __shared__ double red[32];
  const int e = blockIdx.x;
  double s = 0, h = 0;
  for (int t = threadIdx.x; t < N; t += blockDim.x) {
    const double p = double(probs[size_t(t) * E + e]);
    s += p;
    if (p > 0) h += p * log(p);
  }
  s = block_sum(s, red);
  h = block_sum(h, red);
  if (threadIdx.x == 0) {
    prob_sum[e] = s;
    plogp[e] = h;
  }
}

// One block: losses[0] = E sum_e (counts[e] / N) (prob_sum[e] / N) (in expert order, as the CPU),
// losses[1] = sum_t lse_t^2 / N in double (0 without lse), losses[2] = -sum_e plogp[e] / N.
__global__ void balance_losses_kernel(double* losses, const int64_t* counts, const double* prob_sum,
                                      const double* plogp, const float* lse, int N, int E) {
  __shared__ double red[32];
  double z = 0;
  if (lse)
    for (int t = threadIdx.x; t < N; t += blockDim.x) z += double(lse[t]) * double(lse[t]);
  z = block_sum(z, red);
  if (threadIdx.x == 0) {
    double bal = 0;
    for (int e = 0; e < E; ++e) bal += (double(counts[e]) / N) * (prob_sum[e] / N);
    losses[0] = double(E) * bal;
    losses[1] = lse ? z / N : 0.0;
    double h = 0;
    for (int e = 0; e < E; ++e) h -= plogp[e];
    losses[2] = h / N;
  }
}

// ---- routing plan -------------------------------------------------------------------------------------------
// 1. Per tile of kPlanTile choices: each choice's rank among the tile's earlier choices of the same
//    expert, and the tile's count per expert.
__global__ void plan_tile_kernel(int32_t* in_rank, int32_t* tile_count, int64_t* bad, const int32_t* routing_map,
                                 int choices, int E) {
  __shared__ int32_t ex[kPlanTile];
  extern __shared__ int32_t cnt[];  // (E)
  for (int e = threadIdx.x; e < E; e += blockDim.x) cnt[e] = 0;
  const int i = blockIdx.x * kPlanTile + threadIdx.x;
  int e = -1;
  if (i < choices) {
    e = routing_map[i];
    if (e < 0 || e >= E) {
      flag_bad(bad);
      e = -1;
    }
  }
  ex[threadIdx.x] = e;
  __syncthreads();
  if (e >= 0) {
    int r = 0;
    for (int j = 0; j < int(threadIdx.x); ++j) r += ex[j] == e;  // all lanes read ex[j] at once: a broadcast
    in_rank[i] = r;
    atomicAdd(&cnt[e], 1);
  }
  __syncthreads();
  for (int x = threadIdx.x; x < E; x += blockDim.x) tile_count[size_t(blockIdx.x) * E + x] = cnt[x];
}

// 2. One thread per expert: the exclusive scan of its counts over tiles (in place), and its total.
__global__ void plan_scan_kernel(int32_t* tile_count, int64_t* total, int tiles, int E) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= E) return;
  int64_t run = 0;
  for (int t = 0; t < tiles; ++t) {
    int32_t& c = tile_count[size_t(t) * E + e];
    const int32_t n = c;
    c = int32_t(run);
    run += n;
  }
  total[e] = run;
}

// 3. One thread: rows kept per expert (the capacity) and where each expert's rows start: offsets
//    (E + 1), offsets[E] = the rows kept.
__global__ void plan_offsets_kernel(int64_t* kept, int64_t* offsets, const int64_t* total, int E, int capacity) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  int64_t s = 0;
  for (int e = 0; e < E; ++e) {
    const int64_t k = capacity < 0 ? total[e] : (total[e] < capacity ? total[e] : int64_t(capacity));
    kept[e] = k;
    offsets[e] = s;
    s += k;
  }
  offsets[E] = s;
}

// 4. Each choice's row: start[e] + its rank within e, if below the capacity; row_src of that row (the
//    rows past the kept ones were set to -1 before).
__global__ void plan_place_kernel(int32_t* slot, int32_t* row_src, const int32_t* routing_map, const int32_t* in_rank,
                                  const int32_t* tile_base, const int64_t* kept, const int64_t* start, int choices,
                                  int K, int E) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= choices) return;
  const int e = routing_map[i];
  if (e < 0 || e >= E) {
    slot[i] = -1;
    return;
  }
  const int64_t rank = int64_t(tile_base[size_t(i / kPlanTile) * E + e]) + in_rank[i];
  if (rank < kept[e]) {
    const int64_t row = start[e] + rank;
    slot[i] = int32_t(row);
    row_src[row] = i / K;
  } else {
    slot[i] = -1;
  }
}

// ---- permute / combine ----------------------------------------------------------------------------------------
template <typename D>
__global__ void permute_kernel(D* out, const D* inp, const int32_t* row_src, int R, int Dm) {
  const size_t total = size_t(R) * Dm;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t r = i / Dm, c = i % Dm;
    const int32_t src = row_src[r];
    if (src >= 0) out[i] = inp[size_t(src) * Dm + c];
  }
}

// out[t] (N, Dm) = sum over the kept choices k of weight * rows[slot[t, k]]: the combine (weight = the
// gate) and, with no gates (weight 1), the permute's backward.
template <typename D>
__global__ void gather_sum_kernel(D* out, const D* rows, const float* gate, const int32_t* slot, int N, int K,
                                  int Dm) {
  const size_t total = size_t(N) * Dm;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t t = i / Dm, c = i % Dm;
    float acc = 0.f;
    for (int k = 0; k < K; ++k) {
      const int32_t row = slot[t * K + k];
      if (row >= 0) acc += (gate ? gate[t * K + k] : 1.f) * to_f(rows[size_t(row) * Dm + c]);
    }
    out[i] = from_f<D>(acc);
  }
}

// One warp per choice (t, k): dexpert_out[slot] = gate * dout[t]; dgate = dout[t] . expert_out[slot].
template <typename D>
__global__ void combine_backward_kernel(D* dexpert_out, float* dgate, const D* dout, const D* expert_out,
                                        const float* gate, const int32_t* slot, int N, int K, int Dm) {
  const size_t i = blockIdx.x * size_t(kWarps) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (i >= size_t(N) * K) return;
  const int32_t row = slot[i];
  if (row < 0) {
    if (lane == 0) dgate[i] = 0.f;
    return;
  }
  const D* g = dout + (i / K) * Dm;
  const D* x = expert_out + size_t(row) * Dm;
  D* dx = dexpert_out + size_t(row) * Dm;
  const float w = gate[i];
  float dot = 0.f;
  for (int c = lane; c < Dm; c += 32) {
    const float gc = to_f(g[c]);
    dot += gc * to_f(x[c]);
    dx[c] = from_f<D>(w * gc);
  }
  dot = warp_sum(dot);
  if (lane == 0) dgate[i] = dot;
}

}  // namespace

template <typename T>
void CudaOps<T>::router_forward(int32_t* routing_map, P* gates, P* probs, P* lse, const P* logits,
                                const P* select_bias, const RouteDims& d, GateNorm norm) {
  const int N = d.N, E = d.E, K = d.K;
  MT_CHECK(E > 0 && K > 0 && K <= E, "router with E ", E, " K ", K);
  MT_CHECK(E <= kMaxExperts, "the CUDA router supports at most ", kMaxExperts, " experts, got ", E);
  if (N == 0) return;
  MT_LAUNCH(ctx_, router_forward_kernel, ceil_div(N, kWarps), kThreads, 0, routing_map, gates, probs, lse, logits,
            select_bias, N, E, K, norm == GateNorm::Renormalize);
}

template <typename T>
void CudaOps<T>::router_backward(P* dlogits, const P* dgates, const int64_t* counts, double balance_scale,
                                 const P* probs, const P* lse, const int32_t* routing_map, const P* gates,
                                 float z_scale, const RouteDims& d, GateNorm norm) {
  MT_CHECK(d.E > 0 && d.E <= kMaxExperts, "router backward with E ", d.E);
  if (d.N == 0) return;
  MT_LAUNCH(ctx_, router_backward_kernel, ceil_div(d.N, kWarps), kThreads, sizeof(float) * d.E, dlogits, dgates,
            counts, balance_scale, probs, lse, routing_map, gates, z_scale, d.N, d.E, d.K,
            norm == GateNorm::Renormalize);
}

// Four launches, no wait: zero the counts, count, the per-expert probability sums, the three losses.
template <typename T>
void CudaOps<T>::router_stats(double* losses, int64_t* counts, int64_t* bad, const int32_t* routing_map,
                              const P* probs, const P* lse, const RouteDims& d) {
  const int N = d.N, E = d.E, K = d.K;
  MT_CHECK(E > 0 && K > 0, "router_stats with E ", E, " K ", K);
  double* prob_sum = static_cast<double*>(ctx_.scratch(sizeof(double) * 2 * E));
  double* plogp = prob_sum + E;
  MT_CUDA_CHECK(cudaMemsetAsync(counts, 0, sizeof(int64_t) * E, ctx_.stream()));
  ctx_.count_launches(1);
  const size_t choices = size_t(N) * K;
  MT_LAUNCH(ctx_, count_choices_kernel, grid_for(choices, kThreads, 4096), kThreads, 0, counts, bad, routing_map,
            choices, E);
  MT_LAUNCH(ctx_, prob_sum_kernel, E, kThreads, 0, prob_sum, plogp, probs, N, E);
  MT_LAUNCH(ctx_, balance_losses_kernel, 1, kThreads, 0, losses, counts, prob_sum, plogp, lse, N, E);
}

// Five launches, no wait: row_src to -1, the per-tile ranks, the scan over tiles, the offsets, the rows.
template <typename T>
void CudaOps<T>::moe_route_plan(int32_t* slot, int32_t* row_src, int64_t* expert_offsets, int64_t* bad,
                                const int32_t* routing_map, const RouteDims& d, int capacity) {
  const int N = d.N, E = d.E, K = d.K;
  MT_CHECK(E > 0 && K > 0, "routing plan with E ", E, " K ", K);
  const int64_t choices64 = int64_t(N) * K;
  MT_CHECK(choices64 < INT32_MAX, "routing plan of ", choices64, " choices");
  const int choices = int(choices64);
  const int tiles = std::max(1, int(ceil_div(choices, kPlanTile)));
  int32_t* in_rank = nullptr;
  int32_t* tile_count = nullptr;
  int64_t* small = nullptr;  // [kept (E) | total (E)]
  ScratchCarver carve;
  carve.add(&in_rank, size_t(std::max(choices, 1)));
  carve.add(&tile_count, size_t(tiles) * E);
  carve.add(&small, 2 * size_t(E));
  carve.allocate(ctx_);
  int64_t* kept = small;
  int64_t* total = small + E;
  if (choices > 0) {
    MT_CUDA_CHECK(cudaMemsetAsync(row_src, 0xff, sizeof(int32_t) * choices, ctx_.stream()));  // -1
    ctx_.count_launches(1);
    const size_t smem = sizeof(int32_t) * E;
    MT_LAUNCH(ctx_, plan_tile_kernel, tiles, kPlanTile, smem, in_rank, tile_count, bad, routing_map, choices, E);
  } else {
    MT_CUDA_CHECK(cudaMemsetAsync(tile_count, 0, sizeof(int32_t) * E, ctx_.stream()));
    ctx_.count_launches(1);
  }
  MT_LAUNCH(ctx_, plan_scan_kernel, ceil_div(E, kThreads), kThreads, 0, tile_count, total, tiles, E);
  MT_LAUNCH(ctx_, plan_offsets_kernel, 1, 32, 0, kept, expert_offsets, total, E, capacity);
  if (choices > 0)
    MT_LAUNCH(ctx_, plan_place_kernel, ceil_div(choices, kThreads), kThreads, 0, slot, row_src, routing_map, in_rank,
              tile_count, kept, expert_offsets, choices, K, E);
}

template <typename T>
void CudaOps<T>::moe_permute(T* out, const T* inp, const int32_t* row_src, const PermuteDims& d) {
  const int R = d.R, Dm = d.Dm;
  if (size_t(R) * Dm == 0) return;
  MT_LAUNCH(ctx_, permute_kernel, grid_for(size_t(R) * Dm, kThreads), kThreads, 0, dptr(out), dptr(inp), row_src, R,
            Dm);
}

template <typename T>
void CudaOps<T>::moe_permute_backward(T* dinp, const T* dout, const int32_t* slot, const DispatchDims& d) {
  const int N = d.N, K = d.K, Dm = d.Dm;
  if (size_t(N) * Dm == 0) return;
  MT_LAUNCH(ctx_, gather_sum_kernel, grid_for(size_t(N) * Dm, kThreads), kThreads, 0, dptr(dinp), dptr(dout),
            static_cast<const float*>(nullptr), slot, N, K, Dm);
}

template <typename T>
void CudaOps<T>::moe_combine(T* out, const T* expert_out, const P* gates, const int32_t* slot, const DispatchDims& d) {
  const int N = d.N, K = d.K, Dm = d.Dm;
  if (size_t(N) * Dm == 0) return;
  MT_LAUNCH(ctx_, gather_sum_kernel, grid_for(size_t(N) * Dm, kThreads), kThreads, 0, dptr(out), dptr(expert_out),
            gates, slot, N, K, Dm);
}

template <typename T>
void CudaOps<T>::moe_combine_backward(T* dexpert_out, P* dgates, const T* dout, const T* expert_out, const P* gates,
                                      const int32_t* slot, const DispatchDims& d) {
  const int N = d.N, K = d.K, Dm = d.Dm;
  const size_t choices = size_t(N) * K;
  if (choices == 0) return;
  MT_LAUNCH(ctx_, combine_backward_kernel, ceil_div(choices, kWarps), kThreads, 0, dptr(dexpert_out), dgates,
            dptr(dout), dptr(expert_out), gates, slot, N, K, Dm);
}

MT_CUDA_INSTANTIATE(MT_OPS_MOE)

}  // namespace mt::cuda
