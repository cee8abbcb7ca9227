// Why: the row-wise layers of CudaOps<T> (embedding, RMSNorm, SwiGLU, softmax + cross-entropy): memory-bound
// kernels that read each input once and write each output once, with all arithmetic in fp32.
// Reductions over rows (the weight gradients of the embedding and RMSNorm) never use float atomics:
// RMSNorm's dweight is summed per block in row order and the blocks' partial sums are added in block
// order; the embedding's positions are grouped by token on the device (a stable radix sort of (token,
// position): no host work, no wait) and each token's rows summed in position order by the one block
// that owns it. So every result has the same bits on every run, which a bit-identical resume needs.
#include <cub/device/device_radix_sort.cuh>

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

// positions[t] = t: the values the radix sort carries along with the tokens.
__global__ void iota_kernel(int32_t* positions, int N) {
  for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < N; t += gridDim.x * blockDim.x) positions[t] = t;
}

// Block (s, column block): if sorted index s starts a run of one token (its first position in sorted
// order), dwte[token] += the sum of dout over the run's positions, in position order (the sort is
// stable); every other block returns at once. Tokens outside [0, V) (the data layer rejects them) are
// skipped rather than written out of bounds.
template <typename D>
__global__ void embedding_backward_kernel(float* dwte, const D* dout, const int32_t* token, const int32_t* position,
                                          int N, int Dm, int V) {
  const int s = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  const int32_t tok = token[s];
  if (c >= Dm || (s > 0 && token[s - 1] == tok) || tok < 0 || tok >= V) return;
  float acc = 0.f;
  for (int i = s; i < N && token[i] == tok; ++i) acc += to_f(dout[size_t(position[i]) * Dm + c]);
  dwte[size_t(tok) * Dm + c] += acc;
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
  MT_LAUNCH(ctx_, embedding_forward_kernel<dev_t<T>>, grid_for(size_t(N) * Dm, kThreads), kThreads, 0, dptr(out), tokens,
            dptr(wte), N, Dm);
}

// Three launches (positions, the sort, the sums), nothing for the host to wait on.
template <typename T>
void CudaOps<T>::embedding_backward(P* dwte, const T* dout, const int32_t* tokens, int N, int Dm, int V) {
  if (N == 0 || Dm == 0) return;
  size_t sort_bytes = 0;
  MT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<const int32_t*>(nullptr),
                                                static_cast<int32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                static_cast<int32_t*>(nullptr), N));
  ScratchCarver carve;
  int32_t *positions = nullptr, *sorted_tokens = nullptr, *sorted_positions = nullptr;
  unsigned char* sort_temp = nullptr;
  carve.add(&positions, size_t(N));
  carve.add(&sorted_tokens, size_t(N));
  carve.add(&sorted_positions, size_t(N));
  carve.add(&sort_temp, sort_bytes);
  carve.allocate(ctx_);
  MT_LAUNCH(ctx_, iota_kernel, grid_for(size_t(N), kThreads), kThreads, 0, positions, N);
  // All 32 bits: a stable sort by the whole token, wherever it lies.
  MT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_temp, sort_bytes, tokens, sorted_tokens, positions,
                                                sorted_positions, N, 0, 32, ctx_.stream()));
  ctx_.count_launches(1);
  const dim3 grid(unsigned(N), ceil_div(Dm, kThreads));
  MT_LAUNCH(ctx_, embedding_backward_kernel<dev_t<T>>, grid, kThreads, 0, dwte, dptr(dout), sorted_tokens,
            sorted_positions, N, Dm, V);
}

template <typename T>
void CudaOps<T>::rmsnorm_forward(T* out, P* rstd, const T* inp, const T* weight, int N, int Dm, float eps) {
  if (N == 0) return;
  MT_LAUNCH(ctx_, rmsnorm_forward_kernel<dev_t<T>>, ceil_div(N, kWarps), kThreads, 0, dptr(out), rstd, dptr(inp),
            dptr(weight), N, Dm, eps);
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
  MT_LAUNCH(ctx_, kernel, blocks, kThreads, smem, dptr(dinp), partial, dptr(dout), dptr(inp), dptr(weight), rstd, N, Dm,
            rows_per_block);
  MT_LAUNCH(ctx_, column_sum_kernel, ceil_div(Dm, kThreads), kThreads, 0, dweight, partial, blocks, Dm);
}

template <typename T>
void CudaOps<T>::swiglu_forward(T* out, const T* h13, int N, int F) {
  if (size_t(N) * F == 0) return;
  MT_LAUNCH(ctx_, swiglu_forward_kernel<dev_t<T>>, grid_for(size_t(N) * F, kThreads), kThreads, 0, dptr(out), dptr(h13),
            N, F);
}

template <typename T>
void CudaOps<T>::swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F) {
  if (size_t(N) * F == 0) return;
  MT_LAUNCH(ctx_, swiglu_backward_kernel<dev_t<T>>, grid_for(size_t(N) * F, kThreads), kThreads, 0, dptr(dh13),
            dptr(dout), dptr(h13), N, F);
}

// dlogits may alias logits; a target outside [0, V) gives a NaN loss (caught by the trainer's check).
template <typename T>
void CudaOps<T>::cross_entropy(P* losses, T* dlogits, const T* logits, const int32_t* targets, float dloss, int N,
                               int V) {
  if (N == 0) return;
  const int threads = V >= 8192 ? 1024 : kThreads;
  MT_LAUNCH(ctx_, cross_entropy_kernel<dev_t<T>>, N, threads, 0, losses, dlogits ? dptr(dlogits) : nullptr, dptr(logits),
            targets, dloss, V);
}

MT_CUDA_INSTANTIATE(MT_OPS_LAYERS)

}  // namespace mt::cuda
