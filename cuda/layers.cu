// Why: the row-wise layers of CudaOps<T> (embedding, RMSNorm, SwiGLU, softmax + cross-entropy): memory-bound
// kernels that read each input once and write each output once, with all arithmetic in fp32.
// Reductions over rows (the weight gradients of the embedding and RMSNorm) never use float atomics:
// RMSNorm's dweight is summed per block in row order and the blocks' partial sums are added in block
// order; the embedding's rows are grouped by token on the host. So every result has the same bits on
// every run, which a bit-identical resume needs.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"

namespace mt::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// ---- embedding --------------------------------------------------------------------------------------------

template <typename D>
__global__ void embedding_forward_kernel(D* out, const int32_t* tokens, const D* wte, int N, int Dm) {
  const size_t total = size_t(N) * Dm;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t t = i / Dm, c = i % Dm;
    out[i] = wte[size_t(tokens[t]) * Dm + c];
  }
}

// Block (u, column block): dwte[token u] += sum of dout over the positions of token u, in position order.
// order[seg[u] .. seg[u + 1]) are those positions.
template <typename D>
__global__ void embedding_backward_kernel(float* dwte, const D* dout, const int32_t* order, const int32_t* seg,
                                          const int32_t* uniq, int Dm) {
  const int u = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= Dm) return;
  float acc = 0.f;
  for (int i = seg[u]; i < seg[u + 1]; ++i) acc += to_f(dout[size_t(order[i]) * Dm + c]);
  dwte[size_t(uniq[u]) * Dm + c] += acc;
}

// ---- RMSNorm ------------------------------------------------------------------------------------------------

// One warp per row: y = x r w with r = 1 / sqrt(mean(x^2) + eps).
template <typename D>
__global__ void rmsnorm_forward_kernel(D* out, float* rstd, const D* inp, const D* weight, int N, int Dm, float eps) {
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= N) return;
  const D* x = inp + size_t(row) * Dm;
  D* y = out + size_t(row) * Dm;
  float ss = 0.f;
  for (int c = lane; c < Dm; c += 32) {
    const float v = to_f(x[c]);
    ss += v * v;
  }
  ss = warp_sum(ss);
  const float r = 1.f / sqrtf(ss / float(Dm) + eps);
  if (lane == 0) rstd[row] = r;
  for (int c = lane; c < Dm; c += 32) y[c] = from_f<D>(to_f(x[c]) * r * to_f(weight[c]));
}

// dx_c += r g_c w_c - r^3 x_c (sum_c' g_c' w_c' x_c') / Dm. Block b handles rows [b rows_per_block, ...)
// in order, each thread owning the columns tid, tid + blockDim, ...; its share of dweight accumulates in
// shared memory (column c only ever touched by its owner) and is written to partial[b] at the end.
// A thread reads g and x of its own columns before it writes dx there, so dinp may alias dout.
template <typename D>
__global__ void rmsnorm_backward_kernel(D* dinp, float* partial, const D* dout, const D* inp, const D* weight,
                                        const float* rstd, int N, int Dm, int rows_per_block) {
  extern __shared__ float dw_acc[];  // (Dm)
  __shared__ float red[32];
  for (int c = threadIdx.x; c < Dm; c += blockDim.x) dw_acc[c] = 0.f;
  const int r0 = blockIdx.x * rows_per_block, r1 = min(N, r0 + rows_per_block);
  for (int row = r0; row < r1; ++row) {
    const D* g = dout + size_t(row) * Dm;
    const D* x = inp + size_t(row) * Dm;
    D* dx = dinp + size_t(row) * Dm;
    const float r = rstd[row];
    float gx = 0.f;
    for (int c = threadIdx.x; c < Dm; c += blockDim.x) gx += to_f(g[c]) * to_f(weight[c]) * to_f(x[c]);
    gx = block_sum(gx, red);
    const float coef = r * r * r * gx / float(Dm);
    for (int c = threadIdx.x; c < Dm; c += blockDim.x) {
      const float gc = to_f(g[c]), xc = to_f(x[c]);
      dw_acc[c] += gc * xc * r;
      dx[c] = from_f<D>(to_f(dx[c]) + (r * gc * to_f(weight[c]) - coef * xc));
    }
  }
  for (int c = threadIdx.x; c < Dm; c += blockDim.x) partial[size_t(blockIdx.x) * Dm + c] = dw_acc[c];
}

// dweight[c] += the blocks' partial sums in block order.
__global__ void column_sum_kernel(float* dweight, const float* partial, int blocks, int Dm) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= Dm) return;
  float s = 0.f;
  for (int b = 0; b < blocks; ++b) s += partial[size_t(b) * Dm + c];
  dweight[c] += s;
}

// ---- SwiGLU: out = silu(a) b, h13 rows = [a | b] ------------------------------------------------------------

template <typename D>
__global__ void swiglu_forward_kernel(D* out, const D* h13, int N, int F) {
  const size_t total = size_t(N) * F;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t t = i / F, f = i % F;
    const float a = to_f(h13[t * 2 * F + f]), b = to_f(h13[t * 2 * F + F + f]);
    const float sig = 1.f / (1.f + expf(-a));
    out[i] = from_f<D>(a * sig * b);
  }
}

// d silu(a) / da = sig (1 + a (1 - sig)).
template <typename D>
__global__ void swiglu_backward_kernel(D* dh13, const D* dout, const D* h13, int N, int F) {
  const size_t total = size_t(N) * F;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t t = i / F, f = i % F;
    const float a = to_f(h13[t * 2 * F + f]), b = to_f(h13[t * 2 * F + F + f]), g = to_f(dout[i]);
    const float sig = 1.f / (1.f + expf(-a));
    dh13[t * 2 * F + f] = from_f<D>(g * b * sig * (1.f + a * (1.f - sig)));
    dh13[t * 2 * F + F + f] = from_f<D>(g * a * sig);
  }
}

// ---- softmax + cross-entropy, one block per row -------------------------------------------------------------
// One pass computes the running (max, sum of exp) of each thread's strided elements (online softmax),
// combined over the block into lse; the gradient pass then reads the row once more and writes
// (softmax - onehot) * dloss in place. The row (V elements) is never materialised as probabilities.
template <typename D>
__global__ void cross_entropy_kernel(float* losses, D* dlogits, const D* logits, const int32_t* targets,
                                     float dloss, int V) {
  __shared__ float red[32];
  const int row = blockIdx.x;
  const D* z = logits + size_t(row) * V;
  const int target = targets[row];
  const bool valid = target >= 0 && target < V;
  // Read before any thread may overwrite the row (dlogits may alias logits); the barriers inside the
  // reductions below order it before the gradient pass.
  const float z_target = valid ? to_f(z[target]) : 0.f;
  float m = -INFINITY, s = 0.f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float x = to_f(z[v]);
    if (x > m) {
      s = s * expf(m - x) + 1.f;
      m = x;
    } else {
      s += expf(x - m);
    }
  }
  // Block max, then the sum of each thread's s rescaled to it.
  float mx = warp_max(m);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = mx;
  __syncthreads();
  mx = (threadIdx.x & 31) < (blockDim.x >> 5) ? red[threadIdx.x & 31] : -INFINITY;
  mx = warp_max(mx);
  const float scaled = m == -INFINITY ? 0.f : s * expf(m - mx);
  const float total = block_sum(scaled, red);
  const float lse = mx + logf(total);
  if (threadIdx.x == 0) losses[row] = valid ? lse - z_target : NAN;
  if (!dlogits) return;
  D* d = dlogits + size_t(row) * V;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float p = expf(to_f(z[v]) - lse);
    d[v] = from_f<D>((v == target ? p - 1.f : p) * dloss);
  }
}

}  // namespace

// ---- the ops --------------------------------------------------------------------------------------------------

template <typename T>
void CudaOps<T>::embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int Dm) {
  if (N == 0 || Dm == 0) return;
  embedding_forward_kernel<<<grid_for(size_t(N) * Dm, kThreads), kThreads, 0, ctx_.stream()>>>(
      dptr(out), tokens, dptr(wte), N, Dm);
  MT_CUDA_CHECK_LAUNCH();
}

// Synchronises: the tokens are sorted on the host (a deterministic scatter without atomics).
template <typename T>
void CudaOps<T>::embedding_backward(P* dwte, const T* dout, const int32_t* tokens, int N, int Dm, int V) {
  if (N == 0 || Dm == 0) return;
  // Group the positions by token on the host (a stable counting sort: positions in order within a
  // token), then one block per distinct token sums its rows in that order.
  std::vector<int32_t> tok(N);
  ctx_.device().copy(tok.data(), tokens, sizeof(int32_t) * N, CopyKind::DeviceToHost);
  std::vector<int32_t> count(V + 1, 0);
  for (int t = 0; t < N; ++t) {
    MT_CHECK(tok[t] >= 0 && tok[t] < V, "token ", tok[t], " not in [0, ", V, ")");
    ++count[tok[t] + 1];
  }
  for (int v = 0; v < V; ++v) count[v + 1] += count[v];
  // plan = [order (N) | seg (U + 1) | uniq (U)]
  std::vector<int32_t> plan(size_t(N) * 2 + 1, 0);
  int32_t* order = plan.data();
  std::vector<int32_t> fill(count.begin(), count.end() - 1);
  for (int t = 0; t < N; ++t) order[fill[tok[t]]++] = t;
  std::vector<int32_t> seg, uniq;
  for (int v = 0; v < V; ++v)
    if (count[v + 1] > count[v]) {
      seg.push_back(count[v]);
      uniq.push_back(v);
    }
  const int U = int(uniq.size());
  seg.push_back(N);
  std::copy(seg.begin(), seg.end(), plan.begin() + N);
  std::copy(uniq.begin(), uniq.end(), plan.begin() + N + U + 1);
  int32_t* dplan = static_cast<int32_t*>(ctx_.scratch(sizeof(int32_t) * plan.size()));
  ctx_.device().copy(dplan, plan.data(), sizeof(int32_t) * plan.size(), CopyKind::HostToDevice);
  const dim3 grid(U, ceil_div(Dm, kThreads));
  embedding_backward_kernel<<<grid, kThreads, 0, ctx_.stream()>>>(dwte, dptr(dout), dplan, dplan + N,
                                                                  dplan + N + U + 1, Dm);
  MT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void CudaOps<T>::rmsnorm_forward(T* out, P* rstd, const T* inp, const T* weight, int N, int Dm, float eps) {
  if (N == 0) return;
  rmsnorm_forward_kernel<<<ceil_div(N, kWarps), kThreads, 0, ctx_.stream()>>>(dptr(out), rstd, dptr(inp),
                                                                             dptr(weight), N, Dm, eps);
  MT_CUDA_CHECK_LAUNCH();
}

// dinp may alias dout.
template <typename T>
void CudaOps<T>::rmsnorm_backward(T* dinp, P* dweight, const T* dout, const T* inp, const T* weight, const P* rstd,
                                  int N, int Dm) {
  if (N == 0) return;
  // A fixed number of blocks (not the SM count), so that the summation order is the same on any GPU.
  constexpr int kMaxBlocks = 512;
  const int rows_per_block = (N + kMaxBlocks - 1) / kMaxBlocks;
  const int blocks = (N + rows_per_block - 1) / rows_per_block;
  float* partial = static_cast<float*>(ctx_.scratch(sizeof(float) * size_t(blocks) * Dm));
  const size_t smem = sizeof(float) * size_t(Dm);
  auto kernel = rmsnorm_backward_kernel<dev_t<T>>;
  if (smem > 48 * 1024) MT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  kernel<<<blocks, kThreads, smem, ctx_.stream()>>>(dptr(dinp), partial, dptr(dout), dptr(inp), dptr(weight), rstd,
                                                    N, Dm, rows_per_block);
  MT_CUDA_CHECK_LAUNCH();
  column_sum_kernel<<<ceil_div(Dm, kThreads), kThreads, 0, ctx_.stream()>>>(dweight, partial, blocks, Dm);
  MT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void CudaOps<T>::swiglu_forward(T* out, const T* h13, int N, int F) {
  if (size_t(N) * F == 0) return;
  swiglu_forward_kernel<<<grid_for(size_t(N) * F, kThreads), kThreads, 0, ctx_.stream()>>>(dptr(out), dptr(h13),
                                                                                           N, F);
  MT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void CudaOps<T>::swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F) {
  if (size_t(N) * F == 0) return;
  swiglu_backward_kernel<<<grid_for(size_t(N) * F, kThreads), kThreads, 0, ctx_.stream()>>>(
      dptr(dh13), dptr(dout), dptr(h13), N, F);
  MT_CUDA_CHECK_LAUNCH();
}

// dlogits may alias logits; a target outside [0, V) gives a NaN loss (caught by the trainer's check).
template <typename T>
void CudaOps<T>::cross_entropy(P* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss, int N,
                               int V) {
  if (N == 0) return;
  const int threads = V >= 8192 ? 1024 : kThreads;
  cross_entropy_kernel<<<N, threads, 0, ctx_.stream()>>>(losses, dlogits ? dptr(dlogits) : nullptr, dptr(logits),
                                                         targets, dloss, V);
  MT_CUDA_CHECK_LAUNCH();
}

MT_CUDA_INSTANTIATE(MT_OPS_LAYERS)

}  // namespace mt::cuda
