// Why: attention alone, for the bundle's run.sh (scripts/gpu_run.sh): the cuDNN path (model.attention_impl
// cudnn) against the CPU twin, then the speed of the native and the cuDNN kernels at training sizes (S
// 2048, head_dim 128, bf16), forward and backward, in TFLOP/s under bench's convention (forward: QK^T and
// PV over the causal triangle; backward 2.5 times that). Prints `CHECK <name> ok|FAIL|SKIPPED <figures>`
// lines itself, one per result, flushed. `--probe` only opens the GPU (and MPI under mpirun) and says
// what it found: run.sh's device and mpirun checks. Exit 77 without a GPU, 1 if a check failed.
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "comm/grid.h"
#include "cuda/backend.h"
#include "cuda/context.h"
#include "cuda/cuda_ops.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/model/ops.h"
#include "tests/gpu/gpu_probe.h"

namespace {

using namespace mt;

void check_line(const std::string& name, const char* status, const std::string& figures) {
  std::printf("CHECK %s %s %s\n", name.c_str(), status, figures.c_str());
  std::fflush(stdout);
}

struct Shape {
  int B, T, H, Dh;
  size_t qkv() const { return size_t(B) * T * 3 * H * Dh; }
  size_t out() const { return size_t(B) * T * H * Dh; }
  size_t lse() const { return size_t(B) * H * T; }
  double fwd_flops() const { return 4.0 * B * H * Dh * (double(T) * (T + 1) / 2); }
};

// A buffer on `dev` filled from floats (as T), read back as floats.
template <typename X>
struct Buf {
  Device& dev;
  size_t n;
  X* p;
  Buf(Device& d, size_t count) : dev(d), n(count), p(static_cast<X*>(d.alloc(count * sizeof(X)))) {}
  ~Buf() { dev.release(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  void put(const std::vector<float>& v) {
    std::vector<X> h(n);
    for (size_t i = 0; i < n; ++i) {
      if constexpr (std::is_same_v<X, bf16>) h[i] = to_bf16(v[i]);
      else h[i] = X(v[i]);
    }
    dev.copy(p, h.data(), n * sizeof(X), CopyKind::HostToDevice);
  }
  std::vector<float> get() {
    std::vector<X> h(n);
    dev.synchronize();
    dev.copy(h.data(), p, n * sizeof(X), CopyKind::DeviceToHost);
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) {
      if constexpr (std::is_same_v<X, bf16>) v[i] = to_float(h[i]);
      else v[i] = float(h[i]);
    }
    return v;
  }
};

std::vector<float> bf16_rounded(std::vector<float> v) {
  for (float& x : v) x = to_float(to_bf16(x));
  return v;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += double(a[i] - b[i]) * (a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

struct Result {
  std::vector<float> out, dqkv;
};

// Forward and backward of `ops` on the given (bf16-representable) inputs.
template <typename T>
Result run(Ops<T>& ops, const Shape& s, const std::vector<float>& qkv, const std::vector<float>& dout,
           const std::vector<float>& slopes) {
  Device& dev = ops.device();
  Buf<T> q(dev, s.qkv()), o(dev, s.out()), dout_b(dev, s.out()), dq(dev, s.qkv());
  Buf<float> lse(dev, s.lse()), sl(dev, size_t(s.H));
  q.put(qkv);
  dout_b.put(dout);
  sl.put(slopes);
  ops.attention_forward(o.p, lse.p, q.p, sl.p, AttnDims{s.B, s.T, s.H, s.Dh});
  ops.attention_backward(dq.p, dout_b.p, q.p, o.p, lse.p, sl.p, AttnDims{s.B, s.T, s.H, s.Dh});
  return {o.get(), dq.get()};
}

// cuDNN (bf16) against the CPU in fp32 on the same bf16 inputs: within twice the error of rounding the
// exact result to bf16, plus a floor.
bool compare_cudnn(cuda::Backend& gpu) {
  const Shape s{2, 256, 4, 128};
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> qkv(s.qkv()), dout(s.out()), slopes(size_t(s.H));
  for (float& x : qkv) x = to_float(to_bf16(2.f * u(rng)));
  for (float& x : dout) x = to_float(to_bf16(u(rng)));
  alibi_slopes(slopes.data(), s.H);
  CpuOps<float> cpu;
  const Result ref = run(cpu, s, qkv, dout, slopes);
  gpu.set_attention(AttentionImpl::Cudnn);
  Result got;
  try {
    got = run(gpu.ops_bf16(), s, qkv, dout, slopes);
  } catch (const std::exception& e) {
    check_line("attention_cudnn_vs_cpu", "FAIL", e.what());
    return false;
  }
  const double eo = rel_l2(got.out, ref.out), ed = rel_l2(got.dqkv, ref.dqkv);
  const double po = rel_l2(bf16_rounded(ref.out), ref.out), pd = rel_l2(bf16_rounded(ref.dqkv), ref.dqkv);
  const bool ok = eo <= 2 * po + 1e-3 && ed <= 4 * pd + 1e-2;
  char fig[200];
  std::snprintf(fig, sizeof fig, "B %d S %d H %d Dh %d: out rel err %.2e (bf16 rounding %.2e), dqkv %.2e (%.2e)", s.B, s.T,
                s.H, s.Dh, eo, po, ed, pd);
  check_line("attention_cudnn_vs_cpu", ok ? "ok" : "FAIL", fig);
  return ok;
}

// Forward and backward TFLOP/s of the context's current attention implementation.
bool time_attention(cuda::Backend& gpu, AttentionImpl impl, const char* name) {
  const Shape s{4, 2048, 16, 128};
  auto& ops = gpu.ops_bf16();
  Device& dev = ops.device();
  gpu.set_attention(impl);
  std::vector<float> qkv(s.qkv()), slopes(size_t(s.H));
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (float& x : qkv) x = u(rng);
  alibi_slopes(slopes.data(), s.H);
  Buf<bf16> q(dev, s.qkv()), o(dev, s.out()), dq(dev, s.qkv());
  Buf<float> lse(dev, s.lse()), sl(dev, size_t(s.H));
  q.put(qkv);
  sl.put(slopes);
  using clock = std::chrono::steady_clock;
  auto timed = [&](auto&& fn) {
    fn();  // warm-up (and, for cuDNN, the plan)
    dev.synchronize();
    const int reps = 5;
    const auto t0 = clock::now();
    for (int r = 0; r < reps; ++r) fn();
    dev.synchronize();
    return std::chrono::duration<double>(clock::now() - t0).count() / reps;
  };
  try {
    const double tf = timed([&] { ops.attention_forward(o.p, lse.p, q.p, sl.p, AttnDims{s.B, s.T, s.H, s.Dh}); });
    const double tb = timed([&] { ops.attention_backward(dq.p, o.p, q.p, o.p, lse.p, sl.p, AttnDims{s.B, s.T, s.H, s.Dh}); });
    char fig[200];
    std::snprintf(fig, sizeof fig, "B %d S %d H %d Dh %d bf16: forward %.1f TFLOP/s (%.2f ms), backward %.1f TFLOP/s (%.2f ms)",
                  s.B, s.T, s.H, s.Dh, s.fwd_flops() / tf / 1e12, 1e3 * tf, 2.5 * s.fwd_flops() / tb / 1e12, 1e3 * tb);
    check_line(name, "ok", fig);
    return true;
  } catch (const std::exception& e) {
    check_line(name, "FAIL", e.what());
    return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool probe = argc > 1 && std::string(argv[1]) == "--probe";
  try {
    if (probe) {
      // What CUDA answers, and (rank 0) the lines run.sh reads: "cuda:", "gpus:", "device". Exit 0: the
      // GPU opened; 77: no NVIDIA GPU on the machine; 3: a GPU CUDA cannot use; 1: it would not open.
      const int world = init_distributed();
      int rank = 0;
      if (world > 1) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      const cuda::DeviceProbe cu = cuda::probe_devices();
      const gputest::GpuPresence gpu = gputest::gpu_presence();
      std::string what = gpu.why;
      int rc = gpu.verdict == gputest::GpuVerdict::Skip ? gputest::kSkipped : 3;
      if (gpu.verdict == gputest::GpuVerdict::Run) {
        try {
          what = cuda::open_backend(cuda::Compute::Bf16)->describe();
          rc = 0;
        } catch (const std::exception& e) {
          what = std::string("cannot open the GPU: ") + e.what();
          rc = 1;
        }
      }
      std::printf("probe rank %d of %d: %s\n", rank, world, what.c_str());
      if (rank == 0)
        std::printf("cuda: %s\ngpus: %d\ndevice %s\n", cu.error ? cu.error_text.c_str() : "ok", cu.count, what.c_str());
      std::fflush(stdout);
      if (world > 1) MPI_Finalize();
      return rc;
    }
    gputest::require_gpu_or_exit("gpu_attention_job");
    auto gpu = cuda::open_backend(cuda::Compute::Bf16);
    bool ok = compare_cudnn(*gpu);
    ok = time_attention(*gpu, AttentionImpl::Native, "attention_speed_native") && ok;
    ok = time_attention(*gpu, AttentionImpl::Cudnn, "attention_speed_cudnn") && ok;
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_attention_job: error: %s\n", e.what());
    return 1;
  }
}
