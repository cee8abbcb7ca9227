// Why: every CUDA op must compute the same function as its CPU twin (engine/cpu), on fresh random inputs
// each run (the seed is printed on failure). fp32 mode: within 1e-5 (relative L2) of the float64 CPU
// result. bf16 mode: the error against float64 at most twice that of a plain bf16 version of the op (fp32
// arithmetic on the same bf16 inputs, bf16 outputs), so the kernels lose nothing beyond bf16 storage.
// Integer results (top-K, routing plan, counts) must be identical. The same test body runs on CpuOps
// and CudaOps through the Device interface. Sizes are odd on purpose (tile and warp remainders,
// padded head dims, unaligned leading dimensions).
#include <algorithm>
#include <numeric>

#include "engine/cpu/cpu_ops.h"
#include "engine/model/experts.h"
#include "tests/gpu/gpu_test_util.h"

using namespace mt;
using namespace mt::gputest;

namespace {

uint64_t fresh_seed() {
  static std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

// Inputs of one run: compute-type inputs are rounded to bf16 in the bf16 check (so every backend sees
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

// Runs `c` on the three backends and checks fp32 and bf16 as described at the top.
template <typename Case>
void check_case(const Case& c) {
  CpuOps<double> cpu64;
  CpuOps<float> cpu32;
  auto& g = gpu();
  {
    INFO("fp32 check");
    check_fp32(c(g.fp32, false), c(cpu64, false), c.fp32_tol);
  }
  {
    INFO("bf16 check");
    check_bf16(c(g.bf16_ops, true), plain_bf16(c(cpu32, true)), c(cpu64, true));
  }
}

struct CaseBase {
  uint64_t seed = fresh_seed();
  double fp32_tol = 1e-5;
};

// ---- GEMM -----------------------------------------------------------------------------------------------

struct GemmCase : CaseBase {
  Trans ta, tb;
  int m, n, k, pad;
  bool acc;
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
    return {{"C (acc)", C.download(), false}};
  }
};

TEST_CASE("gpu gemm and gemm_acc match the CPU in every transpose", "[gpu]") {
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
          INFO("ta " << int(ta) << " tb " << int(tb) << " pad " << pad << " acc " << acc << " seed " << c.seed);
          check_case(c);
        }
  // k = 0: C = beta C.
  GemmCase c;
  c.ta = Trans::No;
  c.tb = Trans::Yes;
  c.m = 9;
  c.n = 7;
  c.k = 0;
  c.pad = 1;
  c.acc = false;
  check_case(c);
}

// ---- embedding, RMSNorm, SwiGLU, cross-entropy ----------------------------------------------------------

struct EmbeddingCase : CaseBase {
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    const int N = 300, C = 200, V = 50;
    Buf<int32_t> tokens(dev, gen.ints(N, V));
    Buf<T> wte(dev, gen.t(size_t(V) * C)), dout(dev, gen.t(size_t(N) * C)), out(dev, size_t(N) * C);
    Buf<P> dwte(dev, gen.p(size_t(V) * C));
    out.poison();
    ops.embedding_forward(out, tokens, wte, N, C);
    ops.embedding_backward(dwte, dout, tokens, N, C, V);
    return {{"out", out.download()}, {"dwte", dwte.download(), false}};
  }
};

TEST_CASE("gpu embedding forward and backward", "[gpu]") {
  EmbeddingCase c;
  INFO("seed " << c.seed);
  check_case(c);
}

struct RmsnormCase : CaseBase {
  int N, C;
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    const size_t nc = size_t(N) * C;
    Buf<T> inp(dev, gen.t(nc)), w(dev, gen.t(C, 0.5, 1.5)), dout(dev, gen.t(nc)), out(dev, nc), dinp(dev, gen.t(nc));
    Buf<P> rstd(dev, N), dw(dev, gen.p(C));
    out.poison();
    ops.rmsnorm_forward(out, rstd, inp, w, N, C, 1e-5f);
    ops.rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
    return {{"out", out.download()}, {"rstd", rstd.download(), false}, {"dinp", dinp.download()},
            {"dweight", dw.download(), false}};
  }
};

TEST_CASE("gpu rmsnorm forward and backward", "[gpu]") {
  for (auto [N, C] : {std::pair{300, 200}, std::pair{1100, 96}, std::pair{5, 4100}}) {
    RmsnormCase c;
    c.N = N;
    c.C = C;
    INFO("N " << N << " C " << C << " seed " << c.seed);
    check_case(c);
  }
}

TEST_CASE("gpu rmsnorm backward may write dinp over dout", "[gpu]") {
  auto& g = gpu();
  Gen gen(fresh_seed(), false);
  const int N = 77, C = 300;
  const size_t nc = size_t(N) * C;
  const Vec x = gen.t(nc), w = gen.t(C, 0.5, 1.5), dy = gen.t(nc);
  Buf<float> inp(g.device, x), wt(g.device, w), out(g.device, nc), rstd(g.device, N);
  g.fp32.rmsnorm_forward(out, rstd, inp, wt, N, C, 1e-5f);
  // Separate: dinp starts at zero. Aliased: dinp is dout, so dinp = dout + dx.
  Buf<float> dout(g.device, dy), dinp(g.device, Vec(nc, 0.0)), dw1(g.device, Vec(C, 0.0)), dw2(g.device, Vec(C, 0.0));
  g.fp32.rmsnorm_backward(dinp, dw1, dout, inp, wt, rstd, N, C);
  g.fp32.rmsnorm_backward(dout, dw2, dout, inp, wt, rstd, N, C);
  Vec sep = dinp.download(), ali = dout.download();
  for (size_t i = 0; i < nc; ++i) sep[i] += dy[i];
  CHECK(rel_l2(ali, sep) <= 1e-6);
  CHECK(dw1.download() == dw2.download());
}

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

TEST_CASE("gpu swiglu forward and backward", "[gpu]") {
  SwigluCase c;
  INFO("seed " << c.seed);
  check_case(c);
}

struct CrossEntropyCase : CaseBase {
  int N, V;
  int mode;  // 0: separate dlogits, 1: dlogits over logits, 2: no gradient
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
    T* d = mode == 0 ? dlogits.get() : mode == 1 ? logits.get() : nullptr;
    ops.cross_entropy(losses, d, logits, targets, 0.37f, N, V);
    Outputs o{{"losses", losses.download(), false}};
    if (mode == 0) o.push_back({"dlogits", dlogits.download()});
    if (mode == 1) o.push_back({"dlogits (in place)", logits.download()});
    return o;
  }
};

TEST_CASE("gpu cross-entropy (separate, in place, loss only)", "[gpu]") {
  for (int V : {5003, 10007, 40})
    for (int mode : {0, 1, 2}) {
      CrossEntropyCase c;
      c.N = 37;
      c.V = V;
      c.mode = mode;
      INFO("V " << V << " mode " << mode << " seed " << c.seed);
      check_case(c);
    }
}

// ---- attention --------------------------------------------------------------------------------------------

struct AttentionCase : CaseBase {
  int B, S, H, Dh;
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    const size_t n_qkv = size_t(B) * S * 3 * H * Dh, n_out = size_t(B) * S * H * Dh;
    std::vector<float> slopes(H);
    alibi_slopes(slopes.data(), H);
    Buf<float> sl(dev, Vec(slopes.begin(), slopes.end()));
    Buf<T> qkv(dev, gen.t(n_qkv, -2, 2)), dout(dev, gen.t(n_out)), out(dev, n_out), dqkv(dev, n_qkv);
    Buf<P> lse(dev, size_t(B) * H * S);
    out.poison();
    dqkv.poison();
    ops.attention_forward(out, lse, qkv, sl, {B, S, H, Dh});
    ops.attention_backward(dqkv, dout, qkv, out, lse, sl, {B, S, H, Dh});
    return {{"out", out.download()}, {"lse", lse.download(), false}, {"dqkv", dqkv.download()}};
  }
};

TEST_CASE("gpu attention forward and backward for every head-size class", "[gpu]") {
  // Dh 16 and 80 are padded (to 32 and 128); 160 uses the Dh <= 256 tiles; S = 150 leaves partial tiles.
  for (int Dh : {16, 32, 64, 80, 128, 160}) {
    AttentionCase c;
    c.B = 2;
    c.S = 150;
    c.H = 3;
    c.Dh = Dh;
    INFO("Dh " << Dh << " seed " << c.seed);
    check_case(c);
  }
  AttentionCase one;  // a single token and a single short sequence
  one.B = 1;
  one.S = 1;
  one.H = 2;
  one.Dh = 64;
  check_case(one);
}

// ---- router, dispatch, combine ---------------------------------------------------------------------------------

struct RouterCase : CaseBase {
  int N, E, K;
  GateNorm norm;
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    Buf<P> logits(dev, gen.p(size_t(N) * E, -3, 3)), dgate(dev, gen.p(size_t(N) * K)), prob_grad(dev, gen.p(E)),
        gate(dev, size_t(N) * K), probs(dev, size_t(N) * E), lse(dev, N), dlogits(dev, size_t(N) * E);
    Buf<int32_t> idx(dev, size_t(N) * K);
    ops.router_forward(idx, gate, probs, lse, logits, {N, E, K}, norm);
    ops.router_backward(dlogits, dgate, prob_grad, probs, lse, idx, gate, 0.25f, {N, E, K}, norm);
    std::vector<int64_t> counts(E);
    std::vector<double> prob_sum(E);
    ops.router_stats(counts.data(), prob_sum.data(), idx, probs, {N, E, K});
    return {{"topk_idx", idx.download(), false},   {"gate", gate.download(), false},
            {"probs", probs.download(), false},    {"lse", lse.download(), false},
            {"dlogits", dlogits.download(), false}, {"counts", Vec(counts.begin(), counts.end()), false},
            {"prob_sum", prob_sum, false}};
  }
};

TEST_CASE("gpu router forward, backward and statistics", "[gpu]") {
  for (auto [E, K] : {std::pair{16, 4}, std::pair{40, 2}, std::pair{64, 8}, std::pair{5, 1}})
    for (GateNorm norm : {GateNorm::None, GateNorm::Renormalize}) {
      RouterCase c;
      c.N = 203;
      c.E = E;
      c.K = K;
      c.norm = norm;
      INFO("E " << E << " K " << K << " norm " << int(norm) << " seed " << c.seed);
      check_case(c);
    }
}

struct DispatchCase : CaseBase {
  int N, K, E, C, capacity;
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    // Distinct experts per token, skewed so that the first experts overflow a capacity.
    Vec idx_v(size_t(N) * K);
    std::mt19937_64 r(seed);
    for (int t = 0; t < N; ++t) {
      std::vector<int> perm(E);
      std::iota(perm.begin(), perm.end(), 0);
      for (int k = 0; k < K; ++k) {
        const int pick = k == 0 ? int(r() % std::min(E, 2)) : k + int(r() % uint64_t(E - k));
        std::swap(perm[k], perm[std::min(pick, E - 1)]);
        idx_v[size_t(t) * K + k] = perm[k];
      }
    }
    const size_t R_max = size_t(N) * K;
    Buf<int32_t> idx(dev, idx_v), slot(dev, R_max), row_src(dev, R_max);
    std::vector<int64_t> tpe(E);
    const int R = ops.moe_route_plan(slot, row_src, tpe.data(), idx, {N, E, K}, capacity);
    Buf<T> inp(dev, gen.t(size_t(N) * C)), permuted(dev, size_t(R) * C), dperm(dev, gen.t(size_t(R) * C)),
        dinp(dev, size_t(N) * C), expert_out(dev, gen.t(size_t(R) * C)), combined(dev, size_t(N) * C),
        dy(dev, gen.t(size_t(N) * C)), dexp(dev, size_t(R) * C);
    Buf<P> gate(dev, gen.p(R_max, 0, 1)), dgate(dev, R_max);
    permuted.poison();
    dinp.poison();
    combined.poison();
    dexp.poison();
    ops.moe_permute(permuted, inp, row_src, {R, C});
    ops.moe_permute_backward(dinp, dperm, slot, {N, K, C});
    ops.moe_combine(combined, expert_out, gate, slot, {N, K, C});
    ops.moe_combine_backward(dexp, dgate, dy, expert_out, gate, slot, {N, K, C});
    Vec rs = row_src.download();
    rs.resize(R);
    return {{"R", Vec{double(R)}, false},
            {"slot", slot.download(), false},
            {"row_src", rs, false},
            {"tokens_per_expert", Vec(tpe.begin(), tpe.end()), false},
            {"permute", permuted.download()},
            {"permute_backward", dinp.download()},
            {"combine", combined.download()},
            {"combine_backward dexpert_out", dexp.download()},
            {"combine_backward dgate", dgate.download(), false}};
  }
};

TEST_CASE("gpu routing plan, permute and combine (dropless and with capacity)", "[gpu]") {
  for (int capacity : {-1, 70, 0})
    for (auto [N, K, E] : {std::tuple{200, 2, 5}, std::tuple{700, 3, 16}}) {
      DispatchCase c;
      c.N = N;
      c.K = K;
      c.E = E;
      c.C = 96;
      c.capacity = capacity;
      INFO("N " << N << " K " << K << " E " << E << " capacity " << capacity << " seed " << c.seed);
      check_case(c);
    }
}

// ---- experts ------------------------------------------------------------------------------------------------------

struct ExpertsCase : CaseBase {
  static constexpr int E = 4, C = 64, F = 96;
  std::vector<int64_t> offsets{0, 30, 30, 75, 101};  // expert 1 gets no rows
  struct Inputs {
    Vec inp, w1, w3, w2, dout, dw1, dw3, dw2;
  };
  Inputs inputs(bool b) const {
    Gen gen(seed, b);
    const size_t R = size_t(offsets[E]), ws = size_t(E) * F * C;
    Inputs in;
    in.inp = gen.t(R * C);
    in.w1 = gen.t(ws, -0.2, 0.2);
    in.w3 = gen.t(ws, -0.2, 0.2);
    in.w2 = gen.t(ws, -0.2, 0.2);
    in.dout = gen.t(R * C);
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
    Buf<T> inp(dev, in.inp), w1(dev, in.w1), w3(dev, in.w3), w2(dev, in.w2), dout(dev, in.dout), out(dev, R * C),
        h13(dev, R * 2 * F), act(dev, R * F), dinp(dev, R * C), dh13(dev, R * 2 * F), dact(dev, R * F);
    Buf<P> dw1(dev, in.dw1), dw3(dev, in.dw3), dw2(dev, in.dw2), dinp_acc(dev, R * C);
    out.poison();
    dinp.poison();
    experts_forward<T>(ops, out, h13, act, inp, w1, w3, w2, offsets.data(), E, C, F);
    experts_backward<T>(ops, dinp, dw1, dw3, dw2, dh13, dact, dinp_acc, dout, inp, h13, act, w1, w3, w2, offsets.data(), E, C, F);
    return {{"out", out.download()},          {"h13", h13.download()},           {"act", act.download()},
            {"dinp", dinp.download()},        {"dw1", dw1.download(), false},    {"dw3", dw3.download(), false},
            {"dw2", dw2.download(), false}};
  }

  // The plain bf16 version rounds every stored intermediate as the GPU does (h13, act, dact, dh13, and
  // dinp after each of its two products), with fp32 arithmetic in between.
  Outputs plain_bf16_version() const {
    CpuOps<float> ops;
    const Inputs in = inputs(true);
    const size_t R = size_t(offsets[E]), ws = size_t(F) * C;
    auto f = [](const Vec& v) { return std::vector<float>(v.begin(), v.end()); };
    auto round = [](std::vector<float>& v) {
      for (float& x : v) x = to_float(to_bf16(x));
    };
    std::vector<float> inp = f(in.inp), w1 = f(in.w1), w3 = f(in.w3), w2 = f(in.w2), dout = f(in.dout);
    std::vector<float> dw1 = f(in.dw1), dw3 = f(in.dw3), dw2 = f(in.dw2);
    std::vector<float> h13(R * 2 * F), act(R * F), out(R * C), dact(R * F), dh13(R * 2 * F), dinp(R * C);
    const int ld13 = 2 * F;
    for (int e = 0; e < E; ++e) {
      const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
      if (!n) continue;
      ops.gemm(h13.data() + r0 * ld13, inp.data() + r0 * C, w1.data() + e * ws, {Trans::No, Trans::Yes, n, F, C, C, C, ld13}, 1, 0);
      ops.gemm(h13.data() + r0 * ld13 + F, inp.data() + r0 * C, w3.data() + e * ws, {Trans::No, Trans::Yes, n, F, C, C, C, ld13}, 1, 0);
    }
    round(h13);
    ops.swiglu_forward(act.data(), h13.data(), int(R), F);
    round(act);
    for (int e = 0; e < E; ++e) {
      const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
      if (!n) continue;
      ops.gemm(out.data() + r0 * C, act.data() + r0 * F, w2.data() + e * ws, {Trans::No, Trans::Yes, n, C, F, F, F, C}, 1, 0);
      ops.gemm(dact.data() + r0 * F, dout.data() + r0 * C, w2.data() + e * ws, {Trans::No, Trans::No, n, F, C, C, F, F}, 1, 0);
      ops.gemm_acc(dw2.data() + e * ws, dout.data() + r0 * C, act.data() + r0 * F, {Trans::Yes, Trans::No, C, F, n, C, F, F}, 1, 1);
    }
    round(out);
    round(dact);
    ops.swiglu_backward(dh13.data(), dact.data(), h13.data(), int(R), F);
    round(dh13);
    for (int e = 0; e < E; ++e) {
      const int r0 = int(offsets[e]), n = int(offsets[e + 1] - offsets[e]);
      if (!n) continue;
      float* dx = dinp.data() + r0 * C;
      const float* dh = dh13.data() + r0 * ld13;
      ops.gemm(dx, dh, w1.data() + e * ws, {Trans::No, Trans::No, n, C, F, ld13, C, C}, 1, 0);
      for (int i = 0; i < n * C; ++i) dx[i] = to_float(to_bf16(dx[i]));
      ops.gemm(dx, dh + F, w3.data() + e * ws, {Trans::No, Trans::No, n, C, F, ld13, C, C}, 1, 1);
      ops.gemm_acc(dw1.data() + e * ws, dh, inp.data() + r0 * C, {Trans::Yes, Trans::No, F, C, n, ld13, C, C}, 1, 1);
      ops.gemm_acc(dw3.data() + e * ws, dh + F, inp.data() + r0 * C, {Trans::Yes, Trans::No, F, C, n, ld13, C, C}, 1, 1);
    }
    round(dinp);
    auto d = [](const std::vector<float>& v) { return Vec(v.begin(), v.end()); };
    return {{"out", d(out)},   {"h13", d(h13)},        {"act", d(act)},        {"dinp", d(dinp)},
            {"dw1", d(dw1), false}, {"dw3", d(dw3), false}, {"dw2", d(dw2), false}};
  }
};

TEST_CASE("gpu experts forward and backward (grouped SwiGLU, an empty expert)", "[gpu]") {
  ExpertsCase c;
  INFO("seed " << c.seed);
  CpuOps<double> cpu64;
  auto& g = gpu();
  check_fp32(c(g.fp32, false), c(cpu64, false));
  check_bf16(c(g.bf16_ops, true), c.plain_bf16_version(), c(cpu64, true));
}

// ---- elementwise, reductions, AdamW ---------------------------------------------------------------------------

struct ElementwiseCase : CaseBase {
  template <typename T>
  Outputs operator()(Ops<T>& ops, bool b) const {
    using P = acc_t<T>;
    Gen gen(seed, b);
    Device& dev = ops.device();
    const size_t n = 100003;
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
    return {{"add_inplace", x.download()},          {"to_compute", xc.download()},
            {"sum_squares", Vec{ss}, false},        {"sum", Vec{s}, false},
            {"adamw param", param.download(), false}, {"adamw m", m.download(), false},
            {"adamw v", v.download(), false}};
  }
};

TEST_CASE("gpu elementwise ops, reductions and AdamW", "[gpu]") {
  ElementwiseCase c;
  INFO("seed " << c.seed);
  check_case(c);
}

// ---- determinism ----------------------------------------------------------------------------------------------------

TEST_CASE("gpu reductions and scatters give the same bits on every run", "[gpu]") {
  auto& g = gpu();
  auto run = [&](uint64_t seed) {
    AttentionCase a;
    a.seed = seed;
    a.B = 2;
    a.S = 300;
    a.H = 2;
    a.Dh = 64;
    RmsnormCase r;
    r.seed = seed;
    r.N = 3000;
    r.C = 256;
    EmbeddingCase e;
    e.seed = seed;
    RouterCase rt;
    rt.seed = seed;
    rt.N = 999;
    rt.E = 32;
    rt.K = 4;
    rt.norm = GateNorm::Renormalize;
    std::vector<Outputs> all{a(g.bf16_ops, true), r(g.bf16_ops, true), e(g.bf16_ops, true), rt(g.bf16_ops, true), a(g.fp32, false)};
    return all;
  };
  const uint64_t seed = fresh_seed();
  const auto first = run(seed), second = run(seed);
  for (size_t i = 0; i < first.size(); ++i)
    for (size_t j = 0; j < first[i].size(); ++j) {
      INFO(first[i][j].name);
      CHECK(first[i][j].values == second[i][j].values);
    }
}

}  // namespace
