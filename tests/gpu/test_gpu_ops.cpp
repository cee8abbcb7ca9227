// Why: every CUDA op must compute the same function as its CPU twin (engine/cpu). The op cases of
// tests/op_cases.h run here through the one driver (tests/op_harness.h) on the CPU backend and on
// CudaOps fp32 and bf16, each against the float64 CPU result (fp32 within the case's tolerance; bf16 at
// most twice the error of a plain bf16 version; integers identical). Below them, the GPU's own
// properties: rmsnorm_backward may write over its input, and the reductions and scatters that avoid
// float atomics give the same bits on every run.
#include <catch2/catch.hpp>

#include <vector>

#include "tests/gpu/gpu_test_util.h"
#include "tests/op_harness.h"

using namespace mt;
using namespace mt::gputest;
using namespace mt::optest;

namespace {

TEST_CASE("gpu ops: every op case on the CPU and CUDA backends (fp32 and bf16) against float64", "[gpu]") {
  auto& g = gpu();
  check_op_cases({cpu_backend(), {"cuda fp32", Backend::Kind::Fp32, &g.fp32, nullptr},
                  {"cuda bf16", Backend::Kind::Bf16, nullptr, &g.bf16_ops}});
}

TEST_CASE("gpu rmsnorm backward may write dinp over dout", "[gpu]") {
  auto& g = gpu();
  Gen gen(fresh_seed(), false);
  const int N = 77, Dm = 300;
  const size_t nd = size_t(N) * Dm;
  const Vec x = gen.t(nd), w = gen.t(Dm, 0.5, 1.5), dy = gen.t(nd);
  Buf<float> inp(g.device, x), wt(g.device, w), out(g.device, nd), rstd(g.device, N);
  g.fp32.rmsnorm_forward(out, rstd, inp, wt, N, Dm, 1e-5f);
  // Separate: dinp starts at zero. Aliased: dinp is dout, so dinp = dout + dx.
  Buf<float> dout(g.device, dy), dinp(g.device, Vec(nd, 0.0)), dw1(g.device, Vec(Dm, 0.0)), dw2(g.device, Vec(Dm, 0.0));
  g.fp32.rmsnorm_backward(dinp, dw1, dout, inp, wt, rstd, N, Dm);
  g.fp32.rmsnorm_backward(dout, dw2, dout, inp, wt, rstd, N, Dm);
  Vec sep = dinp.download(), ali = dout.download();
  for (size_t i = 0; i < nd; ++i) sep[i] += dy[i];
  CHECK(rel_l2(ali, sep) <= 1e-6);
  CHECK(dw1.download() == dw2.download());
}

TEST_CASE("gpu reductions and scatters give the same bits on every run", "[gpu]") {
  auto& g = gpu();
  auto run = [&](uint64_t seed) {
    AttentionCase a;
    a.seed = seed;
    a.d = {2, 300, 2, 64};
    RmsnormCase r;
    r.seed = seed;
    r.N = 3000;
    r.Dm = 256;
    EmbeddingCase e;
    e.seed = seed;
    RouterCase rt;
    rt.seed = seed;
    rt.d = {999, 32, 4};
    rt.norm = GateNorm::Renormalize;
    std::vector<Outputs> all{a(g.bf16_ops, true), r(g.bf16_ops, true), e(g.bf16_ops, true), rt(g.bf16_ops, true),
                             a(g.fp32, false)};
    return all;
  };
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto first = run(seed), second = run(seed);
  for (size_t i = 0; i < first.size(); ++i)
    for (size_t j = 0; j < first[i].size(); ++j) {
      INFO(first[i][j].name);
      CHECK(first[i][j].values == second[i][j].values);
    }
}

}  // namespace
