// Why: attention alone, for the bundle's run.sh (scripts/gpu_run.sh): each bf16 attention kernel (the
// fp32-FMA one, the tensor-core one, cuDNN's graph) against the CPU twin over several shapes (S 128 to
// 4096, head_dim 64 and 128, 1 to 32 heads, two with the slopes of a tp slice of the heads), each output
// (out, lse, dq, dk, dv) on its own; then the speed of each at training size (S 2048, head_dim 128),
// forward and backward, in TFLOP/s under bench's convention (forward: QK^T and PV over the causal
// triangle; backward 2.5 times that), and whether the default's rule (flash_attention.h) picks the faster
// of our two. Prints `CHECK <name> ok|FAIL|SKIPPED <figures>` lines itself, one per result, flushed, and
// "gpu_attention_job: passed" or "... failed" last. `--probe` only opens the GPU (and MPI under mpirun)
// and says what it found: run.sh's device and mpirun checks. Exit 77 without a GPU, 1 if a check failed.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <iterator>
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
#include "engine/ops/ops.h"
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
  std::vector<float> out, lse, dqkv;
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
  return {o.get(), lse.get(), dq.get()};
}

// One part (0 q, 1 k, 2 v) of a (B, T, 3, H, Dh) gradient.
std::vector<float> part(const std::vector<float>& qkv, const Shape& s, int which) {
  std::vector<float> r;
  r.reserve(s.out());
  const size_t hd = size_t(s.H) * s.Dh;
  for (size_t row = 0; row < size_t(s.B) * s.T; ++row)
    r.insert(r.end(), qkv.begin() + row * 3 * hd + which * hd, qkv.begin() + row * 3 * hd + (which + 1) * hd);
  return r;
}

// The bf16 kernels (model.attention_impl "native" with each of our kernels forced, and "cudnn").
struct Kernel {
  const char* name;
  AttentionImpl impl;
  cuda::NativeAttention native;
};
const Kernel kKernels[] = {{"simt", AttentionImpl::Native, cuda::NativeAttention::Simt},
                           {"tensor_core", AttentionImpl::Native, cuda::NativeAttention::TensorCore},
                           {"cudnn", AttentionImpl::Cudnn, cuda::NativeAttention::Auto}};
void select(cuda::Backend& gpu, const Kernel& k) {
  gpu.set_attention(k.impl);
  gpu.set_native_attention(k.native);
}

// A shape and the heads it holds: heads [head0, head0 + H) of `heads` (a tp rank's slice of the slopes).
struct Case {
  Shape s;
  int head0, heads;
};
const Case kCases[] = {{{2, 128, 1, 64}, 0, 1},    {{2, 300, 3, 64}, 0, 3},    {{1, 512, 4, 128}, 4, 8},
                       {{1, 1024, 32, 64}, 0, 32}, {{1, 2048, 8, 128}, 8, 16}, {{1, 4096, 2, 128}, 0, 2}};

// Every kernel against the CPU in fp32 on the same bf16 inputs, every case, every output on its own: the
// error at most 3 times that of rounding the exact result to bf16 (the tensor-core kernel and cuDNN also
// round P, and the former dS, to bf16 before their products: an independent rounding of the same size),
// plus 1e-4; lse, fp32 on both sides, within 1e-4.
bool compare_all(cuda::Backend& gpu) {
  CpuOps<float> cpu;
  struct Worst {
    double ratio[4] = {0, 0, 0, 0}, lse = 0;
    std::string failures;
  };
  std::vector<Worst> worst(std::size(kKernels));
  for (const Case& c : kCases) {
    const Shape& s = c.s;
    std::mt19937 rng(uint32_t(s.T * 31 + s.H));
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<float> qkv(s.qkv()), dout(s.out()), all(size_t(c.heads));
    for (float& x : qkv) x = to_float(to_bf16(2.f * u(rng)));
    for (float& x : dout) x = to_float(to_bf16(u(rng)));
    alibi_slopes(all.data(), c.heads);
    const std::vector<float> slopes(all.begin() + c.head0, all.begin() + c.head0 + s.H);
    const Result ref = run(cpu, s, qkv, dout, slopes);
    const std::vector<float> refs[4] = {ref.out, part(ref.dqkv, s, 0), part(ref.dqkv, s, 1), part(ref.dqkv, s, 2)};
    for (size_t k = 0; k < std::size(kKernels); ++k) {
      char where[96];
      std::snprintf(where, sizeof where, "B %d S %d H %d (heads %d..%d of %d) Dh %d", s.B, s.T, s.H, c.head0,
                    c.head0 + s.H - 1, c.heads, s.Dh);
      select(gpu, kKernels[k]);
      Result got;
      try {
        got = run(gpu.ops_bf16(), s, qkv, dout, slopes);
      } catch (const std::exception& e) {
        worst[k].failures += std::string(worst[k].failures.empty() ? "" : "; ") + where + ": " + e.what();
        continue;
      }
      const std::vector<float> outs[4] = {got.out, part(got.dqkv, s, 0), part(got.dqkv, s, 1), part(got.dqkv, s, 2)};
      static const char* names[4] = {"out", "dq", "dk", "dv"};
      for (int i = 0; i < 4; ++i) {
        const double e = rel_l2(outs[i], refs[i]), p = rel_l2(bf16_rounded(refs[i]), refs[i]);
        worst[k].ratio[i] = std::max(worst[k].ratio[i], e / p);
        if (!(e <= 3 * p + 1e-4)) {
          char f[160];
          std::snprintf(f, sizeof f, "%s: %s error %.2e (bf16 rounding %.2e)", where, names[i], e, p);
          worst[k].failures += std::string(worst[k].failures.empty() ? "" : "; ") + f;
        }
      }
      const double el = rel_l2(got.lse, ref.lse);
      worst[k].lse = std::max(worst[k].lse, el);
      if (!(el <= 1e-4)) worst[k].failures += std::string(worst[k].failures.empty() ? "" : "; ") + where + ": lse error";
    }
  }
  bool ok = true;
  for (size_t k = 0; k < std::size(kKernels); ++k) {
    const Worst& w = worst[k];
    char fig[400];
    std::snprintf(fig, sizeof fig,
                  "%zu shapes (S 128..4096, Dh 64/128, H 1..32, two tp slices of the slopes): worst error / bf16 "
                  "rounding: out %.2f, dq %.2f, dk %.2f, dv %.2f (bound 3); lse %.1e",
                  std::size(kCases), w.ratio[0], w.ratio[1], w.ratio[2], w.ratio[3], w.lse);
    const std::string name = std::string("attention_") + kKernels[k].name + "_vs_cpu";
    check_line(name, w.failures.empty() ? "ok" : "FAIL", w.failures.empty() ? fig : w.failures.substr(0, 900));
    ok = ok && w.failures.empty();
  }
  gpu.set_attention(AttentionImpl::Native);
  gpu.set_native_attention(cuda::NativeAttention::Auto);
  return ok;
}

// Forward and backward seconds of the backend's current attention kernel at training size.
struct Speed {
  double fwd = 0, bwd = 0;
};
Speed time_attention(cuda::Backend& gpu, const Shape& s) {
  auto& ops = gpu.ops_bf16();
  Device& dev = ops.device();
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
  const AttnDims d{s.B, s.T, s.H, s.Dh};
  Speed sp;
  sp.fwd = timed([&] { ops.attention_forward(o.p, lse.p, q.p, sl.p, d); });
  sp.bwd = timed([&] { ops.attention_backward(dq.p, o.p, q.p, o.p, lse.p, sl.p, d); });
  return sp;
}

// Every kernel's TFLOP/s, then whether the default (the rule) runs the faster of our own two.
bool time_all(cuda::Backend& gpu) {
  const Shape s{4, 2048, 16, 128};
  bool ok = true;
  Speed ours[2];
  for (size_t k = 0; k < std::size(kKernels); ++k) {
    const std::string name = std::string("attention_speed_") + kKernels[k].name;
    select(gpu, kKernels[k]);
    try {
      const Speed sp = time_attention(gpu, s);
      if (k < 2) ours[k] = sp;
      char fig[200];
      std::snprintf(fig, sizeof fig, "B %d S %d H %d Dh %d bf16: forward %.1f TFLOP/s (%.2f ms), backward %.1f TFLOP/s (%.2f ms)",
                    s.B, s.T, s.H, s.Dh, s.fwd_flops() / sp.fwd / 1e12, 1e3 * sp.fwd,
                    2.5 * s.fwd_flops() / sp.bwd / 1e12, 1e3 * sp.bwd);
      check_line(name, "ok", fig);
    } catch (const std::exception& e) {
      check_line(name, "FAIL", e.what());
      ok = false;
    }
  }
  gpu.set_attention(AttentionImpl::Native);
  gpu.set_native_attention(cuda::NativeAttention::Auto);
  if (ok) {
    // The rule runs the tensor-core kernels at this shape: they must be the faster, forward and backward.
    const bool faster = ours[1].fwd < ours[0].fwd && ours[1].bwd < ours[0].bwd;
    char fig[200];
    std::snprintf(fig, sizeof fig, "the default runs the tensor-core kernels at Dh %d: %.1fx (forward), %.1fx "
                  "(backward) the speed of the fp32-FMA ones", s.Dh, ours[0].fwd / ours[1].fwd, ours[0].bwd / ours[1].bwd);
    check_line("attention_default_rule", faster ? "ok" : "FAIL", fig);
    ok = ok && faster;
  }
  return ok;
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
    bool ok = compare_all(*gpu);
    ok = time_all(*gpu) && ok;
    std::printf("gpu_attention_job: %s\n", ok ? "passed" : "failed");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_attention_job: error: %s\n", e.what());
    return 1;
  }
}
