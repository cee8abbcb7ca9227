// Why: the whole model's hand-written backward must be the gradient of its loss. In float64 every
// tensor's gradient is compared with central finite differences of the total loss (cross-entropy +
// balance + z-loss) on sampled elements (the rule of tests/grad_check.h), for a dense model and MoE models in every layout and option
// (K = 1 and K > 1, shared expert on / off, renormalised gates on / off, capacity dropping, z-loss,
// balance groups of 1 sequence (two per micro-batch) and of 2 (one), tied embeddings, an expert bias).
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "comm/grid.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/model/model.h"
#include "engine/run/config.h"
#include "tests/grad_check.h"

using mt::json;

namespace {

mt::ModelConfig tiny_config(const json& moe, int n_layers = 3) {
  json j = {{"model", {{"vocab_size", 11}, {"d_model", 8}, {"n_layers", n_layers}, {"n_heads", 3},
                       {"head_dim", 4}, {"d_ffn", 12}, {"seq_len", 6}}},
            {"train", {{"tokens", 1000}}}};
  if (!moe.is_null()) j["model"]["moe"] = moe;
  return mt::parse_run(j, "test", ".").model;
}

double total_loss(const mt::ModelConfig& cfg, const mt::MicroBatchStats& s) {
  return s.loss_sum / double(s.tokens) + cfg.moe.trained_balance_coef() * s.balance_loss + cfg.moe.z_loss_coef * s.z_loss;
}

// Compares analytic and finite-difference gradients on `samples` elements of every tensor.
void check_gradients(const mt::ModelConfig& cfg, int micro_batch, uint64_t seed, int samples = 4) {
  mt::CpuOps<double> ops;
  auto grid = mt::make_grid(1, 1, ops.device());
  mt::Model<double> model(cfg, micro_batch, *grid, ops);
  model.init_params(seed);
  // Larger weights than the init, so that routing and attention are far from uniform.
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 0.3);
  for (auto g : {mt::ParamGroup::Dense, mt::ParamGroup::Expert}) {
    double* p = model.params(g);
    for (size_t i = 0; i < model.numel(g); ++i) p[i] += normal(rng);
  }
  // An expert bias (aux-loss-free balancing) that changes the choices: it selects only, so the
  // gradients stay those of the loss.
  std::vector<double> bias = model.expert_bias();
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = i % 2 ? 0.3 : -0.2;
  model.set_expert_bias(bias);
  const int S = cfg.seq_len;
  std::vector<int32_t> windows(size_t(micro_batch) * (S + 1));
  std::uniform_int_distribution<int> tok(0, cfg.vocab_size - 1);
  for (auto& t : windows) t = tok(rng);

  model.zero_grads();
  auto stats = model.forward_backward(windows.data(), micro_batch, 1.0f, nullptr);
  model.read_moe_stats(&stats, 1);
  const double base = total_loss(cfg, stats);
  REQUIRE(std::isfinite(base));

  auto loss_at = [&]() {
    auto s = model.forward_backward(windows.data(), micro_batch, 1.0f, nullptr);
    model.read_moe_stats(&s, 1);
    return total_loss(cfg, s);
  };
  // Copy the analytic gradients before the finite differences accumulate more into them.
  std::vector<double> gd(model.grads(mt::ParamGroup::Dense), model.grads(mt::ParamGroup::Dense) + model.numel(mt::ParamGroup::Dense));
  std::vector<double> ge(model.grads(mt::ParamGroup::Expert),
                         model.grads(mt::ParamGroup::Expert) + model.numel(mt::ParamGroup::Expert));
  int tensors = 0;
  for (auto group : {mt::ParamGroup::Dense, mt::ParamGroup::Expert}) {
    const auto& table = group == mt::ParamGroup::Dense ? model.layout().dense : model.layout().expert;
    const auto& analytic = group == mt::ParamGroup::Dense ? gd : ge;
    double* p = model.params(group);
    for (const auto& t : table.tensors) {
      std::uniform_int_distribution<size_t> pick(0, t.numel - 1);
      std::vector<size_t> elements(samples);
      for (size_t& i : elements) i = pick(rng);
      mt::test::check_gradient(t.name, p + t.offset, analytic.data() + t.offset, t.numel, loss_at, elements);
      ++tensors;
    }
  }
  CHECK(tensors * samples > 20);
}

}  // namespace

TEST_CASE("dense model gradients match finite differences", "[model][grad]") {
  check_gradients(tiny_config(nullptr), 2, 1);
}

TEST_CASE("dense model with tied embeddings", "[model][grad]") {
  auto cfg = tiny_config(nullptr);
  cfg.tie_embeddings = true;
  check_gradients(cfg, 2, 2);
}

TEST_CASE("MoE gradients in every layout and option", "[model][grad]") {
  struct Case {
    const char* name;
    json moe;
  };
  std::vector<Case> cases = {
      // Balance groups of 2 (the micro-batch) here: with groups of 1, one router element's gradient
      // (2.8e-5) is so small that float64 rounding of the central difference at h = 1e-5 gives 1.4e-6
      // relative (it passes at h = 4e-5); the other cases count per sequence.
      {"1dense, K=2, shared", {{"layout", "1dense"}, {"n_experts", 4}, {"top_k", 2}, {"d_expert", 5}, {"d_shared", 6},
                               {"balance_group", 2}}},
      {"full, K=1, no shared", {{"layout", "full"}, {"n_experts", 4}, {"top_k", 1}, {"d_expert", 5}}},
      {"interleave, K=3, renormalised", {{"layout", "interleave"}, {"n_experts", 5}, {"top_k", 3}, {"d_expert", 4},
                                         {"d_shared", 4}, {"normalize_gates", true}}},
      {"full, K=2, renormalised, no shared", {{"layout", "full"}, {"n_experts", 4}, {"top_k", 2}, {"d_expert", 5},
                                              {"normalize_gates", true}}},
      {"1dense, capacity dropping, z-loss", {{"layout", "1dense"}, {"n_experts", 4}, {"top_k", 2}, {"d_expert", 5},
                                             {"d_shared", 6}, {"capacity_factor", 0.5}, {"z_loss_coef", 0.01},
                                             {"balance_coef", 0.1}}},
      {"full, balance groups of 2 sequences", {{"layout", "full"}, {"n_experts", 4}, {"top_k", 2}, {"d_expert", 5},
                                               {"balance_coef", 0.1}, {"balance_group", 2}}},
      {"full, K=2, aux+bias with a nonzero expert bias", {{"layout", "full"}, {"n_experts", 4}, {"top_k", 2},
                                                          {"d_expert", 5}, {"balance", "aux+bias"},
                                                          {"balance_coef", 0.1}}},
  };
  for (auto& c : cases) {
    SECTION(c.name) { check_gradients(tiny_config(c.moe), 2, 3); }
  }
}

TEST_CASE("capacity dropping drops choices and dropless keeps all", "[model]") {
  mt::CpuOps<double> ops;
  auto grid = mt::make_grid(1, 1, ops.device());
  json moe = {{"layout", "full"}, {"n_experts", 4}, {"top_k", 2}, {"d_expert", 5}, {"capacity_factor", 0.5}};
  auto cfg = tiny_config(moe, 2);
  mt::Model<double> model(cfg, 2, *grid, ops);
  model.init_params(5);
  std::vector<int32_t> w(2 * 7);
  for (size_t i = 0; i < w.size(); ++i) w[i] = int32_t(i % 11);
  auto s = model.forward_backward(w.data(), 2, 1.f, nullptr);
  model.read_moe_stats(&s, 1);
  // capacity = ceil(0.5 * 12 * 2 / 4) = 3 per expert: at most 12 of the 24 choices per layer are kept.
  CHECK(s.dropped >= 2 * 12);
  REQUIRE(s.tokens_per_expert.size() == 2);
  int64_t total = 0;
  for (auto c : s.tokens_per_expert[0]) total += c;
  CHECK(total == 24);  // counted before the drop
  cfg.moe.capacity_factor = 0;
  mt::Model<double> dropless(cfg, 2, *grid, ops);
  dropless.init_params(5);
  auto sd = dropless.forward_backward(w.data(), 2, 1.f, nullptr);
  dropless.read_moe_stats(&sd, 1);
  CHECK(sd.dropped == 0);
}
