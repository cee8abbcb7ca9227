// Why: aux-loss-free balancing (model.moe.balance bias) must balance a router on its own: a router
// skewed on purpose towards one expert, with the balance loss off and the weights frozen, is brought
// back to an even load by the expert bias alone; the bias selects but never enters the gates; and
// the manifest fields are checked.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdio>
#include <random>

#include "comm/grid.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/model/model.h"
#include "engine/run/config.h"
#include "tests/test_util.h"

using mt::json;

namespace {

mt::RunConfig config(const json& moe) {
  json j = {{"model", {{"vocab_size", 64}, {"d_model", 16}, {"n_layers", 2}, {"n_heads", 2}, {"head_dim", 8},
                       {"seq_len", 16}, {"moe", moe}}},
            {"train", {{"tokens", 1000}}}};
  return mt::parse_run(j, "test", ".");
}

// max / mean of the experts' load in each MoE layer of one step (load: layer * E + expert).
std::vector<double> max_over_mean(const std::vector<double>& load, int E) {
  std::vector<double> r;
  for (size_t l = 0; l * E < load.size(); ++l) {
    double mx = 0, sum = 0;
    for (int e = 0; e < E; ++e) {
      mx = std::max(mx, load[l * E + e]);
      sum += load[l * E + e];
    }
    r.push_back(mx / (sum / E));
  }
  return r;
}

}  // namespace

TEST_CASE("expert bias alone balances a router skewed towards one expert", "[model][moe]") {
  const int E = 8, K = 2, micro = 8, n_micro = 4;
  const mt::ModelConfig cfg = config({{"layout", "full"}, {"n_experts", E}, {"top_k", K}, {"d_expert", 8},
                                      {"balance", "bias"}, {"balance_coef", 0}, {"bias_rate", 0.002}})
                                  .model;
  mt::CpuOps<double> ops;
  auto grid = mt::make_grid(1, 1, ops.device());
  mt::Model<double> model(cfg, micro, *grid, ops);
  model.init_params(3);
  // Larger weights than the init, so that tokens differ in the experts they prefer (a bias can only
  // balance tokens that have a second choice). The skew: every token's embedding shares a large first
  // coordinate, which survives the norms, and each router gives expert 0 a large weight on it, so expert
  // 0 is in every token's top-K.
  const mt::ParamTable& t = model.layout().dense;
  double* p = model.params(mt::ParamGroup::Dense);
  std::mt19937_64 init(5);
  std::normal_distribution<double> normal(0.0, 0.3);
  for (size_t i = 0; i < model.numel(mt::ParamGroup::Dense); ++i) p[i] += normal(init);
  for (int v = 0; v < cfg.vocab_size; ++v) p[t.at("embed.weight").offset + size_t(v) * cfg.d_model] = 1.0;
  for (int l = 0; l < cfg.n_layers; ++l) p[t.at("layers." + std::to_string(l) + ".moe.router.weight").offset] = 1.0;
  model.refresh_compute_weights();

  const int S = cfg.seq_len;
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int> tok(0, cfg.vocab_size - 1);
  std::vector<int32_t> windows(size_t(micro) * (S + 1));
  // One step: the load of n_micro micro-batches (weights frozen: no optimizer), then the bias update.
  auto step = [&] {
    std::vector<mt::MicroBatchStats> s(n_micro);
    for (auto& mb : s) {
      for (int32_t& w : windows) w = tok(rng);
      model.zero_grads();
      mb = model.forward_backward(windows.data(), micro, 1.f, nullptr);
    }
    model.read_moe_stats(s.data(), n_micro);
    std::vector<double> load;
    for (const auto& mb : s)
      for (size_t l = 0, k = 0; l < mb.tokens_per_expert.size(); ++l)
        for (int64_t c : mb.tokens_per_expert[l]) {
          if (load.size() <= k) load.push_back(0);
          load[k++] += double(c);
        }
    model.update_expert_bias(load);
    return load;
  };

  const std::vector<double> first = step();
  const std::vector<double> before = max_over_mean(first, E);
  for (double r : before) CHECK(r >= 3.5);  // at most E / K = 4: expert 0 in every token's top-K
  for (int i = 0; i < 400; ++i) step();
  // The last 20 steps' mean max/mean per layer.
  std::vector<double> after(before.size(), 0.0);
  for (int i = 0; i < 20; ++i) {
    const std::vector<double> r = max_over_mean(step(), E);
    for (size_t l = 0; l < r.size(); ++l) after[l] += r[l] / 20;
  }
  for (size_t l = 0; l < after.size(); ++l) {
    INFO("MoE layer " << l << ": max/mean load " << before[l] << " at the first step, " << after[l]
                      << " over steps 402-421");
    CHECK(after[l] <= 1.5);
  }
  std::printf("skewed router, bias alone: max/mean load per MoE layer %.3f, %.3f at the first step -> %.3f, %.3f\n",
              before[0], before[1], after[0], after[1]);
  // The bias of the expert that was most loaded at first went down; it is saved and restored exactly.
  const std::vector<double> bias = model.expert_bias();
  REQUIRE(bias.size() == size_t(2 * E));
  CHECK(bias[std::max_element(first.begin(), first.begin() + E) - first.begin()] < 0);
  model.set_expert_bias(bias);
  CHECK(model.expert_bias() == bias);
}

TEST_CASE("the expert bias changes the choice, never the gates", "[ops][moe]") {
  mt::CpuOps<double> ops;
  const int N = 2, E = 4, K = 2;
  const std::vector<double> logits = {2.0, 1.0, 0.5, 0.0,   //
                                      0.0, 0.1, 0.2, 3.0};
  const std::vector<double> bias = {-1.0, 0.0, 0.5, 0.0};
  std::vector<int32_t> idx(N * K);
  std::vector<double> gates(N * K), probs(N * E), lse(N);
  ops.router_forward(idx.data(), gates.data(), probs.data(), lse.data(), logits.data(), bias.data(), {N, E, K},
                     mt::GateNorm::None);
  // Token 0: scores p + b rank expert 2 (0.5 + p2) and 1 above expert 0 (p0 - 1).
  CHECK(idx[0] == 2);
  CHECK(idx[1] == 1);
  CHECK(gates[0] == probs[2]);
  CHECK(gates[1] == probs[1]);
  // Token 1: expert 3 leads either way; expert 2's bias lifts it above expert 1.
  CHECK(idx[2] == 3);
  CHECK(idx[3] == 2);
  CHECK(gates[2] == probs[E + 3]);
  CHECK(gates[3] == probs[E + 2]);
  // Renormalised gates use the probabilities too.
  ops.router_forward(idx.data(), gates.data(), probs.data(), lse.data(), logits.data(), bias.data(), {N, E, K},
                     mt::GateNorm::Renormalize);
  CHECK(gates[0] == Approx(probs[2] / (probs[2] + probs[1])).epsilon(1e-15));
}

TEST_CASE("model.moe.balance and bias_rate are checked", "[config]") {
  const json base = {{"layout", "full"}, {"n_experts", 4}, {"top_k", 2}, {"d_expert", 8}};
  CHECK(config(base).model.moe.balance == mt::MoeBalance::Aux);
  json b = base;
  b["balance"] = "aux+bias";
  const mt::MoeConfig m = config(b).model.moe;
  CHECK(m.balance == mt::MoeBalance::AuxBias);
  CHECK(m.bias_rate == 1e-3);
  CHECK(m.trained_balance_coef() == m.balance_coef);
  b["balance"] = "bias";
  CHECK(config(b).model.moe.trained_balance_coef() == 0);
  b["balance"] = "loss-free";
  CHECK(mt::test::input_error([&] { config(b); }).find("model.moe.balance") != std::string::npos);
  b = base;
  b["bias_rate"] = 0.01;
  CHECK(mt::test::input_error([&] { config(b); }).find("model.moe.bias_rate") != std::string::npos);
  b["balance"] = "bias";
  b["bias_rate"] = 0;
  CHECK(mt::test::input_error([&] { config(b); }).find("model.moe.bias_rate") != std::string::npos);
}
