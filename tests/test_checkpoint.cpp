// Why: checkpoints are the contract between a run and everything after it (resume at another layout,
// eval, export). Here, without MPI (ranks are threads, tests/thread_grid.h): weights and Adam moments
// saved at one layout load float-exact at another, each rank's slice checked against the full tensor
// by an index rule written here (a dimension smaller than the full one is split over ep for the experts'
// first dimension, over tp otherwise: Megatron's column / row split); every element is stored once; a
// truncated or damaged file is refused with a message naming it; and a save that died half-way (its
// temporary folder left behind) leaves the previous checkpoint as the latest.
#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "comm/grid.h"
#include "engine/core/check.h"
#include "engine/core/io.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/run/checkpoint.h"
#include "engine/run/config.h"
#include "engine/run/safetensors.h"
#include "tests/test_util.h"
#include "tests/thread_grid.h"

namespace fs = std::filesystem;
using mt::json;

namespace {

// Layer 0 dense, layer 1 MoE with a shared expert; every split dimension divides by 2.
mt::ModelConfig moe_config() {
  json j = {{"model", {{"vocab_size", 10}, {"d_model", 4}, {"n_layers", 2}, {"n_heads", 2}, {"head_dim", 2},
                       {"d_ffn", 6}, {"seq_len", 4},
                       {"moe", {{"layout", "1dense"}, {"n_experts", 4}, {"top_k", 2}, {"d_expert", 4}, {"d_shared", 2}}}}},
            {"train", {{"tokens", 1000}}}};
  return mt::parse_run(j, "test", ".").model;
}

// One rank's host buffers (weights and both moments, dense and expert).
struct Buffers {
  std::vector<float> dense, expert, dense_m, dense_v, expert_m, expert_v;
  explicit Buffers(const mt::ParamLayout& l)
      : dense(l.dense.numel), expert(l.expert.numel), dense_m(l.dense.numel), dense_v(l.dense.numel),
        expert_m(l.expert.numel), expert_v(l.expert.numel) {}
  mt::CheckpointBuffers view() const {
    return {dense.data(), expert.data(), dense_m.data(), dense_v.data(), expert_m.data(), expert_v.data()};
  }
  mt::CheckpointBuffersMut view_mut() {
    return {dense.data(), expert.data(), dense_m.data(), dense_v.data(), expert_m.data(), expert_v.data()};
  }
  std::vector<const std::vector<float>*> all() const { return {&dense, &expert, &dense_m, &dense_v, &expert_m, &expert_v}; }
};

// Full buffers whose every element differs (exact in fp32): a misplaced slice cannot go unseen.
Buffers full_values(const mt::ParamLayout& full) {
  Buffers b(full);
  float base = 0.25f;
  for (const std::vector<float>* v : b.all()) {
    auto& x = const_cast<std::vector<float>&>(*v);
    for (size_t i = 0; i < x.size(); ++i) x[i] = base + float(i);
    base += 100000.f;
  }
  return b;
}

// Each local element of every tensor equals the full tensor's element at the slice this rank owns.
void check_slices(const mt::ParamTable& local, const mt::ParamTable& full, const std::vector<float>& lv,
                  const std::vector<float>& fv, const mt::ShardSpec& sh, bool experts) {
  REQUIRE(local.tensors.size() == full.tensors.size());
  for (size_t k = 0; k < local.tensors.size(); ++k) {
    const mt::TensorInfo& t = local.tensors[k];
    const mt::TensorInfo& f = full.tensors[k];
    REQUIRE(t.name == f.name);
    const size_t nd = f.shape.size();
    std::vector<int64_t> start(nd, 0);
    for (size_t d = 0; d < nd; ++d) {
      if (t.shape[d] == f.shape[d]) continue;
      const int rank = experts && d == 0 ? sh.ep_rank : sh.tp_rank;
      const int parts = experts && d == 0 ? sh.ep_size : sh.tp_size;
      REQUIRE(t.shape[d] * parts == f.shape[d]);
      start[d] = t.shape[d] * rank;
    }
    std::vector<int64_t> idx(nd, 0);
    for (size_t i = 0; i < t.numel; ++i) {
      int64_t flat = 0;
      for (size_t d = 0; d < nd; ++d) flat = flat * f.shape[d] + idx[d] + start[d];
      if (lv[t.offset + i] != fv[f.offset + size_t(flat)]) {
        FAIL_CHECK(t.name << " element " << i << " of the rank (tp " << sh.tp_rank << ", ep " << sh.ep_rank
                          << "): " << lv[t.offset + i] << ", the full tensor has " << fv[f.offset + size_t(flat)]);
        return;
      }
      for (int d = int(nd) - 1; d >= 0 && ++idx[size_t(d)] == t.shape[size_t(d)]; --d) idx[size_t(d)] = 0;
    }
  }
}

std::string step_dir(const std::string& run, int step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08d", step);
  return run + "/checkpoints/" + buf;
}

// A scratch run folder and the full (tp 1) layout of moe_config() with distinct values, saved by one
// rank as `save(step)` does.
struct OneRankRun {
  const std::string dir;
  const mt::ModelConfig cfg = moe_config();
  const mt::ParamLayout full = mt::build_param_layout(cfg, {});
  const Buffers want = full_values(full);
  mt::CpuOps<float> ops;
  std::unique_ptr<mt::ProcessGrid> grid = mt::make_grid(1, 1, ops.device());

  explicit OneRankRun(const std::string& name) : dir(mt::test::scratch_dir(name)) {}
  void save(int step) { mt::save_checkpoint(dir, step, json::object(), *grid, full, want.view(), 2); }
};

}  // namespace

TEST_CASE("checkpoints reshard: saved at tp 1 and at tp 2 x ep 2, loaded float-exact at another layout",
          "[checkpoint]") {
  OneRankRun a("ckpt_reshard");
  a.save(1);
  const mt::ModelConfig& cfg = a.cfg;
  const mt::ParamLayout& full = a.full;
  const Buffers& want = a.want;  // the full tensors, saved at tp 1

  // tp 2 x dp 2 with ep 2 (four ranks): each loads its slices from the tp-1 checkpoint, checked
  // element by element, and all save them together.
  mt::test::ThreadWorld world = mt::test::thread_grids(2, 2, 4);
  world.run([&](int r) {
    const mt::ProcessGrid& g = *world.grids[size_t(r)];
    const mt::ShardSpec sh{g.tp_rank, g.tp_size, g.ep_rank, g.ep_size};
    const mt::ParamLayout layout = mt::build_param_layout(cfg, sh);
    Buffers mine(layout);
    mt::load_checkpoint(step_dir(a.dir, 1), layout, mine.view_mut());
    check_slices(layout.dense, full.dense, mine.dense, want.dense, sh, false);
    check_slices(layout.dense, full.dense, mine.dense_v, want.dense_v, sh, false);
    check_slices(layout.expert, full.expert, mine.expert, want.expert, sh, true);
    check_slices(layout.expert, full.expert, mine.expert_m, want.expert_m, sh, true);
    mt::save_checkpoint(a.dir + "/b", 1, json::object(), g, layout, mine.view(), 2);
  });

  // The four-rank checkpoint: four shards per kind, every element of the model stored once.
  const std::string b = step_dir(a.dir + "/b", 1);
  const json state = mt::verify_checkpoint(b);
  CHECK(state["layout"] == json{{"world", 4}, {"tp", 2}, {"ep", 2}, {"dp", 2}});
  size_t stored = 0;
  for (const char* tag : {"tp0-ep0", "tp0-ep1", "tp1-ep0", "tp1-ep1"}) {
    mt::safetensors::File f(b + "/model-" + std::string(tag) + ".safetensors");
    for (const auto& [name, e] : f.entries()) stored += size_t(e.numel());
  }
  CHECK(stored == full.dense.numel + full.expert.numel);

  // Back at tp 1: float-exact, weights and moments.
  Buffers back(full);
  mt::load_checkpoint(b, full, back.view_mut());
  const auto got = back.all(), expect = want.all();
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("buffer " << i << " (dense, expert, then the moments)");
    CHECK(*got[i] == *expect[i]);
  }
  // And at a third layout, tp 1 x ep 2 (rank 1): the slices of the full tensors.
  const mt::ShardSpec third{0, 1, 1, 2};
  const mt::ParamLayout l3 = mt::build_param_layout(cfg, third);
  std::vector<float> dense(l3.dense.numel), expert(l3.expert.numel);
  mt::load_weights(b, l3, dense.data(), expert.data());
  check_slices(l3.dense, full.dense, dense, want.dense, third, false);
  check_slices(l3.expert, full.expert, expert, want.expert, third, true);
}

TEST_CASE("a truncated or damaged checkpoint file is refused with a message naming it", "[checkpoint]") {
  OneRankRun run("ckpt_corrupt");
  run.save(1);
  const std::string& dir = run.dir;
  const mt::ParamLayout& full = run.full;
  const Buffers& want = run.want;
  const std::string ck = step_dir(dir, 1);
  std::vector<float> dense(full.dense.numel), expert(full.expert.numel);
  mt::load_weights(ck, full, dense.data(), expert.data());
  CHECK(dense == want.dense);

  SECTION("a shard cut short") {
    const std::string victim = ck + "/optimizer-tp0-ep0.safetensors";
    fs::resize_file(victim, fs::file_size(victim) - 7);
    CHECK_THROWS_AS(mt::verify_checkpoint(ck), mt::InputError);
    CHECK_THROWS_WITH(mt::verify_checkpoint(ck), Catch::Contains("optimizer-tp0-ep0.safetensors does not match its recorded size"));
    json st;
    CHECK_THROWS_WITH(mt::latest_intact_checkpoint(dir, &st, false), Catch::Contains("optimizer-tp0-ep0.safetensors"));
  }
  SECTION("one byte changed in place") {
    const std::string victim = ck + "/model-tp0-ep0.safetensors";
    std::string bytes = mt::test::read_file(victim);
    bytes[bytes.size() - 3] ^= 0x10;
    mt::test::write_file(victim, bytes);
    CHECK_THROWS_AS(mt::load_weights(ck, full, dense.data(), expert.data()), mt::InputError);
    CHECK_THROWS_WITH(mt::load_weights(ck, full, dense.data(), expert.data()),
                      Catch::Contains("model-tp0-ep0.safetensors does not match its recorded size and CRC-32"));
  }
  SECTION("a single-file export cut short") {
    const std::string file = dir + "/w.safetensors";
    mt::export_checkpoint(ck, file);
    mt::load_weights(file, full, dense.data(), expert.data());
    CHECK(expert == want.expert);
    fs::resize_file(file, fs::file_size(file) - 5);
    CHECK_THROWS_AS(mt::load_weights(file, full, dense.data(), expert.data()), mt::InputError);
    CHECK_THROWS_WITH(mt::load_weights(file, full, dense.data(), expert.data()), Catch::StartsWith(file + ": "));
  }
}

TEST_CASE("a save that died half-way leaves the previous checkpoint as the latest, and the next save cleans up",
          "[checkpoint]") {
  OneRankRun run("ckpt_atomic");
  run.save(1);
  const std::string& dir = run.dir;

  // What a crash during step 2's save leaves: its temporary folder with a part of a shard and no
  // state.json. And a step folder without state.json (copied by hand, half-way).
  const std::string tmp = dir + "/checkpoints/.step_00000002.tmp";
  const std::string shard = mt::test::read_file(step_dir(dir, 1) + "/model-tp0-ep0.safetensors");
  mt::test::write_file(tmp + "/model-tp0-ep0.safetensors", shard.substr(0, shard.size() / 2));
  mt::test::write_file(step_dir(dir, 3) + "/model-tp0-ep0.safetensors", shard);
  CHECK(mt::latest_checkpoint(dir) == step_dir(dir, 1));
  json st;
  CHECK(mt::latest_intact_checkpoint(dir, &st, false) == step_dir(dir, 1));
  CHECK(st["step"] == 1);

  // The next save of step 2 replaces the leftover and becomes the latest; with keep 2, a third
  // complete save removes the oldest.
  run.save(2);
  CHECK_FALSE(fs::exists(tmp));
  CHECK(mt::latest_checkpoint(dir) == step_dir(dir, 2));
  CHECK(mt::verify_checkpoint(step_dir(dir, 2))["step"] == 2);
  fs::remove_all(step_dir(dir, 3));
  run.save(4);
  CHECK_FALSE(fs::exists(step_dir(dir, 1)));
  CHECK(fs::exists(step_dir(dir, 2) + "/state.json"));
  CHECK(mt::latest_checkpoint(dir) == step_dir(dir, 4));
}
