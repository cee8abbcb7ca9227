// Why: `moetrain plan` must print the paper's Tables 9-17 from the architecture alone. Every row of
// manifests/paper/ is compared with its published values (within 1.5%), and the counting itself is
// checked on a small model against a count done by hand.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>

#include "engine/core/check.h"
#include "engine/run/config.h"
#include "engine/run/plan.h"
#include "tests/test_util.h"

using mt::json;

TEST_CASE("every row of the paper's Tables 9-17 is planned within 1.5%", "[plan]") {
  int rows = 0;
  for (int table = 9; table <= 17; ++table) {
    std::string path = mt::test::source_path("manifests/paper/table" + std::to_string(table) + ".json");
    auto m = mt::load_manifest(path, {});
    REQUIRE(m.is_sweep);
    for (auto& run : m.sweep.runs) {
      auto cfg = mt::parse_run(run.manifest, path, m.sweep.base_dir);
      auto p = mt::make_plan(cfg);
      const json& ref = run.paper;
      REQUIRE(ref.is_object());
      auto close = [&](const char* key, double ours) {
        double theirs = ref.at(key).get<double>();
        INFO("table " << table << " run " << run.name << " " << key << ": ours " << ours << " paper " << theirs);
        CHECK(std::fabs(ours - theirs) <= 0.015 * std::fabs(theirs));
      };
      close("N", double(p.n_params));
      close("Na", double(p.n_active));
      close("ra", 100.0 * p.activation_rate);
      close("M", p.flops_per_token);
      close("D", p.tokens);
      close("C", p.compute);
      close("D_hat", p.unique_tokens);
      close("epochs", p.epochs);
      close("iters", double(p.iters));
      ++rows;
    }
  }
  CHECK(rows == 18 + 12 + 6 + 8 + 6 + 6 + 9 + 9 + 6);
}

TEST_CASE("parameter counts match a count by hand", "[plan]") {
  // 1dense + shared expert, 3 layers: layer 0 dense, layers 1-2 MoE.
  json j = json::parse(R"({"model": {"vocab_size": 100, "d_model": 8, "n_layers": 3, "n_heads": 2, "head_dim": 3,
    "d_ffn": 20, "seq_len": 16, "moe": {"n_experts": 5, "top_k": 2, "d_expert": 4, "d_shared": 6}},
    "train": {"tokens": 1600, "batch_size": 2, "lr": 1e-3}})");
  auto cfg = mt::parse_run(j, "t", ".");
  auto c = mt::count_params(cfg.model);
  CHECK(c.attention == 3 * 4 * 8 * 6);           // wq, wk, wv [6,8] and wo [8,6]
  CHECK(c.dense_ffn == 3 * 8 * 20);
  CHECK(c.experts == 2 * 5 * 3 * 8 * 4);
  CHECK(c.experts_active == 2 * 2 * 3 * 8 * 4);
  CHECK(c.shared == 2 * 3 * 8 * 6);
  CHECK(c.router == 2 * 5 * 8);
  CHECK(c.norms == 3 * 2 * 8 + 8);
  CHECK(c.embedding == 2 * 100 * 8);
  auto p = mt::make_plan(cfg);
  CHECK(p.n_params == c.attention + c.dense_ffn + c.experts + c.shared + c.router + c.norms);
  CHECK(p.flops_per_token == Approx(6.0 * double(p.n_active) + 12.0 * 3 * 8 * 16));
  CHECK(p.iters == 50);  // 1600 / (2 * 16)
  CHECK(p.tokens == 1600);
  CHECK(p.compute == Approx(p.flops_per_token * 1600));
  cfg.model.tie_embeddings = true;
  CHECK(mt::count_params(cfg.model).embedding == 100 * 8);
}

TEST_CASE("Step Law auto lr and batch size, and auto warmup", "[plan]") {
  // eta = 1.79 N^-0.713 D^0.307; B = 0.58 D^0.571 tokens (Li et al. 2025), evaluated by hand.
  CHECK(mt::step_law_lr(6.52e9, 6.05e11) == Approx(1.79 * std::pow(6.52e9, -0.713) * std::pow(6.05e11, 0.307)));
  CHECK(mt::step_law_lr(6.52e9, 6.05e11) == Approx(7.46e-4).epsilon(0.01));
  CHECK(mt::step_law_batch_tokens(6.05e11) / 2048 == Approx(1509).epsilon(0.01));
  CHECK(mt::auto_warmup(100000) == 1000);
  CHECK(mt::auto_warmup(1000000) == 2000);
  CHECK(mt::auto_warmup(30000) == 300);
  CHECK(mt::auto_warmup(1000) == 100);  // a short run: at most a tenth of it

  json j = json::parse(R"({"model": {"d_model": 2048, "n_layers": 24, "n_heads": 16, "d_ffn": 5464,
    "moe": {"n_experts": 83, "top_k": 1, "d_expert": 512, "d_shared": 512}},
    "train": {"compute": 2.86e21, "batch_size": "auto", "lr": "auto"}})");
  auto p = mt::make_plan(mt::parse_run(j, "t", "."));
  CHECK(p.batch_auto);
  CHECK(p.lr_auto);
  CHECK(p.batch_size == 1512);  // the paper's Table 12 row (rounded to a multiple of 8)
  CHECK(p.lr == Approx(7.46e-4).epsilon(0.01));
  CHECK(p.warmup_iters == 1957);  // 1% of 195,778 iterations
}

TEST_CASE("match_compute takes C from another manifest, and reuse sets D-hat and epochs", "[plan]") {
  std::string dir = mt::test::scratch_dir("plan_match");
  json dense = json::parse(R"({"model": {"vocab_size": 256, "d_model": 64, "n_layers": 4, "n_heads": 4, "d_ffn": 256,
    "seq_len": 64}, "train": {"tokens": 1048576, "batch_size": 16, "lr": 1e-3}})");
  mt::test::write_file(dir + "/dense.json", dense.dump());
  json moe = json::parse(R"({"model": {"vocab_size": 256, "d_model": 64, "n_layers": 4, "n_heads": 4, "d_ffn": 256,
    "seq_len": 64, "moe": {"layout": "1dense", "n_experts": 16, "top_k": 2, "d_expert": 16, "d_shared": 32}},
    "train": {"match_compute": "dense.json", "batch_size": 16, "lr": 1e-3},
    "data": {"reuse": "strict", "unique_tokens": 1048576}})");
  mt::test::write_file(dir + "/moe.json", moe.dump());
  auto dp = mt::make_plan(mt::parse_run(dense, "dense", dir));
  auto cfg = mt::parse_run(moe, "moe", dir);
  auto mp = mt::make_plan(cfg);
  CHECK(mp.compute == Approx(dp.compute).epsilon(mp.flops_per_token * 16 * 64 / dp.compute));
  CHECK(mp.tokens > 1.5 * dp.tokens);  // the MoE consumes more tokens at equal C
  CHECK(mp.unique_tokens == 1048576);
  CHECK(mp.epochs == Approx(mp.tokens / 1048576));
  // resolved_manifest re-plans to the same run.
  json resolved = mt::resolved_manifest(cfg, mp);
  auto again = mt::make_plan(mt::parse_run(resolved, "resolved", dir));
  CHECK(again.iters == mp.iters);
  CHECK(again.tokens == mp.tokens);
  CHECK(again.lr == mp.lr);
  // loose reuse: two epochs over D/2.
  moe["data"] = {{"reuse", "loose"}};
  auto lp = mt::make_plan(mt::parse_run(moe, "moe", dir));
  CHECK(lp.epochs == 2.0);
  CHECK(lp.unique_tokens == lp.tokens / 2);
  // a match_compute cycle is an error, not a hang
  json cyc = moe;
  cyc["train"]["match_compute"] = "cycle.json";
  mt::test::write_file(dir + "/cycle.json", cyc.dump());
  CHECK_THROWS_AS(mt::make_plan(mt::parse_run(cyc, "cycle", dir)), mt::InputError);
}

TEST_CASE("plan --json prints an array for a sweep with the documented keys", "[plan][cli]") {
  auto r = mt::test::run_moetrain("plan --json " + mt::test::source_path("manifests/paper/table12.json"));
  REQUIRE(r.exit_code == 0);
  json arr = json::parse(r.out);
  REQUIRE(arr.is_array());
  REQUIRE(arr.size() == 8);
  for (const char* key : {"name", "n_params", "n_active", "activation_rate", "flops_per_token", "tokens", "compute",
                          "unique_tokens", "epochs", "iters", "batch_size", "lr", "d_over_n"})
    CHECK(arr[0].contains(key));
  CHECK(arr[4]["name"] == "ra20.07");
  auto t = mt::test::run_moetrain("plan " + mt::test::source_path("manifests/paper/table12.json"));
  CHECK(t.exit_code == 0);
  CHECK_THAT(t.out, Catch::Contains("20.07%"));
}
