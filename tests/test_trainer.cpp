// Why: the trainer's promise is that a stopped run, resumed, is the run that never stopped: the step,
// the loader position (across an epoch boundary of reused data), the weights and Adam moments restored
// and metrics.jsonl cut back to the checkpoint's step, so that the resumed run writes the same lines
// and the same final checkpoint bytes. tests/scripted/train_cli.sh shows it through the CLI; here it
// runs in-process on a tiny MoE and dataset in a few seconds, including the case the CLI cannot stage:
// a run that logged steps past its last checkpoint before it died. And a stop that only one rank asks
// for (two dp ranks as threads, tests/thread_grid.h) stops every rank at the same step.
#include <catch2/catch.hpp>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "comm/grid.h"
#include "data/build.h"
#include "engine/core/io.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/run/checkpoint.h"
#include "engine/run/config.h"
#include "engine/run/trainer.h"
#include "tests/test_util.h"
#include "tests/thread_grid.h"

namespace fs = std::filesystem;
using mt::json;

namespace {

// A byte-level dataset of made-up words (the same text every time), built once per test.
std::string tiny_dataset(const std::string& dir) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> len(1, 8), letter(0, 25), line(5, 12);
  std::string text;
  while (text.size() < 30000) {
    const int words = line(rng);
    for (int w = 0; w < words; ++w) {
      for (int c = len(rng); c > 0; --c) text += char('a' + letter(rng));
      text += w + 1 < words ? ' ' : '\n';
    }
  }
  mt::test::write_file(dir + "/text.txt", text);
  mt::data::BuildOptions o;
  o.inputs = {dir + "/text.txt"};
  o.out_dir = dir + "/ds";
  o.val_tokens = 2048;
  o.workers = 1;
  mt::data::build_dataset(o, nullptr);
  return o.out_dir;
}

// 20 steps of 8 sequences of 16 tokens over 2 epochs (reuse loose), checkpoints every 4 steps; `set`
// overrides ("train.seed=4").
mt::RunConfig tiny_run(const std::string& ds, const std::string& set = "") {
  json j = {{"name", "tiny"},
            {"model", {{"vocab_size", 256}, {"d_model", 16}, {"n_layers", 2}, {"n_heads", 2}, {"head_dim", 8},
                       {"d_ffn", 32}, {"seq_len", 16},
                       {"moe", {{"layout", "1dense"}, {"n_experts", 4}, {"top_k", 2}, {"d_expert", 16}}}}},
            {"train", {{"tokens", 20 * 8 * 16}, {"batch_size", 8}, {"micro_batch_size", 4}, {"lr", 3e-3},
                       {"warmup_iters", 2}, {"seed", 3}}},
            {"data", {{"train", ds}, {"val", ds}, {"reuse", "loose"}}},
            {"eval", {{"every", 0}, {"tokens", 1024}}},
            {"checkpoint", {{"every", 4}, {"keep", 10}}},
            {"log", {{"every", 1}}}};
  if (!set.empty()) mt::apply_override(j, set);
  return mt::parse_run(j, "tiny.json", ".");
}

mt::TrainResult train(const mt::RunConfig& cfg, const std::string& out, mt::ResumeMode resume, int64_t stop_after) {
  mt::TrainOptions o;
  o.out_dir = out;
  o.resume = resume;
  o.stop_after = stop_after;
  o.device_name = "cpu";
  mt::CpuOps<float> ops;
  auto grid = mt::make_grid(1, 1, ops.device());
  return mt::train(cfg, o, ops, *grid);
}

// metrics.jsonl without the timing keys, one object per line.
std::vector<json> metrics_numbers(const std::string& run) {
  std::vector<json> lines;
  std::istringstream in(mt::read_text(run + "/metrics.jsonl"));
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line);
    j.erase("tok_per_s");
    j.erase("mfu");
    lines.push_back(j);
  }
  return lines;
}

std::string checkpoint_of(const std::string& run, int step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08d", step);
  return run + "/checkpoints/" + buf;
}

}  // namespace

TEST_CASE("a run stopped and resumed, or dead after logging past its checkpoint, ends bit-identical", "[trainer]") {
  const std::string dir = mt::test::scratch_dir("trainer_resume");
  const mt::RunConfig cfg = tiny_run(tiny_dataset(dir));

  const mt::TrainResult whole = train(cfg, dir + "/whole", mt::ResumeMode::Fresh, -1);
  REQUIRE(whole.outcome == mt::TrainOutcome::Finished);
  REQUIRE(whole.step == 20);
  const std::vector<json> want = metrics_numbers(dir + "/whole");
  const json final_state = mt::verify_checkpoint(checkpoint_of(dir + "/whole", 20));
  // The loader went through the unique set twice (position counts sequences taken).
  REQUIRE(final_state["loader"]["position"] == 2 * final_state["loader"]["unique_sequences"].get<int64_t>());

  // --stop-after 11: a checkpoint at the stop, no summary; then steps 12..20 from it.
  const std::string stop = dir + "/stop";
  const mt::TrainResult first = train(cfg, stop, mt::ResumeMode::Fresh, 11);
  CHECK(first.outcome == mt::TrainOutcome::Stopped);
  CHECK(first.step == 11);
  CHECK(mt::latest_checkpoint(stop) == checkpoint_of(stop, 11));
  CHECK_FALSE(fs::exists(stop + "/summary.json"));

  SECTION("resumed at the stop") {
    const mt::TrainResult rest = train(cfg, stop, mt::ResumeMode::Auto, -1);
    CHECK(rest.outcome == mt::TrainOutcome::Finished);
    CHECK(rest.step == 20);
  }
  SECTION("dead after step 11 with the newest checkpoint at step 8: resumed from 8, lines 9..11 cut") {
    fs::remove_all(checkpoint_of(stop, 11));
    REQUIRE(metrics_numbers(stop).back()["step"] == 11);
    const mt::TrainResult to9 = train(cfg, stop, mt::ResumeMode::Auto, 9);  // resumes from 8
    CHECK(to9.step == 9);
    std::vector<json> cut = metrics_numbers(stop);
    REQUIRE(cut.back()["step"] == 9);  // steps 10 and 11 of the dead run are gone
    CHECK(std::vector<json>(want.begin(), want.begin() + std::ptrdiff_t(cut.size())) == cut);
    const mt::TrainResult rest = train(cfg, stop, mt::ResumeMode::Auto, -1);
    CHECK(rest.step == 20);
  }
  // The same lines (every logged number but timings), the same loader position and step, the same
  // weights and Adam moments to the byte.
  CHECK(metrics_numbers(stop) == want);
  const json state = mt::verify_checkpoint(checkpoint_of(stop, 20));
  CHECK(state["loader"] == final_state["loader"]);
  CHECK(state["step"] == 20);
  for (const char* f : {"model-tp0-ep0.safetensors", "optimizer-tp0-ep0.safetensors"}) {
    INFO(f);
    CHECK(mt::test::read_file(checkpoint_of(stop, 20) + "/" + f) ==
          mt::test::read_file(checkpoint_of(dir + "/whole", 20) + "/" + f));
  }
  // A resume under another manifest is refused, naming the key.
  CHECK_THROWS_WITH(train(tiny_run(cfg.data.train, "train.seed=4"), stop, mt::ResumeMode::Auto, -1),
                    Catch::Contains("train.seed (checkpoint 3, now 4)"));
}

TEST_CASE("a stop that one rank asks for stops every rank at the same step, with one checkpoint", "[trainer]") {
  const std::string dir = mt::test::scratch_dir("trainer_agreed_stop");
  const mt::RunConfig cfg = tiny_run(tiny_dataset(dir));
  mt::test::ThreadWorld world = mt::test::thread_grids(1, 1, 2);  // dp 2
  std::vector<mt::TrainResult> results(2);
  world.run([&](int r) {
    mt::TrainOptions o;
    o.out_dir = dir + "/run";
    o.device_name = "cpu";
    int asked = 0;
    o.should_stop = [&asked, r] { return r == 1 && ++asked == 3; };  // rank 1 alone, after step 3
    mt::CpuOps<float> ops;
    results[size_t(r)] = mt::train(cfg, o, ops, *world.grids[size_t(r)]);
  });
  for (const mt::TrainResult& res : results) {
    CHECK(res.outcome == mt::TrainOutcome::Interrupted);
    CHECK(res.step == 3);
  }
  CHECK(mt::latest_checkpoint(dir + "/run") == checkpoint_of(dir + "/run", 3));
  CHECK(mt::verify_checkpoint(checkpoint_of(dir + "/run", 3))["step"] == 3);
  CHECK(metrics_numbers(dir + "/run").back()["step"] == 3);
}
