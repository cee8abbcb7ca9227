// Why: every op's test case, written once for every backend (the shape of ggml's test-backend-ops). A
// case builds its inputs through the Device interface, runs its ops on any Ops<T> (double, float or
// bf16) and returns the outputs widened to double; op_cases() lists every case once, and the one driver
// (tests/op_harness.h) runs the list on every backend present against CpuOps<double>. Adding an op adds
// one case here. No cuda/ header: the CPU-only test binary compiles this too (Ops<bf16> is only the
// interface). Inputs are fresh random values each run (MT_TEST_SEED=<seed> replays a printed seed);
// sizes are odd on purpose (tile and warp remainders, padded head dims, unaligned leading dimensions).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/core/device.h"
#include "engine/core/dtype.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/model/experts.h"
#include "engine/ops/ops.h"

namespace mt::optest {

using Vec = std::vector<double>;

// Host value conversions for the element types of the backends.
template <typename T>
inline T from_double(double x) {
  if constexpr (std::is_same_v<T, bf16>) return to_bf16(float(x));
  else return T(x);
}
template <typename T>
inline double to_double(T x) {
  if constexpr (std::is_same_v<T, bf16>) return double(to_float(x));
  else return double(x);
}
inline double round_bf16(double x) { return double(to_float(to_bf16(float(x)))); }
inline double round_f32(double x) { return double(float(x)); }
inline Vec rounded(const Vec& v, double (*f)(double)) {
  Vec r(v);
  for (double& x : r) x = f(x);
  return r;
}

inline Vec random_vec(std::mt19937_64& rng, size_t n, double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> u(lo, hi);
  Vec v(n);
  for (double& x : v) x = u(rng);
  return v;
}

// A fresh seed per case and run, or MT_TEST_SEED to replay one.
inline uint64_t fresh_seed() {
  if (const char* s = std::getenv("MT_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  static std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

// A buffer of `n` elements of X in a backend's memory, filled from doubles or poisoned (NaN) so that an
// element the op does not write shows up in the comparison.
template <typename X>
class Buf {
 public:
  Buf(Device& dev, size_t n) : dev_(dev), n_(n) {
    ptr_ = static_cast<X*>(dev.alloc(std::max<size_t>(1, n) * sizeof(X)));
  }
  Buf(Device& dev, const Vec& v) : Buf(dev, v.size()) { upload(v); }
  ~Buf() { dev_.release(ptr_); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  X* get() { return ptr_; }
  operator X*() { return ptr_; }
  void upload(const Vec& v) {
    std::vector<X> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = from_double<X>(v[i]);
    if (!h.empty()) dev_.copy(ptr_, h.data(), sizeof(X) * h.size(), CopyKind::HostToDevice);
  }
  void poison() { upload(Vec(n_, std::nan(""))); }
  Vec download() {
    std::vector<X> h(n_);
    dev_.synchronize();
    if (n_) dev_.copy(h.data(), ptr_, sizeof(X) * n_, CopyKind::DeviceToHost);
    Vec v(n_);
    for (size_t i = 0; i < n_; ++i) v[i] = to_double(h[i]);
    return v;
  }

 private:
  Device& dev_;
  size_t n_;
  X* ptr_ = nullptr;
};

// ‖a − b‖2 / ‖b‖2 (‖a − b‖2 when b is zero); NaN anywhere, or different sizes, give infinity.
inline double rel_l2(const Vec& a, const Vec& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// How an output is compared: Compute outputs have the type T (rounded to bf16 in the plain bf16
// version), Acc outputs the type P (fp32 statistics and gradients); Exact outputs are integers (top-K,
// routing plan, counts) that every backend must give exactly.
enum class Kind { Compute, Acc, Exact };
struct Output {
  std::string name;
  Vec values;
  Kind kind = Kind::Compute;
};
using Outputs = std::vector<Output>;

// Inputs of one run: compute-type inputs are rounded to bf16 for the bf16 check (so every backend sees
// the same values), statistics and fp32 inputs to float.
struct Gen {
  std::mt19937_64 rng;
  bool bf16_inputs;
  Gen(uint64_t seed, bool b) : rng(seed), bf16_inputs(b) {}
  Vec t(size_t n, double lo = -1, double hi = 1) {
    return rounded(random_vec(rng, n, lo, hi), bf16_inputs ? round_bf16 : round_f32);
  }
  Vec p(size_t n, double lo = -1, double hi = 1) { return rounded(random_vec(rng, n, lo, hi), round_f32); }
  Vec ints(size_t n, int hi) {
    Vec v(n);
    for (double& x : v) x = double(rng() % uint64_t(hi));
    return v;
  }
};

struct CaseBase {
  uint64_t seed = fresh_seed();
  double fp32_tol = 1e-5;
};

// ---- GEMM -----------------------------------------------------------------------------------------------

struct GemmCase : CaseBase {
  Trans ta = Trans::No, tb = Trans::No;
  int m = 0, n = 0, k = 0, pad = 0;
  bool acc = false;
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    const int lda = (ta == Trans::No ? k : m) + pad, ldb = (tb == Trans::No ? n : k) + pad, ldc = n + pad;
    const size_t a_rows = ta == Trans::No ? m : k, b_rows = tb == Trans::No ? k : n;
    Buf<T> A(dev, gen.t(a_rows * lda)), B(dev, gen.t(b_rows * ldb));
    const GemmShape s{ta, tb, m, n, k, lda, ldb, ldc};
    if (!acc) {
      Buf<T> C(dev, gen.t(size_t(m) * ldc));
      ops.gemm(C, A, B, s, 0.7f, 0.3f);
      return {{"C", C.download()}};
    }
    Buf<P> C(dev, gen.p(size_t(m) * ldc));
    ops.gemm_acc(C, A, B, s, 1.f, 1.f);
    return {{"C (acc)", C.download(), Kind::Acc}};
  }
};

// ---- embedding, RMSNorm, SwiGLU, cross-entropy ----------------------------------------------------------

struct EmbeddingCase : CaseBase {
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    const int N = 300, Dm = 200, V = 50;
    Buf<int32_t> tokens(dev, gen.ints(N, V));
    Buf<T> wte(dev, gen.t(size_t(V) * Dm)), dout(dev, gen.t(size_t(N) * Dm)), out(dev, size_t(N) * Dm);
    Buf<P> dwte(dev, gen.p(size_t(V) * Dm));
    out.poison();
    ops.embedding_forward(out, tokens, wte, N, Dm);
    ops.embedding_backward(dwte, dout, tokens, N, Dm, V);
    return {{"out", out.download()}, {"dwte", dwte.download(), Kind::Acc}};
  }
};

struct RmsnormCase : CaseBase {
  int N = 0, Dm = 0;
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    const size_t nd = size_t(N) * Dm;
    Buf<T> inp(dev, gen.t(nd)), w(dev, gen.t(Dm, 0.5, 1.5)), dout(dev, gen.t(nd)), out(dev, nd), dinp(dev, gen.t(nd));
    Buf<P> rstd(dev, N), dw(dev, gen.p(Dm));
    out.poison();
    ops.rmsnorm_forward(out, rstd, inp, w, N, Dm, 1e-5f);
    ops.rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, Dm);
    return {{"out", out.download()}, {"rstd", rstd.download(), Kind::Acc}, {"dinp", dinp.download()},
            {"dweight", dw.download(), Kind::Acc}};
  }
};

struct SwigluCase : CaseBase {
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    Gen gen(seed, b);
    Device& dev = ops.device();
    const int N = 100, F = 300;
    Buf<T> h13(dev, gen.t(size_t(N) * 2 * F, -5, 5)), dout(dev, gen.t(size_t(N) * F)), out(dev, size_t(N) * F),
        dh13(dev, size_t(N) * 2 * F);
    out.poison();
    dh13.poison();
    ops.swiglu_forward(out, h13, N, F);
    ops.swiglu_backward(dh13, dout, h13, N, F);
    return {{"out", out.download()}, {"dh13", dh13.download()}};
  }
};

struct CrossEntropyCase : CaseBase {
  enum class Grad { Separate, InPlace, None };
  int N = 0, V = 0;
  Grad grad = Grad::Separate;
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    Buf<T> logits(dev, gen.t(size_t(N) * V, -4, 4)), dlogits(dev, size_t(N) * V);
    Buf<int32_t> targets(dev, gen.ints(N, V));
    Buf<P> losses(dev, N);
    dlogits.poison();
    losses.poison();
    T* d = grad == Grad::Separate ? dlogits.get() : grad == Grad::InPlace ? logits.get() : nullptr;
    ops.cross_entropy(losses, d, logits, targets, 0.37f, N, V);
    Outputs o{{"losses", losses.download(), Kind::Acc}};
    if (grad == Grad::Separate) o.push_back({"dlogits", dlogits.download()});
    if (grad == Grad::InPlace) o.push_back({"dlogits (in place)", logits.download()});
    return o;
  }
};

// ---- attention --------------------------------------------------------------------------------------------

struct AttentionCase : CaseBase {
  AttnDims d;
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    const size_t n_qkv = size_t(d.B) * d.S * 3 * d.H * d.Dh, n_out = size_t(d.B) * d.S * d.H * d.Dh;
    std::vector<float> slopes(d.H);
    alibi_slopes(slopes.data(), d.H);
    Buf<float> sl(dev, Vec(slopes.begin(), slopes.end()));
    Buf<T> qkv(dev, gen.t(n_qkv, -2, 2)), dout(dev, gen.t(n_out)), out(dev, n_out), dqkv(dev, n_qkv);
    Buf<P> lse(dev, size_t(d.B) * d.H * d.S);
    out.poison();
    dqkv.poison();
    ops.attention_forward(out, lse, qkv, sl, d);
    ops.attention_backward(dqkv, dout, qkv, out, lse, sl, d);
    return {{"out", out.download()}, {"lse", lse.download(), Kind::Acc}, {"dqkv", dqkv.download()}};
  }
};

// ---- router, dispatch, combine ---------------------------------------------------------------------------------

// Logits on a grid of 1/64: equal logits are exact ties (the lower index wins on every backend), and
// distinct ones lie too far apart for any precision to reorder them, so routing_map is exact.
// With select_bias, an expert bias of whole numbers (0, 1, 2): it reorders experts of different bias
// and leaves ties within one bias to the probabilities, so the choice stays exact.
struct RouterCase : CaseBase {
  RouteDims d;
  GateNorm norm = GateNorm::None;
  bool select_bias = false;
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    const int N = d.N, E = d.E, K = d.K;
    Gen gen(seed, b);
    Device& dev = ops.device();
    Vec z = gen.p(size_t(N) * E, -3, 3);
    for (double& x : z) x = std::round(x * 64) / 64;
    Buf<P> logits(dev, z), dgates(dev, gen.p(size_t(N) * K)), gates(dev, size_t(N) * K), probs(dev, size_t(N) * E),
        lse(dev, N), dlogits(dev, size_t(N) * E);
    Buf<int32_t> routing_map(dev, size_t(N) * K);
    Buf<int64_t> counts(dev, size_t(E)), bad(dev, Vec{0});
    Buf<double> losses(dev, 3);
    Vec bias_values(static_cast<size_t>(E), 0.0);
    for (int e = 0; e < E; ++e) bias_values[e] = double((e * 7) % 3);
    Buf<P> bias(dev, bias_values);
    ops.router_forward(routing_map, gates, probs, lse, logits, select_bias ? bias.get() : nullptr, d, norm);
    ops.router_stats(losses, counts, bad, routing_map, probs, lse, d);
    ops.router_backward(dlogits, dgates, counts, 0.37, probs, lse, routing_map, gates, 0.25f, d, norm);
    return {{"routing_map", routing_map.download(), Kind::Exact},
            {"gates", gates.download(), Kind::Acc},
            {"probs", probs.download(), Kind::Acc},
            {"lse", lse.download(), Kind::Acc},
            {"dlogits", dlogits.download(), Kind::Acc},
            {"counts", counts.download(), Kind::Exact},
            {"bad", bad.download(), Kind::Exact},
            {"balance, z-loss and entropy", losses.download(), Kind::Acc}};
  }
};

struct DispatchCase : CaseBase {
  int N = 0, K = 0, E = 0, Dm = 0, capacity = -1;
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    // Distinct experts per token, skewed so that the first experts overflow a capacity.
    Vec map(size_t(N) * K);
    std::mt19937_64 r(seed);
    for (int t = 0; t < N; ++t) {
      std::vector<int> perm(E);
      std::iota(perm.begin(), perm.end(), 0);
      for (int k = 0; k < K; ++k) {
        const int pick = k == 0 ? int(r() % std::min(E, 2)) : k + int(r() % uint64_t(E - k));
        std::swap(perm[k], perm[std::min(pick, E - 1)]);
        map[size_t(t) * K + k] = perm[k];
      }
    }
    const size_t choices = size_t(N) * K;
    Buf<int32_t> routing_map(dev, map), slot(dev, choices), row_src(dev, choices);
    Buf<int64_t> offsets(dev, size_t(E) + 1), bad(dev, Vec{0});
    ops.moe_route_plan(slot, row_src, offsets, bad, routing_map, {N, E, K}, capacity);
    const Vec off = offsets.download();  // the test reads R; the ops never need it on the host
    const int R = int(off[E]);
    // The buffers hold all N K rows, as the MoE layer's do; permute skips the rows past R.
    const size_t nd = size_t(N) * Dm, rd = choices * Dm;
    Buf<T> inp(dev, gen.t(nd)), permuted(dev, rd), dperm(dev, gen.t(rd)), dinp(dev, nd), expert_out(dev, gen.t(rd)),
        combined(dev, nd), dy(dev, gen.t(nd)), dexp(dev, rd);
    Buf<P> gates(dev, gen.p(choices, 0, 1)), dgates(dev, choices);
    permuted.poison();
    dinp.poison();
    combined.poison();
    dexp.poison();
    const DispatchDims dd{N, K, Dm};
    ops.moe_permute(permuted, inp, row_src, {int(choices), Dm});
    ops.moe_permute_backward(dinp, dperm, slot, dd);
    ops.moe_combine(combined, expert_out, gates, slot, dd);
    ops.moe_combine_backward(dexp, dgates, dy, expert_out, gates, slot, dd);
    // Kept rows: their values; rows past R: how many were written (none).
    auto split = [&](Vec v, Vec* tail_written) {
      size_t written = 0;
      for (size_t i = size_t(R) * Dm; i < v.size(); ++i) written += !std::isnan(v[i]);
      *tail_written = Vec{double(written)};
      v.resize(size_t(R) * Dm);
      return v;
    };
    Vec perm_tail, dexp_tail;
    const Vec perm = split(permuted.download(), &perm_tail), dex = split(dexp.download(), &dexp_tail);
    return {{"expert_offsets", off, Kind::Exact},
            {"slot", slot.download(), Kind::Exact},
            {"row_src", row_src.download(), Kind::Exact},
            {"bad", bad.download(), Kind::Exact},
            {"permute", perm},
            {"permute rows past R written", perm_tail, Kind::Exact},
            {"permute_backward", dinp.download()},
            {"combine", combined.download()},
            {"combine_backward dexpert_out", dex},
            {"combine_backward rows past R written", dexp_tail, Kind::Exact},
            {"combine_backward dgates", dgates.download(), Kind::Acc}};
  }
};

// ---- experts ------------------------------------------------------------------------------------------------------

struct ExpertsCase : CaseBase {
  static constexpr int E = 4, Dm = 64, F = 96;
  std::vector<int64_t> offsets{0, 30, 30, 75, 101};  // expert 1 gets no rows
  struct Inputs {
    Vec inp, w1, w3, w2, dout, dw1, dw3, dw2;
  };
  Inputs inputs(bool b) const {
    Gen gen(seed, b);
    const size_t R = size_t(offsets[E]), ws = size_t(E) * F * Dm;
    Inputs in;
    in.inp = gen.t(R * Dm);
    in.w1 = gen.t(ws, -0.2, 0.2);
    in.w3 = gen.t(ws, -0.2, 0.2);
    in.w2 = gen.t(ws, -0.2, 0.2);
    in.dout = gen.t(R * Dm);
    in.dw1 = gen.p(ws);
    in.dw3 = gen.p(ws);
    in.dw2 = gen.p(ws);
    return in;
  }
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Device& dev = ops.device();
    const Inputs in = inputs(b);
    const size_t R = size_t(offsets[E]);
    Buf<T> inp(dev, in.inp), w1(dev, in.w1), w3(dev, in.w3), w2(dev, in.w2), dout(dev, in.dout), out(dev, R * Dm),
        h13(dev, R * 2 * F), act(dev, R * F), dinp(dev, R * Dm), dh13(dev, R * 2 * F), dact(dev, R * F);
    Buf<P> dw1(dev, in.dw1), dw3(dev, in.dw3), dw2(dev, in.dw2);
    Buf<int64_t> off(dev, Vec(offsets.begin(), offsets.end()));
    out.poison();
    dinp.poison();
    const ExpertWeights<const T> w{w1.get(), w3.get(), w2.get()};
    const ExpertDims dims{E, Dm, F, int(R)};
    experts_forward<T>(ops, out, {h13.get(), act.get()}, inp, w, off, dims);
    experts_backward<T>(ops, dinp, {dw1.get(), dw3.get(), dw2.get()}, {dh13.get(), dact.get()}, dout, inp,
                        {h13.get(), act.get()}, w, off, dims);
    return {{"out", out.download()},
            {"h13", h13.download()},
            {"act", act.download()},
            {"dinp", dinp.download()},
            {"dw1", dw1.download(), Kind::Acc},
            {"dw3", dw3.download(), Kind::Acc},
            {"dw2", dw2.download(), Kind::Acc}};
  }

  // The plain bf16 version rounds every stored intermediate as the GPU does (h13, act, dact, dh13; dinp
  // once, the two halves' products summed in fp32), with fp32 arithmetic in between.
  Outputs plain_bf16_version() const {
    CpuOps<float> ops;
    const Inputs in = inputs(true);
    const size_t R = size_t(offsets[E]), ws = size_t(F) * Dm;
    auto f = [](const Vec& v) { return std::vector<float>(v.begin(), v.end()); };
    auto round = [](std::vector<float>& v) {
      for (float& x : v) x = to_float(to_bf16(x));
    };
    std::vector<float> inp = f(in.inp), w1 = f(in.w1), w3 = f(in.w3), w2 = f(in.w2), dout = f(in.dout);
    std::vector<float> dw1 = f(in.dw1), dw3 = f(in.dw3), dw2 = f(in.dw2);
    std::vector<float> h13(R * 2 * F), act(R * F), out(R * Dm), dact(R * F), dh13(R * 2 * F), dinp(R * Dm);
    const int ld13 = 2 * F;
    for (int e = 0; e < E; ++e) {
      const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
      if (!n) continue;
      const GemmShape up{Trans::No, Trans::Yes, n, F, Dm, Dm, Dm, ld13};
      ops.gemm(h13.data() + r0 * ld13, inp.data() + r0 * Dm, w1.data() + e * ws, up, 1, 0);
      ops.gemm(h13.data() + r0 * ld13 + F, inp.data() + r0 * Dm, w3.data() + e * ws, up, 1, 0);
    }
    round(h13);
    ops.swiglu_forward(act.data(), h13.data(), int(R), F);
    round(act);
    for (int e = 0; e < E; ++e) {
      const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
      if (!n) continue;
      ops.gemm(out.data() + r0 * Dm, act.data() + r0 * F, w2.data() + e * ws,
               {Trans::No, Trans::Yes, n, Dm, F, F, F, Dm}, 1, 0);
      ops.gemm(dact.data() + r0 * F, dout.data() + r0 * Dm, w2.data() + e * ws,
               {Trans::No, Trans::No, n, F, Dm, Dm, F, F}, 1, 0);
      ops.gemm_acc(dw2.data() + e * ws, dout.data() + r0 * Dm, act.data() + r0 * F,
                   {Trans::Yes, Trans::No, Dm, F, n, Dm, F, F}, 1, 1);
    }
    round(out);
    round(dact);
    ops.swiglu_backward(dh13.data(), dact.data(), h13.data(), int(R), F);
    round(dh13);
    for (int e = 0; e < E; ++e) {
      const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
      if (!n) continue;
      float* dx = dinp.data() + r0 * Dm;
      const float* dh = dh13.data() + r0 * ld13;
      const GemmShape down{Trans::No, Trans::No, n, Dm, F, ld13, Dm, Dm};
      const GemmShape dw{Trans::Yes, Trans::No, F, Dm, n, ld13, Dm, Dm};
      ops.gemm(dx, dh, w1.data() + e * ws, down, 1, 0);
      ops.gemm(dx, dh + F, w3.data() + e * ws, down, 1, 1);
      ops.gemm_acc(dw1.data() + e * ws, dh, inp.data() + r0 * Dm, dw, 1, 1);
      ops.gemm_acc(dw3.data() + e * ws, dh + F, inp.data() + r0 * Dm, dw, 1, 1);
    }
    round(dinp);
    auto d = [](const std::vector<float>& v) { return Vec(v.begin(), v.end()); };
    return {{"out", d(out)},
            {"h13", d(h13)},
            {"act", d(act)},
            {"dinp", d(dinp)},
            {"dw1", d(dw1), Kind::Acc},
            {"dw3", d(dw3), Kind::Acc},
            {"dw2", d(dw2), Kind::Acc}};
  }
};

// ---- elementwise, reductions, AdamW ---------------------------------------------------------------------------

struct ElementwiseCase : CaseBase {
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    const size_t n = 100003;  // several reduction chunks and a ragged tail
    Buf<T> x(dev, gen.t(n)), y(dev, gen.t(n)), xc(dev, n);
    Buf<P> pin(dev, gen.p(n));
    Buf<P> param(dev, gen.p(n)), grad(dev, gen.p(n)), m(dev, gen.p(n, -0.1, 0.1)), v(dev, gen.p(n, 0, 0.01));
    ops.add_inplace(x, y, n);
    ops.to_compute(xc, pin, n);
    const double ss = ops.sum_squares(pin, n), s = ops.sum(pin, n);
    AdamWArgs a;
    a.lr = 1e-2f;
    a.weight_decay = 0.1f;
    a.grad_scale = 0.5f;
    a.step = 3;
    ops.adamw(param, grad, m, v, n, a);
    return {{"add_inplace", x.download()},
            {"to_compute", xc.download()},
            {"sum_squares", Vec{ss}, Kind::Acc},
            {"sum", Vec{s}, Kind::Acc},
            {"adamw param", param.download(), Kind::Acc},
            {"adamw m", m.download(), Kind::Acc},
            {"adamw v", v.download(), Kind::Acc}};
  }
};

// ---- grouped linear layers (the routed experts' GEMMs) -----------------------------------------------------------

// Groups of uneven rows (empty ones, one of a single row, one over several tiles), the row buffers
// longer than the rows in use (the rows past offsets[G] hold values the op must neither read nor
// write), and a weight stacked from two tensors (split < Out) or one.
struct GroupedLinearCase : CaseBase {
  std::vector<int64_t> offsets;  // G + 1
  int In = 0, Out = 0, split = 0, rows = 0;
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    const int G = int(offsets.size()) - 1;
    const size_t used = size_t(offsets[G]);
    const bool stacked = split < Out;
    const size_t top = size_t(G) * split * In, bottom = size_t(G) * (Out - split) * In;
    Buf<T> x(dev, gen.t(size_t(rows) * In)), dy(dev, gen.t(size_t(rows) * Out)), y(dev, size_t(rows) * Out),
        dx(dev, size_t(rows) * In), wt(dev, gen.t(top, -0.3, 0.3)), wb(dev, gen.t(bottom, -0.3, 0.3));
    Buf<P> dwt(dev, gen.p(top)), dwb(dev, gen.p(bottom));
    Buf<int64_t> off(dev, Vec(offsets.begin(), offsets.end()));
    y.poison();
    dx.poison();
    const GroupedLinearDims d{G, In, Out, split, rows};
    const StackedWeight<const T> w{wt.get(), stacked ? wb.get() : nullptr};
    ops.grouped_linear_forward(y, x, w, off, d);
    ops.grouped_linear_backward(dx, {dwt.get(), stacked ? dwb.get() : nullptr}, dy, x, w, off, d);
    // The rows in use, and how many values past them were written (none).
    auto in_use = [&](Vec v, int width, Vec* tail_written) {
      size_t written = 0;
      for (size_t i = used * width; i < v.size(); ++i) written += !std::isnan(v[i]);
      *tail_written = Vec{double(written)};
      v.resize(used * width);
      return v;
    };
    Vec y_tail, dx_tail;
    const Vec yv = in_use(y.download(), Out, &y_tail), dxv = in_use(dx.download(), In, &dx_tail);
    Outputs o{{"y", yv},
              {"y rows past offsets[G] written", y_tail, Kind::Exact},
              {"dx", dxv},
              {"dx rows past offsets[G] written", dx_tail, Kind::Exact},
              {"dW top", dwt.download(), Kind::Acc}};
    if (stacked) o.push_back({"dW bottom", dwb.download(), Kind::Acc});
    return o;
  }
};

// The optimizer's multi-tensor ops: the squared norms of several spans (empty, one element, several
// chunks with ragged tails) summed into groups, and AdamW over a buffer in runs of their own weight decay
// (empty runs, and more runs than one GPU launch takes).
struct OptimizerMultiCase : CaseBase {
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool) const {
    using P = acc_t<T>;
    Gen gen(seed, false);
    Device& dev = ops.device();
    const size_t n = 100003;
    Buf<P> a(dev, gen.p(n)), b(dev, gen.p(70001)), c(dev, gen.p(1));
    const SquaresSpan<P> spans[] = {{a, 5000, 1}, {b, 70001, 0}, {c, 0, 2}, {a.get() + 5000, n - 5000, 1}, {c, 1, 2}};
    double sums[3];
    ops.sum_squares_groups(sums, 3, spans, int(std::size(spans)));
    Buf<P> param(dev, gen.p(n)), grad(dev, gen.p(n)), m(dev, gen.p(n, -0.1, 0.1)), v(dev, gen.p(n, 0, 0.01));
    std::vector<DecayRun> runs;
    for (int r = 0; r < 450; ++r) runs.push_back({size_t(r) * n / 450 + (r % 7 == 3 ? 0 : r % 5), r % 2 ? 0.1f : 0.f});
    runs.push_back({n, 0.2f});
    AdamWArgs args;
    args.lr = 1e-2f;
    args.grad_scale = 0.5f;
    args.step = 2;
    args.runs = runs.data();
    args.n_runs = int(runs.size());
    ops.adamw(param, grad, m, v, n, args);
    return {{"squares group sums", Vec(sums, sums + 3), Kind::Acc},
            {"adamw runs param", param.download(), Kind::Acc},
            {"adamw runs m", m.download(), Kind::Acc},
            {"adamw runs v", v.download(), Kind::Acc}};
  }
};

// ---- the registry -------------------------------------------------------------------------------------------------

// One case of the list: its runs on the three element types, and how the driver judges them.
struct OpCase {
  std::string name;
  uint64_t seed = 0;
  double fp32_tol = 1e-5;            // fp32 backends: relative L2 error against CpuOps<double>
  bool thread_count_invariant = true;  // CPU: our own loops only (the GEMMs are OpenBLAS's, split by thread count)
  // The case on a backend of each element type; the flag rounds the compute-type inputs to bf16.
  std::function<Outputs(Ops<double>&, bool)> run_f64;
  std::function<Outputs(Ops<float>&, bool)> run_f32;
  std::function<Outputs(Ops<bf16>&, bool)> run_bf16;
  // The plain bf16 version of the outputs, when rounding only the outputs of the fp32 CPU run on bf16
  // inputs does not model it (a case that stores intermediates); empty: that default.
  std::function<Outputs()> plain_bf16_version;
};

template <typename Case>
OpCase op_case(std::string name, const Case& c, bool thread_count_invariant = true) {
  OpCase o;
  o.name = std::move(name);
  o.seed = c.seed;
  o.fp32_tol = c.fp32_tol;
  o.thread_count_invariant = thread_count_invariant;
  o.run_f64 = [c](Ops<double>& ops, bool b) { return c(ops, b); };
  o.run_f32 = [c](Ops<float>& ops, bool b) { return c(ops, b); };
  o.run_bf16 = [c](Ops<bf16>& ops, bool b) { return c(ops, b); };
  return o;
}

// Every op case, once (fresh seeds on every call).
inline std::vector<OpCase> op_cases() {
  std::vector<OpCase> all;
  // GEMM in every transpose, with and without padded leading dimensions, into T and into P; k = 0 is
  // C = beta C.
  for (Trans ta : {Trans::No, Trans::Yes})
    for (Trans tb : {Trans::No, Trans::Yes})
      for (int pad : {0, 3})
        for (bool acc : {false, true}) {
          GemmCase c;
          c.ta = ta;
          c.tb = tb;
          c.m = 77;
          c.n = 45;
          c.k = 130;
          c.pad = pad;
          c.acc = acc;
          all.push_back(op_case(std::string(acc ? "gemm_acc" : "gemm") + " ta " + std::to_string(int(ta)) + " tb " +
                                    std::to_string(int(tb)) + " pad " + std::to_string(pad),
                                c, false));
        }
  {
    GemmCase c;
    c.ta = Trans::No;
    c.tb = Trans::Yes;
    c.m = 9;
    c.n = 7;
    c.k = 0;
    c.pad = 1;
    all.push_back(op_case("gemm k 0", c, false));
  }
  all.push_back(op_case("embedding", EmbeddingCase{}));
  for (auto [N, Dm] : {std::pair{300, 200}, std::pair{1100, 96}, std::pair{5, 4100}}) {
    RmsnormCase c;
    c.N = N;
    c.Dm = Dm;
    all.push_back(op_case("rmsnorm N " + std::to_string(N) + " Dm " + std::to_string(Dm), c));
  }
  all.push_back(op_case("swiglu", SwigluCase{}));
  using Grad = CrossEntropyCase::Grad;
  for (int V : {5003, 10007, 40})
    for (auto [grad, what] : {std::pair{Grad::Separate, "separate dlogits"},
                              std::pair{Grad::InPlace, "dlogits in place"}, std::pair{Grad::None, "loss only"}}) {
      CrossEntropyCase c;
      c.N = 37;
      c.V = V;
      c.grad = grad;
      all.push_back(op_case("cross_entropy V " + std::to_string(V) + " " + what, c));
    }
  // Dh 16 and 80 are padded (to 32 and 128) on the GPU; 160 uses the Dh <= 256 tiles; S = 150 leaves
  // partial tiles; then a single token of a single sequence.
  for (int Dh : {16, 32, 64, 80, 128, 160}) {
    AttentionCase c;
    c.d = {2, 150, 3, Dh};
    all.push_back(op_case("attention Dh " + std::to_string(Dh), c));
  }
  {
    AttentionCase c;
    c.d = {1, 1, 2, 64};
    all.push_back(op_case("attention one token", c));
  }
  for (auto [E, K] : {std::pair{16, 4}, std::pair{40, 2}, std::pair{64, 8}, std::pair{5, 1}})
    for (GateNorm norm : {GateNorm::None, GateNorm::Renormalize}) {
      RouterCase c;
      c.d = {203, E, K};
      c.norm = norm;
      all.push_back(op_case("router E " + std::to_string(E) + " K " + std::to_string(K) +
                                (norm == GateNorm::Renormalize ? " renormalized" : ""),
                            c));
    }
  for (int capacity : {-1, 70, 0})
    for (auto [N, K, E] : {std::tuple{200, 2, 5}, std::tuple{700, 3, 16}}) {
      DispatchCase c;
      c.N = N;
      c.K = K;
      c.E = E;
      c.Dm = 96;
      c.capacity = capacity;
      all.push_back(op_case("route plan, permute, combine N " + std::to_string(N) + " K " + std::to_string(K) +
                                " E " + std::to_string(E) +
                                (capacity < 0 ? " dropless" : " capacity " + std::to_string(capacity)),
                            c));
    }
  {
    ExpertsCase c;
    OpCase o = op_case("experts (grouped SwiGLU, an empty expert)", c, false);
    o.plain_bf16_version = [c] { return c.plain_bf16_version(); };
    all.push_back(std::move(o));
  }
  all.push_back(op_case("elementwise, reductions, AdamW", ElementwiseCase{}));
  all.push_back(op_case("squared norms of spans in groups, AdamW in decay runs", OptimizerMultiCase{}));
  struct Grouped {
    const char* name;
    std::vector<int64_t> offsets;
    int In, Out, split, rows;
  };
  for (const Grouped& g : {Grouped{"stacked, an empty group, a one-row group", {0, 37, 37, 150, 151, 200}, 70, 90, 45, 230},
                           Grouped{"one tensor, rows exactly in use", {0, 64, 129}, 45, 33, 33, 129},
                           Grouped{"nine groups of every size, stacked", {0, 5, 5, 22, 86, 87, 87, 120, 122, 131}, 128, 96,
                                   48, 140},
                           Grouped{"no rows at all", {0, 0, 0}, 40, 24, 24, 16}}) {
    GroupedLinearCase c;
    c.offsets = g.offsets;
    c.In = g.In;
    c.Out = g.Out;
    c.split = g.split;
    c.rows = g.rows;
    all.push_back(op_case(std::string("grouped_linear ") + g.name, c, false));
  }
  for (auto [E, K] : {std::pair{16, 4}, std::pair{40, 2}})
    for (GateNorm norm : {GateNorm::None, GateNorm::Renormalize}) {
      RouterCase c;
      c.d = {203, E, K};
      c.norm = norm;
      c.select_bias = true;
      all.push_back(op_case("router with an expert bias E " + std::to_string(E) + " K " + std::to_string(K) +
                                (norm == GateNorm::Renormalize ? " renormalized" : ""),
                            c));
    }
  return all;
}

}  // namespace mt::optest
