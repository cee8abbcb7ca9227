// Why: the elementwise ops of CudaOps<T>, the reductions the optimizer needs (the gradient norm of many
// tensors at once, sums) and AdamW over flat buffers on the GPU, and the fp32 <-> T conversions
// (kernels.h). The reductions are deterministic: double partial sums over fixed chunks of elements (a
// tree of fixed shape inside each chunk), then the partials added by one block in a fixed order, so the
// gradient norm, and with it clipping and every later step, has the same bits on every run. The
// gradient norm is one table upload, two kernels and one wait for all tensors; AdamW one launch for a
// whole buffer of tensors (their weight decays as runs passed by value). AdamW uses the same fp32 formula
// as the CPU (engine/cpu/elementwise.cpp).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/kernels.h"

namespace mt::cuda {

namespace {

constexpr int kThreads = 256;
constexpr size_t kSumChunk = size_t(1) << 15;  // elements per partial sum

template <typename D>
__global__ void add_kernel(D* x, const D* y, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    x[i] = from_f<D>(to_f(x[i]) + to_f(y[i]));
}

template <typename D>
__global__ void to_compute_kernel(D* out, const float* in, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    out[i] = from_f<D>(in[i]);
}

template <typename D>
__global__ void to_acc_kernel(float* out, const D* in, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    out[i] = to_f(in[i]);
}

// partial[chunk] = sum (or sum of squares) of the chunk's elements, in double.
template <bool kSquares>
__global__ void chunk_sum_kernel(double* partial, const float* x, size_t n) {
  __shared__ double red[32];
  const size_t begin = blockIdx.x * kSumChunk, end = min(n, begin + kSumChunk);
  double s = 0;
  for (size_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double v = double(x[i]);
    s += kSquares ? v * v : v;
  }
  s = block_sum(s, red);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// One block: result = sum of partial[0 .. chunks), thread t taking t, t + blockDim, ... in order.
__global__ void final_sum_kernel(double* result, const double* partial, size_t chunks) {
  __shared__ double red[32];
  double s = 0;
  for (size_t i = threadIdx.x; i < chunks; i += blockDim.x) s += partial[i];
  s = block_sum(s, red);
  if (threadIdx.x == 0) *result = s;
}

// ---- squared norms of many spans -----------------------------------------------------------------------------

// A span of sum_squares_groups on the device: its data, length, group and first chunk (spans in order,
// kSumChunk elements per chunk).
struct SpanDev {
  const float* data;
  size_t n;
  size_t chunk0;
  int group;
};
constexpr int kMaxGroups = 8;

// Block b: chunk b of the concatenated spans; partial[b] = its sum of squares, group[b] = its span's group.
__global__ void span_chunk_kernel(double* partial, int* group, const SpanDev* spans, int n_spans) {
  __shared__ double red[32];
  const size_t b = blockIdx.x;
  int lo = 0, hi = n_spans - 1;  // the last span whose first chunk is <= b
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (spans[mid].chunk0 <= b) lo = mid;
    else hi = mid - 1;
  }
  const SpanDev sp = spans[lo];
  const size_t begin = (b - sp.chunk0) * kSumChunk, end = min(sp.n, begin + kSumChunk);
  double s = 0;
  for (size_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double v = double(sp.data[i]);
    s += v * v;
  }
  s = block_sum(s, red);
  if (threadIdx.x == 0) {
    partial[b] = s;
    group[b] = sp.group;
  }
}

// One block: sums[g] = the partials of group g, thread t taking chunks t, t + blockDim, ... in order.
__global__ void group_sum_kernel(double* sums, const double* partial, const int* group, size_t chunks, int n_groups) {
  __shared__ double red[32];
  double acc[kMaxGroups] = {};
  for (size_t i = threadIdx.x; i < chunks; i += blockDim.x)
#pragma unroll
    for (int g = 0; g < kMaxGroups; ++g) acc[g] += group[i] == g ? partial[i] : 0.0;
  for (int g = 0; g < n_groups; ++g) {
    const double s = block_sum(acc[g], red);
    if (threadIdx.x == 0) sums[g] = s;
  }
}

// ---- AdamW ---------------------------------------------------------------------------------------------------

// The decay runs of one launch, by value (kernel parameters: no upload, nothing for the host to wait on).
constexpr int kMaxRuns = 200;
struct RunTable {
  int n;
  size_t begin;  // the first element of this launch's first run
  size_t end[kMaxRuns];
  float weight_decay[kMaxRuns];
};
static_assert(sizeof(RunTable) < 4000, "kernel parameters are limited to 4 KB");

// g = grad * grad_scale; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// param -= lr ((m / bc1) / (sqrt(v / bc2) + eps) + wd param), wd the decay of element i's run.
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, float lr, float b1, float b2,
                             float eps, float gs, float bc1, float bc2, const RunTable runs) {
  const size_t n = runs.end[runs.n - 1];
  for (size_t i = runs.begin + blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    int lo = 0, hi = runs.n - 1;  // the first run that ends after i
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (runs.end[mid] > i) hi = mid;
      else lo = mid + 1;
    }
    const float wd = runs.weight_decay[lo];
    const float g = grad[i] * gs;
    const float mi = b1 * m[i] + (1.f - b1) * g;
    const float vi = b2 * v[i] + (1.f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float p = param[i];
    param[i] = p - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p);
  }
}

template <bool kSquares>
double reduce(Context& ctx, const float* x, size_t n) {
  if (n == 0) return 0.0;
  const size_t chunks = (n + kSumChunk - 1) / kSumChunk;
  double* partial = static_cast<double*>(ctx.scratch(sizeof(double) * (chunks + 1)));
  double* result = partial + chunks;
  MT_CHECK(chunks < (size_t(1) << 31), "reduction over ", n, " elements");
  MT_LAUNCH(ctx, chunk_sum_kernel<kSquares>, unsigned(chunks), kThreads, 0, partial, x, n);
  MT_LAUNCH(ctx, final_sum_kernel, 1, 1024, 0, result, partial, chunks);
  double* host = static_cast<double*>(ctx.host_scratch(sizeof(double)));
  MT_CUDA_CHECK(cudaMemcpyAsync(host, result, sizeof(double), cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.count_launches(1);
  ctx.wait();
  return *host;
}

}  // namespace

template <typename T>
void to_compute(Context& ctx, T* out, const float* in, size_t n) {
  if (n == 0) return;
  MT_LAUNCH(ctx, to_compute_kernel<dev_t<T>>, grid_for(n, kThreads), kThreads, 0, dptr(out), in, n);
}

template <typename T>
void to_acc(Context& ctx, float* out, const T* in, size_t n) {
  if (n == 0) return;
  MT_LAUNCH(ctx, to_acc_kernel<dev_t<T>>, grid_for(n, kThreads), kThreads, 0, out, dptr(in), n);
}

template void to_compute<float>(Context&, float*, const float*, size_t);
template void to_compute<mt::bf16>(Context&, mt::bf16*, const float*, size_t);
template void to_acc<float>(Context&, float*, const float*, size_t);
template void to_acc<mt::bf16>(Context&, float*, const mt::bf16*, size_t);

template <typename T>
void CudaOps<T>::add_inplace(T* x, const T* y, size_t n) {
  if (n == 0) return;
  MT_LAUNCH(ctx_, add_kernel<dev_t<T>>, grid_for(n, kThreads), kThreads, 0, dptr(x), dptr(y), n);
}

template <typename T>
void CudaOps<T>::to_compute(T* out, const P* in, size_t n) {
  cuda::to_compute(ctx_, out, in, n);
}

// Synchronise; the sum is in double over fixed chunks, the same bits on every run.
template <typename T>
double CudaOps<T>::sum_squares(const P* x, size_t n) {
  return reduce<true>(ctx_, x, n);
}
template <typename T>
double CudaOps<T>::sum(const P* x, size_t n) {
  return reduce<false>(ctx_, x, n);
}

// One table upload (pinned host scratch, read by the copy before the one wait at the end), the chunk
// partials, the group sums, one read-back.
template <typename T>
void CudaOps<T>::sum_squares_groups(double* sums_host, int n_groups, const SquaresSpan<P>* spans_host, int n_spans) {
  MT_CHECK(n_groups >= 1 && n_groups <= kMaxGroups, "sum_squares_groups: ", n_groups, " groups (at most ", kMaxGroups,
           ")");
  std::vector<SpanDev> table;
  size_t chunks = 0;
  for (int i = 0; i < n_spans; ++i) {
    const SquaresSpan<P>& sp = spans_host[i];
    MT_CHECK(sp.group >= 0 && sp.group < n_groups, "sum_squares_groups: group ", sp.group, " of ", n_groups);
    if (sp.n == 0) continue;
    table.push_back({sp.data, sp.n, chunks, sp.group});
    chunks += (sp.n + kSumChunk - 1) / kSumChunk;
  }
  if (chunks == 0) {
    std::fill(sums_host, sums_host + n_groups, 0.0);
    return;
  }
  MT_CHECK(chunks < (size_t(1) << 31), "sum_squares_groups over ", chunks, " chunks");
  const size_t table_bytes = sizeof(SpanDev) * table.size(), sums_bytes = sizeof(double) * size_t(n_groups);
  ScratchCarver carve;
  SpanDev* dtable = nullptr;
  double *partial = nullptr, *dsums = nullptr;
  int* group = nullptr;
  carve.add(&dtable, table.size());
  carve.add(&partial, chunks);
  carve.add(&group, chunks);
  carve.add(&dsums, size_t(n_groups));
  carve.allocate(ctx_);
  char* host = static_cast<char*>(ctx_.host_scratch((table_bytes + 15) / 16 * 16 + sums_bytes));
  std::copy(table.begin(), table.end(), reinterpret_cast<SpanDev*>(host));
  MT_CUDA_CHECK(cudaMemcpyAsync(dtable, host, table_bytes, cudaMemcpyHostToDevice, ctx_.stream()));
  ctx_.count_launches(1);
  MT_LAUNCH(ctx_, span_chunk_kernel, unsigned(chunks), kThreads, 0, partial, group, dtable, int(table.size()));
  MT_LAUNCH(ctx_, group_sum_kernel, 1, 1024, 0, dsums, partial, group, chunks, n_groups);
  double* result = reinterpret_cast<double*>(host + (table_bytes + 15) / 16 * 16);
  MT_CUDA_CHECK(cudaMemcpyAsync(result, dsums, sums_bytes, cudaMemcpyDeviceToHost, ctx_.stream()));
  ctx_.count_launches(1);
  ctx_.wait();
  std::copy(result, result + n_groups, sums_host);
}

// One launch per kMaxRuns decay runs (one for any model of fewer than about 50 layers: each layer gives
// about four runs, neighbouring tensors of equal decay merged by the optimizer).
template <typename T>
void CudaOps<T>::adamw(P* param, const P* grad, P* m, P* v, size_t n, const AdamWArgs& a) {
  MT_CHECK(a.step >= 1, "adamw step ", a.step, " (1-based)");
  if (n == 0) return;
  // Bias corrections in double on the host, then rounded to float, exactly as the CPU does.
  const float bc1 = float(1.0 - std::pow(double(a.beta1), a.step));
  const float bc2 = float(1.0 - std::pow(double(a.beta2), a.step));
  const DecayRun whole{n, a.weight_decay};
  const DecayRun* runs = a.runs ? a.runs : &whole;
  const int n_runs = a.runs ? a.n_runs : 1;
  MT_CHECK(n_runs >= 1 && runs[n_runs - 1].end == n, "adamw runs cover ", n_runs ? runs[n_runs - 1].end : 0, " of ",
           n, " elements");
  size_t begin = 0;
  for (int r0 = 0; r0 < n_runs; r0 += kMaxRuns) {
    RunTable table;
    table.n = std::min(kMaxRuns, n_runs - r0);
    table.begin = begin;
    for (int r = 0; r < table.n; ++r) {
      MT_CHECK(runs[r0 + r].end >= (r ? table.end[r - 1] : begin), "adamw runs out of order at ", r0 + r);
      table.end[r] = runs[r0 + r].end;
      table.weight_decay[r] = runs[r0 + r].weight_decay;
    }
    const size_t count = table.end[table.n - 1] - begin;
    if (count)
      MT_LAUNCH(ctx_, adamw_kernel, grid_for(count, kThreads), kThreads, 0, param, grad, m, v, a.lr, a.beta1, a.beta2,
                a.eps, a.grad_scale, bc1, bc2, table);
    begin = table.end[table.n - 1];
  }
}

MT_CUDA_INSTANTIATE(MT_OPS_ELEMENTWISE)

}  // namespace mt::cuda
