// Why: the optimizer step is where a silent mistake costs a whole run (a decay on the norms, a missing
// bias correction, clipping by the wrong norm) without any gradient check noticing. Here AdamW with
// decoupled weight decay, the no-decay rule for the RMSNorm weights (decided here by name), the
// global-norm clipping and the bias correction are computed again in long double from their
// definitions and compared with Optimizer<double> over every tensor of a small MoE, for a clipped and
// an unclipped step; and ZeRO-1 (five dp ranks as threads, tests/thread_grid.h) must cover the buffers
// with contiguous shares and end bit-identical to the step without ZeRO.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "comm/grid.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/model/model.h"
#include "engine/model/optim.h"
#include "engine/run/config.h"
#include "tests/thread_grid.h"

using mt::json;
using mt::ParamGroup;

namespace {

constexpr ParamGroup kGroups[] = {ParamGroup::Dense, ParamGroup::Expert};

// A small MoE (layer 0 dense, layer 1 MoE with a shared expert): both buffers, norms, router, experts.
mt::ModelConfig small_moe() {
  json j = {{"model", {{"vocab_size", 13}, {"d_model", 8}, {"n_layers", 2}, {"n_heads", 2}, {"head_dim", 4},
                       {"d_ffn", 12}, {"seq_len", 4},
                       {"moe", {{"layout", "1dense"}, {"n_experts", 4}, {"top_k", 2}, {"d_expert", 6}, {"d_shared", 6}}}}},
            {"train", {{"tokens", 1000}}}};
  return mt::parse_run(j, "test", ".").model;
}

mt::OptimConfig adamw_config() {
  mt::OptimConfig c;
  c.weight_decay = 0.1;
  c.grad_clip = 1.0;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.eps = 1e-8;
  return c;
}

// small_moe() and its optimizer (adamw_config()) on `grid`, the weights initialised from `seed`.
struct ModelAndOptimizer {
  mt::CpuOps<double> ops;
  mt::Model<double> model;
  mt::Optimizer<double> opt;
  ModelAndOptimizer(const mt::ProcessGrid& grid, uint64_t seed, mt::ZeroStage zero)
      : model(small_moe(), 1, grid, ops), opt(model, adamw_config(), grid, ops, zero) {
    model.init_params(seed);
  }
};

// The RMSNorm weights are the tensors that do not decay (README "What the engine computes").
bool is_norm(const std::string& name) {
  const std::string suffix = "norm.weight";
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Gradients drawn with standard deviation `scale` into both buffers.
void draw_grads(mt::Model<double>& model, uint64_t seed, double scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  for (ParamGroup g : kGroups)
    for (size_t i = 0; i < model.numel(g); ++i) model.grads(g)[i] = normal(rng);
}

// AdamW as defined (Loshchilov & Hutter; PyTorch's AdamW): g' = g * clip / max(norm, clip);
// m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2; p = p - lr wd p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
// The step's scalars (lr, betas, eps, decay, clip factor) reach the kernel as float (AdamWArgs): so here.
struct Reference {
  std::vector<long double> p, m, v;
  std::vector<bool> decays;

  static long double f(double x) { return (long double)float(x); }

  void step(const double* grad, int t, double lr, long double clip_scale, const mt::OptimConfig& c) {
    const long double b1 = f(c.beta1), b2 = f(c.beta2), eps = f(c.eps), wd = f(c.weight_decay), rate = f(lr),
                      clip = f(double(clip_scale));
    for (size_t i = 0; i < p.size(); ++i) {
      const long double g = grad[i] * clip;
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const long double mhat = m[i] / (1 - std::pow(b1, t));
      const long double vhat = v[i] / (1 - std::pow(b2, t));
      const long double decay = decays[i] ? rate * wd * p[i] : 0;
      p[i] = p[i] - decay - rate * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

Reference reference_of(mt::Model<double>& model, ParamGroup g) {
  Reference r;
  const size_t n = model.numel(g);
  r.p.assign(model.params(g), model.params(g) + n);
  r.m.assign(n, 0);
  r.v.assign(n, 0);
  r.decays.assign(n, true);
  const mt::ParamTable& table = g == ParamGroup::Dense ? model.layout().dense : model.layout().expert;
  for (const mt::TensorInfo& t : table.tensors)
    if (is_norm(t.name)) std::fill(r.decays.begin() + std::ptrdiff_t(t.offset), r.decays.begin() + std::ptrdiff_t(t.offset + t.numel), false);
  return r;
}

long double norm_of(mt::Model<double>& model) {
  long double s = 0;
  for (ParamGroup g : kGroups)
    for (size_t i = 0; i < model.numel(g); ++i) s += (long double)model.grads(g)[i] * model.grads(g)[i];
  return std::sqrt(s);
}

// Largest |a - b| / (|b| + 1e-30) over a buffer.
double max_rel(const double* a, const std::vector<long double>& b) {
  double worst = 0;
  for (size_t i = 0; i < b.size(); ++i)
    worst = std::max(worst, double(std::fabs(a[i] - b[i]) / (std::fabs(b[i]) + 1e-30L)));
  return worst;
}

}  // namespace

TEST_CASE("AdamW: decoupled decay except on norm weights, bias correction and global-norm clipping, as defined",
          "[optim]") {
  const mt::ModelConfig cfg = small_moe();
  const mt::OptimConfig oc = adamw_config();
  auto grid = mt::make_grid(1, 1, mt::cpu_device());
  ModelAndOptimizer mo(*grid, 5, mt::ZeroStage::None);
  mt::Model<double>& model = mo.model;
  mt::Optimizer<double>& opt = mo.opt;
  Reference ref[2] = {reference_of(model, ParamGroup::Dense), reference_of(model, ParamGroup::Expert)};
  REQUIRE(model.numel(ParamGroup::Expert) > 0);
  int norms = 0;
  for (const mt::TensorInfo& t : model.layout().dense.tensors) norms += is_norm(t.name);
  REQUIRE(norms == 2 * cfg.n_layers + 1);

  // Step 1: gradients far above the clip (each element ~0.5, thousands of them); step 2: below it.
  const double lrs[2] = {1e-2, 3e-3};
  const double scales[2] = {0.5, 1e-3};
  for (int t = 1; t <= 2; ++t) {
    INFO("step " << t);
    draw_grads(model, 100 + uint64_t(t), scales[t - 1]);
    const long double norm = norm_of(model);
    const double got_norm = opt.grad_norm();
    CHECK(std::fabs(got_norm - double(norm)) <= 1e-13 * double(norm));
    const long double clip = norm > oc.grad_clip ? oc.grad_clip / norm : 1.0L;
    CHECK((t == 1 ? clip < 0.1L : clip == 1.0L));  // both branches of the clip are taken
    for (ParamGroup g : kGroups) ref[int(g)].step(model.grads(g), t, lrs[t - 1], clip, oc);
    std::vector<double> before(model.params(ParamGroup::Dense), model.params(ParamGroup::Dense) + model.numel(ParamGroup::Dense));
    opt.update(t, lrs[t - 1], got_norm);
    for (ParamGroup g : kGroups) {
      INFO((g == ParamGroup::Dense ? "dense" : "expert"));
      CHECK(max_rel(model.params(g), ref[int(g)].p) < 1e-12);
      CHECK(max_rel(opt.exp_avg(g), ref[int(g)].m) < 1e-12);
      CHECK(max_rel(opt.exp_avg_sq(g), ref[int(g)].v) < 1e-12);
    }
    if (t == 1) {
      // With the bias correction the first step moves every weight by lr g' / |g'| = lr sign(g) (m^ = g',
      // v^ = g'^2), plus lr wd p where it decays: a fact independent of the formula above (without the
      // correction the move would be lr (1 - b1) / sqrt(1 - b2) = 0.45 lr). Where |g'| is near eps it is less.
      const double* g = model.grads(ParamGroup::Dense);
      const double* p = model.params(ParamGroup::Dense);
      const std::vector<bool>& decays = ref[0].decays;
      size_t checked = 0;
      for (size_t i = 0; i < before.size(); ++i) {
        if (std::fabs(g[i] * double(clip)) < 1e-4) continue;
        const double expect = -lrs[0] * ((g[i] > 0 ? 1 : -1) + (decays[i] ? oc.weight_decay * before[i] : 0.0));
        REQUIRE(std::fabs((p[i] - before[i]) - expect) < 1e-3 * lrs[0]);
        ++checked;
      }
      CHECK(checked > before.size() * 9 / 10);
    }
  }
}

TEST_CASE("ZeRO-1: five dp ranks update contiguous shares and end bit-identical to the step without ZeRO",
          "[optim]") {
  // The step without ZeRO, on one rank.
  auto single = mt::make_grid(1, 1, mt::cpu_device());
  ModelAndOptimizer one(*single, 7, mt::ZeroStage::None);
  mt::Model<double>& plain = one.model;
  mt::Optimizer<double>& plain_opt = one.opt;
  for (int t = 1; t <= 2; ++t) {
    draw_grads(plain, 200 + uint64_t(t), 0.05);
    plain_opt.update(t, 1e-2, plain_opt.grad_norm());
  }

  // Five ranks: neither buffer (1224 and 576 elements) splits evenly, so the last share is shorter.
  constexpr int kRanks = 5;
  REQUIRE(plain.numel(ParamGroup::Dense) % kRanks != 0);
  REQUIRE(plain.numel(ParamGroup::Expert) % kRanks != 0);
  mt::test::ThreadWorld world = mt::test::thread_grids(1, 1, kRanks);
  std::vector<size_t> begin[2], end[2];
  for (auto& v : begin) v.resize(kRanks);
  for (auto& v : end) v.resize(kRanks);
  std::vector<std::vector<double>> params(kRanks), m(kRanks);
  world.run([&](int r) {
    ModelAndOptimizer mine(*world.grids[size_t(r)], 7, mt::ZeroStage::Stage1);
    mt::Model<double>& model = mine.model;
    mt::Optimizer<double>& opt = mine.opt;
    for (ParamGroup g : kGroups) {
      begin[int(g)][size_t(r)] = opt.share_begin(g);
      end[int(g)][size_t(r)] = opt.share_end(g);
    }
    for (int t = 1; t <= 2; ++t) {
      draw_grads(model, 200 + uint64_t(t), 0.05);  // the reduced gradients: the same on every dp rank
      opt.update(t, 1e-2, opt.grad_norm());
    }
    for (ParamGroup g : kGroups) {
      params[size_t(r)].insert(params[size_t(r)].end(), model.params(g), model.params(g) + model.numel(g));
      const size_t b = opt.share_begin(g), e = opt.share_end(g);
      m[size_t(r)].insert(m[size_t(r)].end(), opt.exp_avg(g), opt.exp_avg(g) + (e - b));
    }
  });

  std::vector<double> want_params, want_m;
  for (ParamGroup g : kGroups) {
    const size_t n = plain.numel(g);
    want_params.insert(want_params.end(), plain.params(g), plain.params(g) + n);
    // Shares: contiguous, in rank order, covering [0, n), each at most ceil(n / ranks).
    INFO((g == ParamGroup::Dense ? "dense" : "expert") << " buffer of " << n);
    CHECK(begin[int(g)][0] == 0);
    for (int r = 0; r < kRanks; ++r) {
      CHECK(end[int(g)][size_t(r)] >= begin[int(g)][size_t(r)]);
      CHECK(end[int(g)][size_t(r)] - begin[int(g)][size_t(r)] <= (n + kRanks - 1) / kRanks);
      if (r > 0) CHECK(begin[int(g)][size_t(r)] == end[int(g)][size_t(r) - 1]);
    }
    CHECK(end[int(g)][kRanks - 1] == n);
  }
  for (int r = 0; r < kRanks; ++r) {
    INFO("rank " << r);
    CHECK(params[size_t(r)] == want_params);  // every rank holds every share after the broadcasts
    // This rank's moments are its slice of the moments without ZeRO.
    std::vector<double> slice;
    for (ParamGroup g : kGroups) {
      const double* all = plain_opt.exp_avg(g);
      slice.insert(slice.end(), all + begin[int(g)][size_t(r)], all + end[int(g)][size_t(r)]);
    }
    CHECK(m[size_t(r)] == slice);
  }
}
