// Why: the elementwise ops of CudaOps<T>, the two reductions the optimizer needs (gradient norm, loss
// sum) and AdamW over flat buffers on the GPU, and the fp32 <-> T conversions (kernels.h). The reductions
// are deterministic: double partial sums over fixed chunks of elements (a tree of fixed shape inside each
// chunk), then the partials added by one block in a fixed order, so the gradient norm, and with it
// clipping and every later step, has the same bits on every run. AdamW uses the same fp32 formula as the
// CPU (engine/cpu/elementwise.cpp).
#include <cmath>

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

// g = grad * grad_scale; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// param -= lr ((m / bc1) / (sqrt(v / bc2) + eps) + wd param).
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, size_t n, float lr, float b1,
                             float b2, float eps, float wd, float gs, float bc1, float bc2) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
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
  chunk_sum_kernel<kSquares><<<unsigned(chunks), kThreads, 0, ctx.stream()>>>(partial, x, n);
  MT_CUDA_CHECK_LAUNCH();
  final_sum_kernel<<<1, 1024, 0, ctx.stream()>>>(result, partial, chunks);
  MT_CUDA_CHECK_LAUNCH();
  double* host = static_cast<double*>(ctx.host_scratch(sizeof(double)));
  MT_CUDA_CHECK(cudaMemcpyAsync(host, result, sizeof(double), cudaMemcpyDeviceToHost, ctx.stream()));
  MT_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
  return *host;
}

}  // namespace

template <typename T>
void to_compute(Context& ctx, T* out, const float* in, size_t n) {
  if (n == 0) return;
  to_compute_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream()>>>(dptr(out), in, n);
  MT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void to_acc(Context& ctx, float* out, const T* in, size_t n) {
  if (n == 0) return;
  to_acc_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx.stream()>>>(out, dptr(in), n);
  MT_CUDA_CHECK_LAUNCH();
}

template void to_compute<float>(Context&, float*, const float*, size_t);
template void to_compute<mt::bf16>(Context&, mt::bf16*, const float*, size_t);
template void to_acc<float>(Context&, float*, const float*, size_t);
template void to_acc<mt::bf16>(Context&, float*, const mt::bf16*, size_t);

template <typename T>
void CudaOps<T>::add_inplace(T* x, const T* y, size_t n) {
  if (n == 0) return;
  add_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx_.stream()>>>(dptr(x), dptr(y), n);
  MT_CUDA_CHECK_LAUNCH();
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

template <typename T>
void CudaOps<T>::adamw(P* param, const P* grad, P* m, P* v, size_t n, const AdamWArgs& a) {
  MT_CHECK(a.step >= 1, "adamw step ", a.step, " (1-based)");
  if (n == 0) return;
  // Bias corrections in double on the host, then rounded to float, exactly as the CPU does.
  const float bc1 = float(1.0 - std::pow(double(a.beta1), a.step));
  const float bc2 = float(1.0 - std::pow(double(a.beta2), a.step));
  adamw_kernel<<<grid_for(n, kThreads), kThreads, 0, ctx_.stream()>>>(param, grad, m, v, n, a.lr, a.beta1, a.beta2,
                                                                       a.eps, a.weight_decay, a.grad_scale, bc1, bc2);
  MT_CUDA_CHECK_LAUNCH();
}

MT_CUDA_INSTANTIATE(MT_OPS_ELEMENTWISE)

}  // namespace mt::cuda
