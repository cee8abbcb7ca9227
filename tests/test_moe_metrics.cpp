// Why: the MoE load metrics of metrics.jsonl (moe_load, moe_max_load, moe_dropped, moe_dead,
// moe_entropy, moe_tokens) must say what the router did over a log interval of several steps and micro-batches.
// With every router weight at zero each token's probabilities are exactly 1/E and top-K takes experts
// 0..K-1 (ties go to the lower index), so the test knows every count without the model: it counts the
// choices, the capacity's drops and the idle experts of that construction itself (and the entropy is
// ln E) and compares each number the window writes. A second case with sharp random routing checks the window
// against the per-micro-batch counts it was fed.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <random>

#include "comm/grid.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/model/model.h"
#include "engine/run/config.h"
#include "engine/run/trainer_impl.h"

using mt::json;

namespace {

constexpr int kE = 4, kK = 2, kSeq = 6, kMicro = 2, kMicroBatches = 3, kSteps = 2;

mt::ModelConfig config(double capacity_factor) {
  json moe = {{"layout", "interleave"}, {"n_experts", kE},   {"top_k", kK},
              {"d_expert", 5},          {"d_shared", 4},     {"capacity_factor", capacity_factor}};
  json j = {{"model", {{"vocab_size", 11}, {"d_model", 8}, {"n_layers", 4}, {"n_heads", 2}, {"head_dim", 4},
                       {"d_ffn", 12}, {"seq_len", kSeq}, {"moe", moe}}},
            {"train", {{"tokens", 1000}}}};
  return mt::parse_run(j, "test", ".").model;
}

// The window over kSteps steps of kMicroBatches micro-batches, fed as the trainer feeds it; `counts`
// gets every micro-batch's choices per (MoE layer, expert) for the second case's check.
json window_of(mt::Model<double>& model, std::vector<double>* counts = nullptr) {
  std::mt19937 rng(3);
  std::vector<int32_t> windows(size_t(kMicro) * (kSeq + 1));
  mt::train_detail::MoeWindow window(kE);
  for (int step = 0; step < kSteps; ++step) {
    mt::StepStats s;
    for (int mb = 0; mb < kMicroBatches; ++mb) {
      for (auto& t : windows) t = int32_t(rng() % 11);
      mt::MicroBatchStats m = model.forward_backward(windows.data(), kMicro, 1.f / kMicroBatches, nullptr);
      model.read_moe_stats(&m, 1);
      s.add(m, kMicroBatches);
      if (counts) {
        counts->resize(m.tokens_per_expert.size() * kE, 0.0);
        for (size_t l = 0; l < m.tokens_per_expert.size(); ++l)
          for (int e = 0; e < kE; ++e) (*counts)[l * kE + e] += double(m.tokens_per_expert[l][e]);
      }
    }
    window.add(s);
  }
  return window.to_json(kK);
}

}  // namespace

TEST_CASE("the MoE load window counts what a zero router chooses, drops and leaves idle", "[moe][metrics]") {
  mt::CpuOps<double> ops;
  auto grid = mt::make_grid(1, 1, ops.device());
  for (double cf : {0.0, 0.5}) {
    SECTION(cf > 0 ? "capacity factor 0.5" : "dropless") {
      const mt::ModelConfig cfg = config(cf);
      mt::Model<double> model(cfg, kMicro, *grid, ops);
      model.init_params(2);
      for (const auto& t : model.layout().dense.tensors)
        if (t.name.find(".moe.router.") != std::string::npos)
          std::fill_n(model.params(mt::ParamGroup::Dense) + t.offset, t.numel, 0.0);
      const json j = window_of(model);

      // The count by construction: every token picks experts 0 .. K-1.
      const int N = kMicro * kSeq;                       // tokens per micro-batch
      const double tokens = double(N) * kMicroBatches * kSteps;
      const int capacity = cf > 0 ? int(std::ceil(cf * N * kK / kE)) : N;
      std::vector<double> chosen(kE, 0.0);
      double dropped = 0;
      for (int t = 0; t < N; ++t)
        for (int k = 0; k < kK; ++k) chosen[k] += 1;     // per micro-batch
      for (int e = 0; e < kE; ++e) dropped += std::max(0.0, chosen[e] - capacity);
      const double choices_per_mb = double(N) * kK;

      CHECK(j["moe_tokens"].get<double>() == tokens);
      CHECK(j["moe_steps"].get<int>() == kSteps);
      REQUIRE(j["moe_load"].size() == 2);                // interleave: layers 1 and 3
      for (int l = 0; l < 2; ++l) {
        for (int e = 0; e < kE; ++e) CHECK(j["moe_load"][l][e].get<double>() == Approx(chosen[e] / choices_per_mb));
        CHECK(j["moe_max_load"][l].get<double>() == Approx(double(kE) / kK));
        CHECK(j["moe_dead"][l].get<int>() == kE - kK);
        CHECK(j["moe_dropped"][l].get<double>() == Approx(dropped / choices_per_mb));
        CHECK(j["moe_entropy"][l].get<double>() == Approx(std::log(double(kE))).margin(1e-4));  // uniform
      }
      if (cf > 0) CHECK(j["moe_dropped"][0].get<double>() > 0.5);
    }
  }
}

TEST_CASE("the MoE load window sums the micro-batches and steps of its interval", "[moe][metrics]") {
  mt::CpuOps<double> ops;
  auto grid = mt::make_grid(1, 1, ops.device());
  mt::Model<double> model(config(0), kMicro, *grid, ops);
  model.init_params(4);
  for (const auto& t : model.layout().dense.tensors)
    if (t.name.find(".moe.router.") != std::string::npos)
      for (size_t i = 0; i < t.numel; ++i) model.params(mt::ParamGroup::Dense)[t.offset + i] *= 50;
  std::vector<double> counts;
  const json j = window_of(model, &counts);
  const double choices = double(kMicro) * kSeq * kMicroBatches * kSteps * kK;
  for (int l = 0; l < 2; ++l) {
    double sum = 0, mx = 0;
    int dead = 0;
    for (int e = 0; e < kE; ++e) {
      const double c = counts[size_t(l) * kE + e];
      CHECK(j["moe_load"][l][e].get<double>() == Approx(c / choices).margin(1e-5));
      sum += j["moe_load"][l][e].get<double>();
      mx = std::max(mx, c);
      dead += c == 0 ? 1 : 0;
    }
    CHECK(sum == Approx(1.0).margin(1e-4));
    CHECK(j["moe_max_load"][l].get<double>() == Approx(mx / (choices / kE)).margin(1e-4));
    CHECK(j["moe_dead"][l].get<int>() == dead);
    CHECK(j["moe_dropped"][l].get<double>() == 0.0);
    CHECK(j["moe_entropy"][l].get<double>() > 0.0);
    CHECK(j["moe_entropy"][l].get<double>() < std::log(double(kE)) - 0.1);  // sharper than uniform
  }
}

TEST_CASE("model.moe.balance_group is 0 (the micro-batch) or a count that divides the micro-batch", "[moe][config]") {
  json j = {{"model", {{"vocab_size", 11}, {"d_model", 8}, {"n_layers", 2}, {"n_heads", 2}, {"d_ffn", 12},
                       {"seq_len", 6},
                       {"moe", {{"n_experts", 4}, {"top_k", 2}, {"d_expert", 5}, {"balance_group", -1}}}}},
            {"train", {{"tokens", 1000}, {"batch_size", 8}, {"micro_batch_size", 4}}}};
  CHECK_THROWS_WITH(mt::parse_run(j, "m.json", "."), Catch::Contains("model.moe.balance_group"));
  j["model"]["moe"]["balance_group"] = 3;
  const mt::RunConfig cfg = mt::parse_run(j, "m.json", ".");
  CHECK_THROWS_WITH(mt::split_batch(cfg, 8, 1), Catch::Contains("model.moe.balance_group (3)"));
  j["model"]["moe"]["balance_group"] = 2;
  CHECK(mt::split_batch(mt::parse_run(j, "m.json", "."), 8, 1).n_micro == 2);
  j["model"]["moe"]["balance_group"] = 0;
  CHECK(mt::split_batch(mt::parse_run(j, "m.json", "."), 8, 1).n_micro == 2);
}
