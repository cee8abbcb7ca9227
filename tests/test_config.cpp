// Why: manifest parsing must reject bad input with one line naming the JSON path (never a crash), and
// --set overrides and sweeps must produce exactly the runs the user described.
#include <catch2/catch.hpp>

#include "engine/core/check.h"
#include "engine/run/config.h"
#include "engine/run/plan.h"
#include "tests/test_util.h"

using mt::json;

namespace {

json base_manifest() {
  return json::parse(R"({
    "model": {"vocab_size": 256, "d_model": 64, "n_layers": 4, "n_heads": 4, "d_ffn": 172, "seq_len": 128,
              "moe": {"layout": "1dense", "n_experts": 8, "top_k": 2, "d_expert": 32, "d_shared": 64}},
    "train": {"tokens": 1e6, "batch_size": 8, "lr": 1e-3}
  })");
}

std::string error_of(const json& j) {
  return mt::test::input_error([&] { mt::parse_run(j, "m.json", "."); });
}

}  // namespace

TEST_CASE("a valid manifest parses with Table 4 defaults", "[config]") {
  auto c = mt::parse_run(base_manifest(), "m.json", ".");
  CHECK(c.model.head_dim == 16);
  CHECK(c.model.n_moe_layers() == 3);
  CHECK(c.model.is_moe_layer(0) == false);
  CHECK(c.train.weight_decay == 0.1);
  CHECK(c.train.grad_clip == 1.0);
  CHECK(c.train.min_lr == 1e-5);
  CHECK(c.train.warmup_iters == -1);
  CHECK(c.data.reuse == mt::Reuse::None);
}

TEST_CASE("layouts place MoE layers as documented", "[config]") {
  json j = base_manifest();
  j["model"]["moe"]["layout"] = "interleave";
  auto c = mt::parse_run(j, "m.json", ".");
  CHECK(c.model.is_moe_layer(0) == false);
  CHECK(c.model.is_moe_layer(1) == true);
  CHECK(c.model.is_moe_layer(2) == false);
  CHECK(c.model.n_moe_layers() == 2);
  j["model"]["moe"]["layout"] = "full";
  CHECK(mt::parse_run(j, "m.json", ".").model.n_moe_layers() == 4);
}

TEST_CASE("bad manifests give one-line errors naming the JSON path", "[config]") {
  struct Case {
    const char* what;
    std::function<void(json&)> edit;
    const char* expect;  // substring of the message
  };
  std::vector<Case> cases = {
      {"top_k > n_experts", [](json& j) { j["model"]["moe"]["top_k"] = 9; }, "model.moe.top_k: 9 is larger than model.moe.n_experts (8)"},
      {"unknown layout", [](json& j) { j["model"]["moe"]["layout"] = "2dense"; }, "model.moe.layout: unknown value \"2dense\""},
      {"head_dim <= 0", [](json& j) { j["model"]["head_dim"] = 0; }, "model.head_dim: must be >= 1"},
      {"budget twice", [](json& j) { j["train"]["compute"] = 1e15; }, "budget is given twice"},
      {"no budget", [](json& j) { j["train"].erase("tokens"); }, "no budget"},
      {"unknown key", [](json& j) { j["model"]["d_modle"] = 3; }, "model.d_modle: unknown key"},
      {"unknown top-level key", [](json& j) { j["optimizer"] = json::object(); }, "optimizer: unknown key"},
      {"wrong type", [](json& j) { j["model"]["n_layers"] = "four"; }, "model.n_layers: must be an integer, got \"four\""},
      {"fractional integer", [](json& j) { j["model"]["d_model"] = 64.5; }, "model.d_model: must be an integer"},
      {"strict without unique", [](json& j) { j["data"] = {{"reuse", "strict"}}; }, "data.unique_tokens: is required"},
      {"unknown reuse", [](json& j) { j["data"] = {{"reuse", "sometimes"}}; }, "data.reuse: unknown value"},
      {"unique with none", [](json& j) { j["data"] = {{"unique_tokens", 5e5}}; }, "data.unique_tokens: is only used with reuse"},
      {"negative lr", [](json& j) { j["train"]["lr"] = -1; }, "train.lr: must be > 0"},
      {"lr not auto", [](json& j) { j["train"]["lr"] = "fast"; }, "train.lr: must be a number or \"auto\""},
      {"model missing", [](json& j) { j.erase("model"); }, "model: is required"},
      {"dense layer needs d_ffn", [](json& j) { j["model"].erase("d_ffn"); }, "model.d_ffn: is required"},
      {"tp does not divide heads", [](json& j) { j["parallel"] = {{"tp", 3}}; }, "parallel.tp: 3 does not divide model.n_heads (4)"},
      {"ep does not divide experts", [](json& j) { j["parallel"] = {{"ep", 3}}; }, "parallel.ep: 3 does not divide model.moe.n_experts (8)"},
      {"moe not an object", [](json& j) { j["model"]["moe"] = 5; }, "model.moe: must be a JSON object"},
      {"beta2 out of range", [](json& j) { j["train"]["beta2"] = 1.5; }, "train.beta2: must be in [0, 1)"},
      {"normalize with K=1", [](json& j) { j["model"]["moe"]["top_k"] = 1; j["model"]["moe"]["normalize_gates"] = true; }, "model.moe.normalize_gates"},
      {"negative tokens", [](json& j) { j["train"]["tokens"] = -5; }, "train.tokens: must be > 0"},
      {"huge tokens", [](json& j) { j["train"]["tokens"] = 1e308; }, "train.tokens: must be in (0, 1e+15], got 1e+308"},
      {"tokens past the unique-set int", [](json& j) { j["train"]["tokens"] = 1e20; }, "train.tokens: must be in"},
      {"batch 1e12", [](json& j) { j["train"]["batch_size"] = 1e12; }, "train.batch_size: must be in [1, 16777216]"},
      {"batch 3e9", [](json& j) { j["train"]["batch_size"] = 3e9; }, "train.batch_size: must be in"},
      {"batch 0 is not auto", [](json& j) { j["train"]["batch_size"] = 0; }, "train.batch_size: must be >= 1, got 0"},
      {"micro larger than batch", [](json& j) { j["train"]["micro_batch_size"] = 16; }, "train.micro_batch_size: 16 is larger than train.batch_size (8)"},
      {"warmup 1e12", [](json& j) { j["train"]["warmup_iters"] = 1e12; }, "train.warmup_iters: must be in [0, 1000000000]"},
      {"eval tokens 1e19", [](json& j) { j["eval"] = {{"tokens", 1e19}}; }, "eval.tokens: must be in"},
      {"heads x head_dim overflow", [](json& j) { j["model"]["n_heads"] = 65536; j["model"]["head_dim"] = 65536; }, "model.head_dim: n_heads x head_dim"},
      {"unsigned huge", [](json& j) { j["model"]["n_layers"] = uint64_t(1) << 63; }, "model.n_layers: must be in"},
      {"seed negative", [](json& j) { j["train"]["seed"] = -1; }, "train.seed: must be >= 0"},
  };
  for (auto& c : cases) {
    INFO(c.what);
    json j = base_manifest();
    c.edit(j);
    std::string msg = error_of(j);
    CHECK_THAT(msg, Catch::Contains(c.expect));
    CHECK(msg.find('\n') == std::string::npos);
    CHECK_THAT(msg, Catch::StartsWith("m.json: "));
  }
}

TEST_CASE("unique_tokens larger than the consumed tokens is an error with reuse strict", "[config]") {
  json j = base_manifest();
  j["data"] = {{"reuse", "strict"}, {"unique_tokens", 2e6}};
  auto c = mt::parse_run(j, "m.json", ".");
  CHECK_THROWS_AS(mt::make_plan(c), mt::InputError);
  CHECK_THROWS_WITH(mt::make_plan(c), Catch::Contains("data.unique_tokens"));
}

TEST_CASE("set overrides nested keys, parsing JSON values or taking strings", "[config]") {
  json j = base_manifest();
  mt::apply_override(j, "model.moe.top_k=1");
  mt::apply_override(j, "data.reuse=strict");
  mt::apply_override(j, "data.unique_tokens=5e5");
  mt::apply_override(j, "train.lr=\"auto\"");
  mt::apply_override(j, "eval.every=7");
  auto c = mt::parse_run(j, "m.json", ".");
  CHECK(c.model.moe.top_k == 1);
  CHECK(c.data.reuse == mt::Reuse::Strict);
  CHECK(c.data.unique_tokens == 5e5);
  CHECK(c.train.lr == 0);  // auto
  CHECK(c.eval.every == 7);
  CHECK_THROWS_AS(mt::apply_override(j, "noequals"), mt::InputError);
  CHECK_THROWS_AS(mt::apply_override(j, "model.d_model.x=3"), mt::InputError);
}

TEST_CASE("a sweep applies each run's dotted overrides to the base", "[config]") {
  json s = {{"name", "sw"}, {"base", base_manifest()}, {"reference", "b"},
            {"runs", json::array({{{"name", "a"}, {"model.moe.top_k", 1}},
                                  {{"name", "b"}, {"model.moe.top_k", 4}, {"paper", {{"N", 1}}}}})}};
  auto sw = mt::parse_sweep(s, "s.json", ".");
  REQUIRE(sw.runs.size() == 2);
  CHECK(sw.reference == "b");
  CHECK(mt::parse_run(sw.runs[0].manifest, "a", ".").model.moe.top_k == 1);
  CHECK(mt::parse_run(sw.runs[1].manifest, "b", ".").model.moe.top_k == 4);
  CHECK(sw.runs[1].paper["N"] == 1);
  json dup = s;
  dup["runs"][1]["name"] = "a";
  CHECK_THROWS_WITH(mt::parse_sweep(dup, "s.json", "."), Catch::Contains("duplicate run name"));
  json badref = s;
  badref["reference"] = "zzz";
  CHECK_THROWS_WITH(mt::parse_sweep(badref, "s.json", "."), Catch::Contains("reference"));
}

TEST_CASE("the CLI reports bad manifests on one line with exit 2", "[config][cli]") {
  std::string dir = mt::test::scratch_dir("cli_bad_manifest");
  json j = base_manifest();
  j["model"]["moe"]["top_k"] = 20;
  mt::test::write_file(dir + "/bad.json", j.dump());
  auto r = mt::test::run_moetrain("plan " + dir + "/bad.json");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.out, Catch::Contains("model.moe.top_k"));
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);

  mt::test::write_file(dir + "/syntax.json", "{\"model\": ");
  r = mt::test::run_moetrain("plan " + dir + "/syntax.json");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.out, Catch::Contains("invalid JSON"));

  r = mt::test::run_moetrain("plan " + dir + "/missing.json");
  CHECK(r.exit_code == 2);

  r = mt::test::run_moetrain("plan " + dir + "/bad.json --set model.moe.top_k=2 --set train.tokens=2e6");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("2.00e6"));

  r = mt::test::run_moetrain("--version");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::StartsWith("moetrain "));
  r = mt::test::run_moetrain("frobnicate");
  CHECK(r.exit_code == 2);
}

TEST_CASE("model.attention_impl selects native (default) or cudnn attention", "[config]") {
  json j = base_manifest();
  CHECK(mt::parse_run(j, "m.json", ".").model.attention_impl == mt::AttentionImpl::Native);
  j["model"]["attention_impl"] = "cudnn";
  CHECK(mt::parse_run(j, "m.json", ".").model.attention_impl == mt::AttentionImpl::Cudnn);
  j["model"]["attention_impl"] = "flash";
  CHECK_THAT(error_of(j), Catch::Contains("model.attention_impl: unknown value \"flash\""));
}

TEST_CASE("outside JSON: nesting, huge numbers and library errors become one line naming the source", "[config][json]") {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  CHECK_THROWS_WITH(mt::parse_json(deep, "m.json"), Catch::Contains("m.json: invalid JSON: nested deeper than"));
  CHECK_THROWS_WITH(mt::parse_json("{\"model\": " + deep + "}", "m.json"), Catch::Contains("nested deeper"));
  // A '[' inside a string is not nesting.
  CHECK(mt::parse_json("{\"a\": \"" + std::string(1000, '[') + "\"}", "m.json").is_object());
  CHECK_THROWS_WITH(mt::parse_json("{\"train\": {\"tokens\": 1e309}}", "m.json"),
                    Catch::StartsWith("m.json: invalid JSON"));
  CHECK_THROWS_AS(mt::with_json_errors("index.json", [] { return json(5).get<std::string>(); }), mt::InputError);
  CHECK_THROWS_WITH(mt::with_json_errors("index.json", [] { return json(5).get<std::string>(); }),
                    Catch::StartsWith("index.json: "));
  // --set with a value JSON cannot hold is a string, which the typed getter then rejects by key.
  json j = base_manifest();
  mt::apply_override(j, "train.tokens=1e309");
  CHECK_THROWS_WITH(mt::parse_run(j, "m.json", "."), Catch::Contains("train.tokens: must be a number"));
  // A sweep key nested past the limit.
  std::string key = "a";
  for (int i = 0; i < 100; ++i) key += ".a";
  CHECK_THROWS_WITH(mt::set_dotted(j, key, 1, "s.json"), Catch::Contains("nested deeper"));
}

TEST_CASE("dataset paths: raw:/abs stays absolute, raw:rel resolves against the manifest folder", "[config]") {
  json j = base_manifest();
  j["data"] = {{"train", "raw:/abs/path.bin"}, {"val", "raw:rel/v.bin"}};
  auto c = mt::parse_run(j, "m.json", "/runs/m");
  CHECK(c.data.train == "raw:/abs/path.bin");
  CHECK(c.data.val == "raw:/runs/m/rel/v.bin");
  j["data"] = {{"train", "/abs/folder"}, {"val", "v"}};
  c = mt::parse_run(j, "m.json", "/runs/m");
  CHECK(c.data.train == "/abs/folder");
  CHECK(c.data.val == "/runs/m/v");
}

TEST_CASE("a compute budget past the token bound and match_compute naming a folder are input errors", "[config]") {
  json j = base_manifest();
  j["train"].erase("tokens");
  j["train"]["compute"] = 1e30;
  CHECK_THROWS_WITH(mt::make_plan(mt::parse_run(j, "m.json", ".")), Catch::Contains("more than 1e+15"));
  std::string dir = mt::test::scratch_dir("match_folder");
  j["train"].erase("compute");
  j["train"]["match_compute"] = dir;
  CHECK_THROWS_WITH(mt::make_plan(mt::parse_run(j, "m.json", ".")), Catch::Contains("is a folder"));
}
