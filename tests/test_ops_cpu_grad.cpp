// Why: every hand-written backward of the CPU backend must be the exact derivative of its forward. Each
// test takes a scalar loss = sum(output * random weights) (plus the op's own extra terms), runs the
// backward in double, and compares EVERY input element's gradient with a central difference of the
// forward (the rule of tests/grad_check.h). The CUDA backend is then tested against these kernels, so they are the ground truth.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "engine/model/experts.h"
#include "tests/grad_check.h"

namespace {

using Vec = std::vector<double>;

Vec random_vec(std::mt19937_64& rng, size_t n, double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> u(lo, hi);
  Vec v(n);
  for (double& x : v) x = u(rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

Vec minus(const Vec& a, const Vec& b) {
  Vec d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

using mt::test::check_gradient;

}  // namespace

TEST_CASE("cpu embedding_backward is the gradient of embedding_forward and accumulates", "[ops]") {
  mt::CpuOps<double> ops;
  std::mt19937_64 rng(1);
  const int N = 9, C = 5, V = 7;
  const std::vector<int32_t> tokens = {3, 0, 3, 6, 1, 3, 0, 5, 6};  // repeats; token 2 and 4 unused
  Vec wte = random_vec(rng, size_t(V) * C), R = random_vec(rng, size_t(N) * C);
  const Vec before = random_vec(rng, wte.size());
  Vec dwte = before;
  ops.embedding_backward(dwte.data(), R.data(), tokens.data(), N, C, V);
  auto loss = [&] {
    Vec out(size_t(N) * C);
    ops.embedding_forward(out.data(), tokens.data(), wte.data(), N, C);
    return dot(out, R);
  };
  check_gradient("dwte", wte, minus(dwte, before), loss);
}

TEST_CASE("cpu rmsnorm_backward is the gradient of rmsnorm_forward, and dinp and dweight accumulate", "[ops]") {
  mt::CpuOps<double> ops;
  std::mt19937_64 rng(2);
  const int N = 5, C = 7;
  const float eps = 1e-5f;
  Vec inp = random_vec(rng, size_t(N) * C), w = random_vec(rng, C, 0.5, 1.5), R = random_vec(rng, size_t(N) * C);
  Vec out(inp.size()), rstd(N);
  ops.rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), N, C, eps);
  const Vec dinp0 = random_vec(rng, inp.size()), dw0 = random_vec(rng, C);
  Vec dinp = dinp0, dw = dw0;
  ops.rmsnorm_backward(dinp.data(), dw.data(), R.data(), inp.data(), w.data(), rstd.data(), N, C);
  auto loss = [&] {
    Vec o(inp.size()), r(N);
    ops.rmsnorm_forward(o.data(), r.data(), inp.data(), w.data(), N, C, eps);
    return dot(o, R);
  };
  const Vec dx = minus(dinp, dinp0);
  check_gradient("dinp", inp, dx, loss);
  check_gradient("dweight", w, minus(dw, dw0), loss);

  SECTION("dinp may alias dout") {
    Vec inplace = R, dw2(C, 0.0);
    ops.rmsnorm_backward(inplace.data(), dw2.data(), inplace.data(), inp.data(), w.data(), rstd.data(), N, C);
    for (size_t i = 0; i < inplace.size(); ++i) CHECK(inplace[i] == Approx(R[i] + dx[i]).epsilon(1e-12));
    for (int c = 0; c < C; ++c) CHECK(dw2[c] == Approx(dw[c] - dw0[c]).epsilon(1e-12));
  }
}

TEST_CASE("cpu gemm and gemm_acc give a linear layer's input and weight gradients", "[ops]") {
  // y = x W^T (gemm No/Yes), dx = dy W (gemm No/No), dW += dy^T x (gemm_acc Yes/No, beta 1).
  mt::CpuOps<double> ops;
  std::mt19937_64 rng(3);
  const int M = 6, Kin = 5, Nout = 4;
  Vec x = random_vec(rng, size_t(M) * Kin), W = random_vec(rng, size_t(Nout) * Kin), R = random_vec(rng, size_t(M) * Nout);
  auto loss = [&] {
    Vec y(size_t(M) * Nout);
    ops.gemm(y.data(), x.data(), W.data(), mt::GemmShape::nt(M, Nout, Kin), 1.f, 0.f);
    return dot(y, R);
  };
  Vec dx(x.size());
  ops.gemm(dx.data(), R.data(), W.data(), mt::GemmShape::nn(M, Kin, Nout), 1.f, 0.f);
  const Vec dW0 = random_vec(rng, W.size());
  Vec dW = dW0;
  ops.gemm_acc(dW.data(), R.data(), x.data(), mt::GemmShape::tn(Nout, Kin, M), 1.f, 1.f);
  check_gradient("dx", x, dx, loss);
  check_gradient("dW", W, minus(dW, dW0), loss);
}

TEST_CASE("cpu attention_backward is the gradient of attention_forward", "[ops]") {
  mt::CpuOps<double> ops;
  struct Shape {
    int B, T, H, Dh;
  };
  // Non-power-of-two head counts (distinct slope sets), one token, and T > 64 (several query blocks).
  const std::vector<Shape> shapes = {{1, 1, 1, 3}, {2, 7, 3, 4}, {1, 13, 6, 8}, {1, 70, 2, 3}};
  std::mt19937_64 rng(4);
  for (const Shape& s : shapes) {
    INFO("B " << s.B << " T " << s.T << " H " << s.H << " Dh " << s.Dh);
    const size_t nqkv = size_t(s.B) * s.T * 3 * s.H * s.Dh, nout = size_t(s.B) * s.T * s.H * s.Dh;
    std::vector<float> slopes(s.H);
    mt::alibi_slopes(slopes.data(), s.H);
    Vec qkv = random_vec(rng, nqkv, -1.5, 1.5), R = random_vec(rng, nout);
    Vec out(nout), lse(size_t(s.B) * s.H * s.T);
    ops.attention_forward(out.data(), lse.data(), qkv.data(), slopes.data(), {s.B, s.T, s.H, s.Dh});
    Vec dqkv(nqkv, 1e9);  // written, whatever it held
    ops.attention_backward(dqkv.data(), R.data(), qkv.data(), out.data(), lse.data(), slopes.data(),
                           {s.B, s.T, s.H, s.Dh});
    auto loss = [&] {
      Vec o(nout), l(lse.size());
      ops.attention_forward(o.data(), l.data(), qkv.data(), slopes.data(), {s.B, s.T, s.H, s.Dh});
      return dot(o, R);
    };
    check_gradient("dqkv", qkv, dqkv, loss);
  }
}

TEST_CASE("cpu swiglu_backward is the gradient of swiglu_forward", "[ops]") {
  mt::CpuOps<double> ops;
  std::mt19937_64 rng(5);
  const int N = 4, F = 6;
  Vec h13 = random_vec(rng, size_t(N) * 2 * F, -4, 4), R = random_vec(rng, size_t(N) * F);
  Vec dh13(h13.size(), 1e9);
  ops.swiglu_backward(dh13.data(), R.data(), h13.data(), N, F);
  auto loss = [&] {
    Vec out(size_t(N) * F);
    ops.swiglu_forward(out.data(), h13.data(), N, F);
    return dot(out, R);
  };
  check_gradient("dh13", h13, dh13, loss);
}

TEST_CASE("cpu router_backward is the gradient of gates, probabilities and the z-loss", "[ops]") {
  // loss = sum(gate * Rg) + sum_t,e probs[t, e] pg[e] + z_scale sum_t lse_t^2, with the balance
  // gradient pg[e] = balance_scale (counts[e] / N) / N.
  mt::CpuOps<double> ops;
  const int N = 5, E = 6;
  const float z_scale = 0.3f;
  for (int K : {1, 3}) {
    for (mt::GateNorm norm : {mt::GateNorm::None, mt::GateNorm::Renormalize}) {
      INFO("K " << K << (norm == mt::GateNorm::Renormalize ? " renormalised" : " not renormalised"));
      std::mt19937_64 rng(6 + K);
      Vec logits = random_vec(rng, size_t(N) * E, -2, 2), Rg = random_vec(rng, size_t(N) * K);
      const std::vector<int64_t> counts = {3, 0, 7, 1, 2, 5};
      const double balance_scale = 0.7;
      std::vector<int32_t> idx(size_t(N) * K);
      Vec gate(idx.size()), probs(logits.size()), lse(N);
      ops.router_forward(idx.data(), gate.data(), probs.data(), lse.data(), logits.data(), nullptr, {N, E, K}, norm);
      Vec dlogits(logits.size(), 1e9);
      ops.router_backward(dlogits.data(), Rg.data(), counts.data(), balance_scale, probs.data(), lse.data(),
                          idx.data(), gate.data(), z_scale, {N, E, K}, norm);
      auto loss = [&] {
        std::vector<int32_t> i2(idx.size());
        Vec g2(gate.size()), p2(probs.size()), l2(N);
        ops.router_forward(i2.data(), g2.data(), p2.data(), l2.data(), logits.data(), nullptr, {N, E, K}, norm);
        REQUIRE(i2 == idx);  // the step never crosses a tie of the top-K
        double s = dot(g2, Rg) + z_scale * dot(l2, l2);
        for (int t = 0; t < N; ++t)
          for (int e = 0; e < E; ++e) s += p2[size_t(t) * E + e] * balance_scale * counts[e] / N / N;
        return s;
      };
      check_gradient("dlogits", logits, dlogits, loss);
    }
  }
}

TEST_CASE("cpu permute / combine backwards are their forwards' gradients, with dropped choices", "[ops]") {
  mt::CpuOps<double> ops;
  std::mt19937_64 rng(8);
  const int N = 6, K = 2, E = 3, Dm = 4, capacity = 3;
  // Expert 0 (chosen by tokens 0, 1, 2, 4, 5) keeps tokens 0, 1, 2; expert 1 (tokens 0, 2, 3, 5) keeps
  // 0, 2, 3; expert 2 keeps all three of its tokens. Token 5 loses both of its choices.
  const std::vector<int32_t> idx = {0, 1, 0, 2, 0, 1, 2, 1, 0, 2, 0, 1};
  std::vector<int32_t> slot(size_t(N) * K), row_src(size_t(N) * K);
  std::vector<int64_t> offsets(E + 1);
  int64_t bad = 0;
  ops.moe_route_plan(slot.data(), row_src.data(), offsets.data(), &bad, idx.data(), {N, E, K}, capacity);
  const int R = int(offsets[E]);
  REQUIRE(R == 9);

  SECTION("permute") {
    Vec inp = random_vec(rng, size_t(N) * Dm), W = random_vec(rng, size_t(R) * Dm);
    Vec dinp(inp.size(), 1e9);
    ops.moe_permute_backward(dinp.data(), W.data(), slot.data(), {N, K, Dm});
    auto loss = [&] {
      Vec out(size_t(R) * Dm);
      ops.moe_permute(out.data(), inp.data(), row_src.data(), {R, Dm});
      return dot(out, W);
    };
    check_gradient("dinp", inp, dinp, loss);
  }
  SECTION("combine") {
    Vec expert_out = random_vec(rng, size_t(R) * Dm), gate = random_vec(rng, size_t(N) * K, 0, 1),
        W = random_vec(rng, size_t(N) * Dm);
    Vec dexp(expert_out.size(), 1e9), dgate(gate.size(), 1e9);
    ops.moe_combine_backward(dexp.data(), dgate.data(), W.data(), expert_out.data(), gate.data(), slot.data(),
                             {N, K, Dm});
    auto loss = [&] {
      Vec out(size_t(N) * Dm);
      ops.moe_combine(out.data(), expert_out.data(), gate.data(), slot.data(), {N, K, Dm});
      return dot(out, W);
    };
    check_gradient("dexpert_out", expert_out, dexp, loss);
    check_gradient("dgate", gate, dgate, loss);
    for (size_t i = 0; i < slot.size(); ++i)
      if (slot[i] < 0) CHECK(dgate[i] == 0);
  }
}

TEST_CASE("cpu experts_backward is the gradient of experts_forward, with an expert of zero rows", "[ops]") {
  mt::CpuOps<double> ops;
  std::mt19937_64 rng(9);
  const int E = 4, C = 5, F = 3;
  const std::vector<int64_t> offsets = {0, 3, 3, 5, 9};  // expert 1 has no rows
  const int R = int(offsets[E]);
  Vec inp = random_vec(rng, size_t(R) * C), w1 = random_vec(rng, size_t(E) * F * C),
      w3 = random_vec(rng, size_t(E) * F * C), w2 = random_vec(rng, size_t(E) * C * F),
      W = random_vec(rng, size_t(R) * C);
  Vec out(size_t(R) * C), h13(size_t(R) * 2 * F), act(size_t(R) * F);
  mt::experts_forward<double>(ops, out.data(), {h13.data(), act.data()}, inp.data(), {w1.data(), w3.data(), w2.data()},
                          offsets.data(), {E, C, F, R});
  const Vec dw10 = random_vec(rng, w1.size()), dw30 = random_vec(rng, w3.size()), dw20 = random_vec(rng, w2.size());
  Vec dw1 = dw10, dw3 = dw30, dw2 = dw20, dinp(inp.size(), 1e9), dh13(h13.size()), dact(act.size());
  mt::experts_backward<double>(ops, dinp.data(), {dw1.data(), dw3.data(), dw2.data()}, {dh13.data(), dact.data()},
                           W.data(), inp.data(), {h13.data(), act.data()}, {w1.data(), w3.data(), w2.data()},
                           offsets.data(), {E, C, F, R});
  auto loss = [&] {
    Vec o(out.size()), h(h13.size()), a(act.size());
    mt::experts_forward<double>(ops, o.data(), {h.data(), a.data()}, inp.data(), {w1.data(), w3.data(), w2.data()},
                            offsets.data(), {E, C, F, R});
    return dot(o, W);
  };
  check_gradient("dinp", inp, dinp, loss);
  check_gradient("dw1", w1, minus(dw1, dw10), loss);
  check_gradient("dw3", w3, minus(dw3, dw30), loss);
  check_gradient("dw2", w2, minus(dw2, dw20), loss);
  // The empty expert's gradients are untouched.
  for (int i = 0; i < F * C; ++i) {
    CHECK(dw1[size_t(F) * C + i] == dw10[size_t(F) * C + i]);
    CHECK(dw2[size_t(F) * C + i] == dw20[size_t(F) * C + i]);
  }
}

TEST_CASE("cpu cross_entropy's dlogits is the gradient of dloss * sum of the losses", "[ops]") {
  mt::CpuOps<double> ops;
  std::mt19937_64 rng(10);
  const int N = 4, V = 7;
  const float dloss = 0.37f;
  const std::vector<int32_t> targets = {3, 0, 6, 3};
  Vec logits = random_vec(rng, size_t(N) * V, -3, 3);
  Vec losses(N), dlogits(logits.size(), 1e9);
  ops.cross_entropy(losses.data(), dlogits.data(), logits.data(), targets.data(), dloss, N, V);
  auto loss = [&] {
    Vec l(N);
    ops.cross_entropy(l.data(), nullptr, logits.data(), targets.data(), dloss, N, V);
    double s = 0;
    for (double x : l) s += x;
    return double(dloss) * s;
  };
  check_gradient("dlogits", logits, dlogits, loss);

  SECTION("dlogits may alias logits") {
    Vec inplace = logits, l2(N);
    ops.cross_entropy(l2.data(), inplace.data(), inplace.data(), targets.data(), dloss, N, V);
    CHECK(l2 == losses);
    CHECK(inplace == dlogits);
  }
}
