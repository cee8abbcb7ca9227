// Why: the CPU kernels are the reference of the whole project (the CUDA backend and the parallel layouts
// are tested against them). Every op case of tests/op_cases.h runs here on the CPU backend (float must
// agree with double, and give the same bits on every run and, for the kernels written here, at any
// thread count); then the forwards are checked against direct, naive formulas (attention as a full
// softmax row with -inf masking, top-K ties, exactly which choices a capacity drops).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/core/check.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/model/experts.h"
#include "tests/op_harness.h"

namespace {

using Vec = std::vector<double>;
using mt::GateNorm;
using mt::GemmShape;
using mt::Trans;

// Random values that are exactly representable in float, so the float and double runs see the same input.
Vec random_vec(std::mt19937_64& rng, size_t n, double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> u(lo, hi);
  Vec v(n);
  for (double& x : v) x = double(float(u(rng)));
  return v;
}

template <typename T>
std::vector<T> cast(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <typename T>
Vec widen(const std::vector<T>& v) {
  return Vec(v.begin(), v.end());
}

// max |a - b| / max |b|.
double rel_error(const Vec& a, const Vec& b) {
  REQUIRE(a.size() == b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(a[i] - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return den > 0 ? num / den : num;
}

std::vector<float> slopes_for(int H) {
  std::vector<float> s(H);
  mt::alibi_slopes(s.data(), H);
  return s;
}

// Naive attention for one (b, h): the full row of T scores with -inf above the diagonal.
void naive_attention(Vec& out, Vec& lse, const Vec& qkv, const std::vector<float>& slopes, int B, int S, int H,
                     int Dh) {
  const double inf = std::numeric_limits<double>::infinity();
  out.assign(size_t(B) * S * H * Dh, 0);
  lse.assign(size_t(B) * H * S, 0);
  auto at = [&](int b, int t, int part, int h, int d) {
    return qkv[((size_t(b) * S + t) * 3 * H + size_t(part) * H + h) * Dh + d];
  };
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < S; ++i) {
        Vec s(S, -inf);
        for (int j = 0; j <= i; ++j) {
          double qk = 0;
          for (int d = 0; d < Dh; ++d) qk += at(b, i, 0, h, d) * at(b, j, 1, h, d);
          s[j] = qk / std::sqrt(double(Dh)) - double(slopes[h]) * (i - j);
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double z = 0;
        for (int j = 0; j < S; ++j) z += std::exp(s[j] - mx);
        const double l = mx + std::log(z);
        lse[(size_t(b) * H + h) * S + i] = l;
        for (int j = 0; j < S; ++j)
          for (int d = 0; d < Dh; ++d)
            out[((size_t(b) * S + i) * H + h) * Dh + d] += std::exp(s[j] - l) * at(b, j, 2, h, d);
      }
}

}  // namespace

// ---- every op case (tests/op_cases.h) on the CPU backend --------------------------------------------------

TEST_CASE("cpu ops: every op case (float against double; the same bits on every run and on 1 or 2 threads)", "[ops]") {
  mt::optest::check_op_cases({mt::optest::cpu_backend()});
}

// ---- forwards against naive formulas ----------------------------------------------------------------------

TEST_CASE("cpu gemm matches the naive product for every transpose, leading dimension, alpha and beta", "[ops]") {
  mt::CpuOps<double> ops;
  std::mt19937_64 rng(20);
  const int m = 5, n = 7, k = 6, pad = 3;
  for (Trans ta : {Trans::No, Trans::Yes})
    for (Trans tb : {Trans::No, Trans::Yes}) {
      INFO("trans_a " << (ta == Trans::Yes) << " trans_b " << (tb == Trans::Yes));
      const int a_rows = ta == Trans::No ? m : k, a_cols = ta == Trans::No ? k : m;
      const int b_rows = tb == Trans::No ? k : n, b_cols = tb == Trans::No ? n : k;
      const GemmShape s{ta, tb, m, n, k, a_cols + pad, b_cols + pad, n + pad};
      Vec a = random_vec(rng, size_t(a_rows) * s.lda), b = random_vec(rng, size_t(b_rows) * s.ldb),
          c = random_vec(rng, size_t(m) * s.ldc);
      Vec expect = c;
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          double acc = 0;
          for (int p = 0; p < k; ++p) {
            const double av = ta == Trans::No ? a[size_t(i) * s.lda + p] : a[size_t(p) * s.lda + i];
            const double bv = tb == Trans::No ? b[size_t(p) * s.ldb + j] : b[size_t(j) * s.ldb + p];
            acc += av * bv;
          }
          expect[size_t(i) * s.ldc + j] = 0.75 * acc + 0.5 * c[size_t(i) * s.ldc + j];
        }
      ops.gemm(c.data(), a.data(), b.data(), s, 0.75f, 0.5f);
      for (size_t i = 0; i < c.size(); ++i) CHECK(c[i] == Approx(expect[i]).epsilon(1e-13));  // padding kept
    }
  SECTION("k = 0 scales C by beta; beta 0 overwrites even NaN") {
    Vec c = {1, 2, std::nan(""), 4};
    ops.gemm(c.data(), nullptr, nullptr, GemmShape{Trans::No, Trans::No, 2, 2, 0, 1, 2, 2}, 1.f, 0.5f);
    CHECK(c[0] == 0.5);
    CHECK(c[3] == 2);
    ops.gemm(c.data(), nullptr, nullptr, GemmShape{Trans::No, Trans::No, 2, 2, 0, 1, 2, 2}, 1.f, 0.f);
    CHECK(c == Vec{0, 0, 0, 0});
  }
  SECTION("a leading dimension too small is an error") {
    Vec a(12), b(12), c(12);
    CHECK_THROWS_AS(ops.gemm(c.data(), a.data(), b.data(), GemmShape{Trans::No, Trans::No, 3, 3, 4, 3, 3, 3}, 1.f, 0.f),
                    mt::Error);
  }
}

TEST_CASE("cpu attention_forward matches a full softmax row with -inf masking", "[ops]") {
  struct Shape {
    int B, T, H, Dh;
  };
  const std::vector<Shape> shapes = {{1, 1, 1, 4}, {2, 9, 3, 5}, {1, 130, 6, 8}, {2, 64, 4, 16}};
  std::mt19937_64 rng(21);
  for (const Shape& s : shapes) {
    INFO("B " << s.B << " T " << s.T << " H " << s.H << " Dh " << s.Dh);
    const auto slopes = slopes_for(s.H);
    const Vec qkv = random_vec(rng, size_t(s.B) * s.T * 3 * s.H * s.Dh, -2, 2);
    Vec out_ref, lse_ref;
    naive_attention(out_ref, lse_ref, qkv, slopes, s.B, s.T, s.H, s.Dh);
    mt::CpuOps<double> ops64;
    Vec out(out_ref.size()), lse(lse_ref.size());
    ops64.attention_forward(out.data(), lse.data(), qkv.data(), slopes.data(), {s.B, s.T, s.H, s.Dh});
    CHECK(rel_error(out, out_ref) < 1e-13);
    CHECK(rel_error(lse, lse_ref) < 1e-13);
    mt::CpuOps<float> ops32;
    auto q32 = cast<float>(qkv);
    std::vector<float> o32(out.size()), l32(lse.size());
    ops32.attention_forward(o32.data(), l32.data(), q32.data(), slopes.data(), {s.B, s.T, s.H, s.Dh});
    CHECK(rel_error(widen(o32), out_ref) < 1e-5);
    CHECK(rel_error(widen(l32), lse_ref) < 1e-5);
  }
}

TEST_CASE("cpu rmsnorm, swiglu, embedding and cross_entropy forwards match their formulas", "[ops]") {
  mt::CpuOps<double> ops;
  std::mt19937_64 rng(22);
  SECTION("rmsnorm") {
    const int N = 3, C = 70;
    const float eps = 1e-5f;
    const Vec x = random_vec(rng, size_t(N) * C), w = random_vec(rng, C);
    Vec out(x.size()), rstd(N);
    ops.rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, eps);
    for (int t = 0; t < N; ++t) {
      double ms = 0;
      for (int c = 0; c < C; ++c) ms += x[size_t(t) * C + c] * x[size_t(t) * C + c] / C;
      const double r = 1 / std::sqrt(ms + double(eps));
      CHECK(rstd[t] == Approx(r).epsilon(1e-14));
      for (int c = 0; c < C; ++c) CHECK(out[size_t(t) * C + c] == Approx(x[size_t(t) * C + c] * r * w[c]).epsilon(1e-14));
    }
  }
  SECTION("swiglu") {
    const int N = 2, F = 9;
    const Vec h = random_vec(rng, size_t(N) * 2 * F, -6, 6);
    Vec out(size_t(N) * F);
    ops.swiglu_forward(out.data(), h.data(), N, F);
    for (int t = 0; t < N; ++t)
      for (int f = 0; f < F; ++f) {
        const double a = h[size_t(t) * 2 * F + f], b = h[size_t(t) * 2 * F + F + f];
        CHECK(out[size_t(t) * F + f] == Approx(a / (1 + std::exp(-a)) * b).epsilon(1e-14));
      }
    // float's polynomial exp: large |a| neither overflows nor gives NaN.
    mt::CpuOps<float> ops32;
    const std::vector<float> big = {-200.f, 200.f, 1.f, 1.f};
    std::vector<float> o32(2);
    ops32.swiglu_forward(o32.data(), big.data(), 1, 2);
    CHECK(std::fabs(o32[0]) < 1e-30f);
    CHECK(o32[1] == Approx(200.f));
  }
  SECTION("embedding") {
    const Vec wte = random_vec(rng, 4 * 3);
    const std::vector<int32_t> tokens = {2, 2, 0};
    Vec out(9);
    ops.embedding_forward(out.data(), tokens.data(), wte.data(), 3, 3);
    for (int t = 0; t < 3; ++t)
      for (int c = 0; c < 3; ++c) CHECK(out[size_t(t) * 3 + c] == wte[size_t(tokens[t]) * 3 + c]);
    Vec dwte(12);
    const std::vector<int32_t> bad = {0, 4, 1};
    CHECK_THROWS_AS(ops.embedding_backward(dwte.data(), out.data(), bad.data(), 3, 3, 4), mt::Error);
  }
  SECTION("cross_entropy is stable for large logits in float") {
    mt::CpuOps<float> ops32;
    const int V = 5;
    const std::vector<float> logits = {1000.f, 990.f, -1000.f, 995.f, 0.f};
    const std::vector<int32_t> target = {3};
    float loss = 0;
    std::vector<float> d(V);
    ops32.cross_entropy(&loss, d.data(), logits.data(), target.data(), 2.f, 1, V);
    const double lse = 1000 + std::log(1 + std::exp(-10.0) + std::exp(-5.0));
    // float holds lse ~ 1000 to 6e-5, hence the tolerances.
    CHECK(loss == Approx(lse - 995).epsilon(1e-4));
    CHECK(d[0] == Approx(2 * std::exp(1000 - lse)).epsilon(1e-4));
    CHECK(d[3] == Approx(2 * (std::exp(995 - lse) - 1)).epsilon(1e-4));
    CHECK(d[2] == 0.f);  // e^-2000 underflows to 0
    const std::vector<int32_t> bad = {5};
    CHECK_THROWS_AS(ops32.cross_entropy(&loss, nullptr, logits.data(), bad.data(), 1.f, 1, V), mt::Error);
  }
}

TEST_CASE("cpu router_forward: softmax, top-K descending with ties to the lower index, renormalisation", "[ops]") {
  mt::CpuOps<double> ops;
  const int E = 5;
  const Vec logits = {1, 3, 3, 0, 3,     // a three-way tie for the top
                      2, -1, 0.5, 4, 2};  // a tie below the top
  for (int K : {1, 2, 3})
    for (GateNorm norm : {GateNorm::None, GateNorm::Renormalize}) {
      INFO("K " << K << " renormalise " << (norm == GateNorm::Renormalize));
      std::vector<int32_t> idx(size_t(2) * K);
      Vec gate(idx.size()), probs(logits.size()), lse(2);
      ops.router_forward(idx.data(), gate.data(), probs.data(), lse.data(), logits.data(), nullptr, {2, E, K}, norm);
      const std::vector<int32_t> order0 = {1, 2, 4}, order1 = {3, 0, 4};
      for (int k = 0; k < K; ++k) {
        CHECK(idx[k] == order0[k]);
        CHECK(idx[size_t(K) + k] == order1[k]);
      }
      for (int t = 0; t < 2; ++t) {
        double z = 0;
        for (int e = 0; e < E; ++e) z += std::exp(logits[size_t(t) * E + e]);
        CHECK(lse[t] == Approx(std::log(z)).epsilon(1e-14));
        double chosen = 0;
        for (int k = 0; k < K; ++k) chosen += probs[size_t(t) * E + idx[size_t(t) * K + k]];
        for (int e = 0; e < E; ++e) CHECK(probs[size_t(t) * E + e] == Approx(std::exp(logits[size_t(t) * E + e]) / z).epsilon(1e-14));
        for (int k = 0; k < K; ++k) {
          const double p = probs[size_t(t) * E + idx[size_t(t) * K + k]];
          CHECK(gate[size_t(t) * K + k] == Approx(norm == GateNorm::Renormalize ? p / chosen : p).epsilon(1e-14));
        }
      }
    }
}

TEST_CASE("cpu router_stats counts choices and gives the balance loss and the z-loss", "[ops]") {
  mt::CpuOps<float> ops;
  const std::vector<int32_t> idx = {0, 2, 2, 1, 0, 2};  // N 3, K 2
  const std::vector<float> probs = {0.5f, 0.25f, 0.25f, 0.125f, 0.375f, 0.5f, 0.25f, 0.25f, 0.5f};
  const std::vector<float> lse = {1.f, -2.f, 0.5f};
  std::vector<int64_t> counts(3);
  double losses[3] = {-1, -1, -1};
  int64_t bad = 0;
  ops.router_stats(losses, counts.data(), &bad, idx.data(), probs.data(), lse.data(), {3, 3, 2});
  CHECK(counts == std::vector<int64_t>{2, 1, 3});
  // prob sums 0.875, 0.875, 1.25: E sum_e (counts_e / N) (prob_sum_e / N).
  CHECK(losses[0] == Approx(3 * (2 * 0.875 + 1 * 0.875 + 3 * 1.25) / 9).epsilon(1e-15));
  CHECK(losses[1] == Approx((1 + 4 + 0.25) / 3).epsilon(1e-15));
  // Entropies of the rows: 1.5 ln 2 (twice) and -(1/8 ln 1/8 + 3/8 ln 3/8 + 1/2 ln 1/2).
  const double h1 = 1.5 * std::log(2.0), h2 = -(0.125 * std::log(0.125) + 0.375 * std::log(0.375) + 0.5 * std::log(0.5));
  CHECK(losses[2] == Approx((2 * h1 + h2) / 3).epsilon(1e-7));
  CHECK(bad == 0);
  ops.router_stats(losses, counts.data(), &bad, idx.data(), probs.data(), nullptr, {3, 3, 2});
  CHECK(losses[1] == 0);
  std::vector<int32_t> wrong = idx;
  wrong[4] = 3;
  ops.router_stats(losses, counts.data(), &bad, wrong.data(), probs.data(), nullptr, {3, 3, 2});
  CHECK(bad == 1);
  CHECK(counts == std::vector<int64_t>{1, 1, 3});
}

TEST_CASE("cpu moe_route_plan: stable by expert, capacity keeps each expert's first tokens", "[ops]") {
  mt::CpuOps<float> ops;
  const int N = 5, K = 2, E = 3;
  // token:        0       1       2       3       4
  const std::vector<int32_t> idx = {2, 0, 0, 2, 2, 1, 0, 2, 1, 0};
  std::vector<int32_t> slot(size_t(N) * K), row_src(size_t(N) * K, -7);
  std::vector<int64_t> offsets(E + 1, -7);
  int64_t bad = 0;
  SECTION("dropless") {
    ops.moe_route_plan(slot.data(), row_src.data(), offsets.data(), &bad, idx.data(), {N, E, K}, -1);
    CHECK(offsets == std::vector<int64_t>{0, 4, 6, 10});
    // Expert 0: tokens 0, 1, 3, 4; expert 1: 2, 4; expert 2: 0, 1, 2, 3.
    CHECK(row_src == std::vector<int32_t>{0, 1, 3, 4, 2, 4, 0, 1, 2, 3});
    CHECK(slot == std::vector<int32_t>{6, 0, 1, 7, 8, 4, 2, 9, 5, 3});
    CHECK(bad == 0);
  }
  SECTION("capacity 2 drops the later tokens of experts 0 and 2; the rows past the kept ones are -1") {
    ops.moe_route_plan(slot.data(), row_src.data(), offsets.data(), &bad, idx.data(), {N, E, K}, 2);
    CHECK(offsets == std::vector<int64_t>{0, 2, 4, 6});
    CHECK(row_src == std::vector<int32_t>{0, 1, 2, 4, 0, 1, -1, -1, -1, -1});
    // Dropped: token 2's expert 2, token 3's experts 0 and 2, token 4's expert 0.
    CHECK(slot == std::vector<int32_t>{4, 0, 1, 5, -1, 2, -1, -1, 3, -1});
  }
  SECTION("capacity 0 drops everything") {
    ops.moe_route_plan(slot.data(), row_src.data(), offsets.data(), &bad, idx.data(), {N, E, K}, 0);
    CHECK(offsets == std::vector<int64_t>{0, 0, 0, 0});
    CHECK(std::all_of(slot.begin(), slot.end(), [](int32_t s) { return s == -1; }));
    CHECK(std::all_of(row_src.begin(), row_src.end(), [](int32_t s) { return s == -1; }));
  }
  SECTION("an expert index out of range is flagged and its choice dropped") {
    std::vector<int32_t> wrong = idx;
    wrong[3] = 3;
    ops.moe_route_plan(slot.data(), row_src.data(), offsets.data(), &bad, wrong.data(), {N, E, K}, -1);
    CHECK(bad == 1);
    CHECK(slot[3] == -1);
    CHECK(offsets[E] == 9);
  }
}

TEST_CASE("cpu permute and combine move rows by the plan", "[ops]") {
  mt::CpuOps<double> ops;
  const int N = 3, K = 2, Dm = 2;
  const std::vector<int32_t> slot = {1, -1, 0, 2, 3, -1};
  const std::vector<int32_t> row_src = {1, 0, 1, 2};
  const Vec inp = {1, 2, 3, 4, 5, 6};
  Vec rows(8);
  ops.moe_permute(rows.data(), inp.data(), row_src.data(), {4, Dm});
  CHECK(rows == Vec{3, 4, 1, 2, 3, 4, 5, 6});
  const Vec gate = {0.5, 9, 0.25, 2, 4, 9};
  Vec out(6);
  ops.moe_combine(out.data(), rows.data(), gate.data(), slot.data(), {N, K, Dm});
  CHECK(out == Vec{0.5, 1, 0.25 * 3 + 2 * 3, 0.25 * 4 + 2 * 4, 20, 24});
  Vec dinp(6, 99);
  ops.moe_permute_backward(dinp.data(), rows.data(), slot.data(), {N, K, Dm});
  CHECK(dinp == Vec{1, 2, 3 + 3, 4 + 4, 5, 6});
}

TEST_CASE("cpu experts_forward matches a per-row SwiGLU with each row's expert", "[ops]") {
  mt::CpuOps<double> ops;
  std::mt19937_64 rng(23);
  const int E = 3, C = 6, F = 4;
  const std::vector<int64_t> offsets = {0, 0, 3, 5};
  const int R = 5;
  const Vec inp = random_vec(rng, size_t(R) * C), w1 = random_vec(rng, size_t(E) * F * C),
            w3 = random_vec(rng, size_t(E) * F * C), w2 = random_vec(rng, size_t(E) * C * F);
  Vec out(size_t(R) * C), h13(size_t(R) * 2 * F), act(size_t(R) * F);
  mt::experts_forward<double>(ops, out.data(), {h13.data(), act.data()}, inp.data(), {w1.data(), w3.data(), w2.data()},
                          offsets.data(), {E, C, F, R});
  for (int r = 0; r < R; ++r) {
    const int e = r < 3 ? 1 : 2;
    Vec a(F);
    for (int f = 0; f < F; ++f) {
      double g = 0, u = 0;
      for (int c = 0; c < C; ++c) {
        g += w1[(size_t(e) * F + f) * C + c] * inp[size_t(r) * C + c];
        u += w3[(size_t(e) * F + f) * C + c] * inp[size_t(r) * C + c];
      }
      CHECK(h13[size_t(r) * 2 * F + f] == Approx(g).epsilon(1e-13));
      CHECK(h13[size_t(r) * 2 * F + F + f] == Approx(u).epsilon(1e-13));
      a[f] = g / (1 + std::exp(-g)) * u;
      CHECK(act[size_t(r) * F + f] == Approx(a[f]).epsilon(1e-13));
    }
    for (int c = 0; c < C; ++c) {
      double y = 0;
      for (int f = 0; f < F; ++f) y += w2[(size_t(e) * C + c) * F + f] * a[f];
      CHECK(out[size_t(r) * C + c] == Approx(y).epsilon(1e-12));
    }
  }
}

TEST_CASE("cpu grouped_linear: each group's rows through its weight, stacked halves, nothing past the groups", "[ops]") {
  mt::CpuOps<double> ops;
  std::mt19937_64 rng(31);
  const int G = 3, In = 5, Out = 7, split = 3, rows = 12;
  const std::vector<int64_t> offsets = {0, 4, 4, 9};  // group 1 empty; rows 9..11 past the groups
  const Vec x = random_vec(rng, size_t(rows) * In), dy = random_vec(rng, size_t(rows) * Out),
            top = random_vec(rng, size_t(G) * split * In), bottom = random_vec(rng, size_t(G) * (Out - split) * In),
            dtop0 = random_vec(rng, top.size()), dbottom0 = random_vec(rng, bottom.size());
  const double poison = 1e30;
  Vec y(size_t(rows) * Out, poison), dx(size_t(rows) * In, poison), dtop = dtop0, dbottom = dbottom0;
  const mt::GroupedLinearDims d{G, In, Out, split, rows};
  ops.grouped_linear_forward(y.data(), x.data(), {top.data(), bottom.data()}, offsets.data(), d);
  ops.grouped_linear_backward(dx.data(), {dtop.data(), dbottom.data()}, dy.data(), x.data(),
                              {top.data(), bottom.data()}, offsets.data(), d);
  auto w = [&](int g, int o, int i) {  // W_g[o][i] of the stacked weight
    return o < split ? top[(size_t(g) * split + o) * In + i] : bottom[(size_t(g) * (Out - split) + o - split) * In + i];
  };
  Vec dw_top = dtop0, dw_bottom = dbottom0;
  for (int g = 0; g < G; ++g)
    for (int64_t r = offsets[g]; r < offsets[g + 1]; ++r) {
      for (int o = 0; o < Out; ++o) {
        double s = 0;
        for (int i = 0; i < In; ++i) s += x[size_t(r) * In + i] * w(g, o, i);
        CHECK(y[size_t(r) * Out + o] == Approx(s).epsilon(1e-13));
        for (int i = 0; i < In; ++i) {
          double& dwi = o < split ? dw_top[(size_t(g) * split + o) * In + i]
                                  : dw_bottom[(size_t(g) * (Out - split) + o - split) * In + i];
          dwi += dy[size_t(r) * Out + o] * x[size_t(r) * In + i];
        }
      }
      for (int i = 0; i < In; ++i) {
        double s = 0;
        for (int o = 0; o < Out; ++o) s += dy[size_t(r) * Out + o] * w(g, o, i);
        CHECK(dx[size_t(r) * In + i] == Approx(s).epsilon(1e-13));
      }
    }
  for (size_t i = 0; i < dtop.size(); ++i) CHECK(dtop[i] == Approx(dw_top[i]).epsilon(1e-13));
  for (size_t i = 0; i < dbottom.size(); ++i) CHECK(dbottom[i] == Approx(dw_bottom[i]).epsilon(1e-13));
  for (size_t i = size_t(offsets[G]) * Out; i < y.size(); ++i) CHECK(y[i] == poison);
  for (size_t i = size_t(offsets[G]) * In; i < dx.size(); ++i) CHECK(dx[i] == poison);
  // One tensor (split = Out): the first tensor only.
  Vec y1(size_t(rows) * Out, poison);
  ops.grouped_linear_forward(y1.data(), x.data(), {bottom.data(), nullptr}, offsets.data(),
                             {G, In, Out - split, Out - split, rows});
  CHECK(y1[0] == Approx(x[0] * bottom[0] + x[1] * bottom[1] + x[2] * bottom[2] + x[3] * bottom[3] + x[4] * bottom[4])
                     .epsilon(1e-13));
}

TEST_CASE("cpu reductions and elementwise ops", "[ops]") {
  mt::CpuOps<float> ops;
  const size_t n = 100003;  // several chunks and a ragged tail
  std::vector<float> x(n), y(n);
  double s = 0, ss = 0;
  for (size_t i = 0; i < n; ++i) {
    x[i] = float(int(i % 17) - 8) * 0.125f;
    y[i] = 1.f;
    s += x[i];
    ss += double(x[i]) * x[i];
  }
  CHECK(ops.sum(x.data(), n) == s);  // exact: every partial sum is a multiple of 1/64 well inside 2^53
  CHECK(ops.sum_squares(x.data(), n) == ss);
  ops.add_inplace(y.data(), x.data(), n);
  CHECK(y[5] == 1 + x[5]);
  mt::CpuOps<double> ops64;
  std::vector<double> wide(3), narrow_back(3);
  const std::vector<double> src = {1.0 / 3, -2.5, 1e-40};
  ops64.to_compute(wide.data(), src.data(), 3);
  CHECK(wide == src);
}

TEST_CASE("cpu adamw matches a hand-computed update", "[ops]") {
  mt::CpuOps<double> ops;
  mt::AdamWArgs a;
  a.lr = 0.1f;
  a.beta1 = 0.9f;
  a.beta2 = 0.95f;
  a.eps = 1e-8f;
  a.weight_decay = 0.5f;
  a.grad_scale = 0.5f;
  a.step = 2;
  double p = 2.0, m = 0.1, v = 0.04;
  const double grad = 3.0;
  ops.adamw(&p, &grad, &m, &v, 1, a);
  // By hand, with the float arguments widened as the op does.
  const double b1 = double(0.9f), b2 = double(0.95f), g = 1.5;
  const double m2 = b1 * 0.1 + (1 - b1) * g, v2 = b2 * 0.04 + (1 - b2) * g * g;
  const double mhat = m2 / (1 - b1 * b1), vhat = v2 / (1 - b2 * b2);
  const double p2 = 2.0 - double(0.1f) * (mhat / (std::sqrt(vhat) + double(1e-8f)) + 0.5 * 2.0);
  CHECK(m == Approx(m2).epsilon(1e-15));
  CHECK(v == Approx(v2).epsilon(1e-15));
  CHECK(p == Approx(p2).epsilon(1e-15));
  // m = 0.9 * 0.1 + 0.1 * 1.5 = 0.24; v = 0.95 * 0.04 + 0.05 * 2.25 = 0.1505 (up to the betas' float rounding).
  CHECK(m == Approx(0.24).epsilon(1e-6));
  CHECK(v == Approx(0.1505).epsilon(1e-6));
}

TEST_CASE("alibi slopes follow Press et al. for powers of two and otherwise", "[ops]") {
  std::vector<float> s8(8), s6(6), s12(12);
  mt::alibi_slopes(s8.data(), 8);
  for (int h = 0; h < 8; ++h) CHECK(s8[h] == std::ldexp(1.f, -(h + 1)));  // 1/2, 1/4, ..., 1/256
  mt::alibi_slopes(s6.data(), 6);
  // The 4 slopes of n = 4 (2^-2, 2^-4, 2^-6, 2^-8), then slopes 0 and 2 of n = 8 (2^-1, 2^-3).
  CHECK(s6 == std::vector<float>{0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f});
  mt::alibi_slopes(s12.data(), 12);
  for (int h = 0; h < 8; ++h) CHECK(s12[h] == s8[h]);
  for (int i = 0; i < 4; ++i) CHECK(s12[8 + i] == Approx(std::pow(2.0, -(2 * i + 1) / 2.0)).epsilon(1e-7));
  std::vector<float> s1(1);
  mt::alibi_slopes(s1.data(), 1);
  CHECK(s1[0] == 1.f / 256);
}

TEST_CASE("cpu_device gives zeroed, 64-byte aligned memory and tracks the peak", "[ops]") {
  mt::Device& dev = mt::cpu_device();
  CHECK(dev.kind() == mt::DeviceKind::Cpu);
  // b is larger than the peak so far (the op cases, run earlier in this process, allocate here too),
  // so the peak must rise to hold a and b.
  const size_t nb = dev.peak_bytes() + (1 << 20);
  auto* a = static_cast<unsigned char*>(dev.alloc(1000));
  auto* b = static_cast<unsigned char*>(dev.alloc(nb));
  CHECK(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  CHECK(reinterpret_cast<uintptr_t>(b) % 64 == 0);
  CHECK(std::all_of(a, a + 1000, [](unsigned char c) { return c == 0; }));
  CHECK(std::all_of(b, b + nb, [](unsigned char c) { return c == 0; }));
  CHECK(dev.peak_bytes() >= nb + 1000);
  std::memset(a, 7, 1000);
  dev.copy(b, a, 1000, mt::CopyKind::HostToDevice);
  CHECK(b[999] == 7);
  dev.zero(b, 1000);
  CHECK(b[0] == 0);
  dev.release(a);
  dev.release(b);
  void* empty = dev.alloc(0);
  CHECK(empty != nullptr);
  dev.release(empty);
}
