// Why: issue 16's reader failures at the unit level, where a forged file is easy to build: checkpoint
// slice metadata and ranks, state.json's checksum and types, safetensors header types, index.json
// types, the corrupt-newest fallback of --resume auto, the run-folder lock and the checked writer.
// Each case once crashed, read out of bounds or leaked a raw library message.
#include <unistd.h>
#include <zlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "comm/grid.h"
#include "data/shards.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/core/check.h"
#include "engine/core/io.h"
#include "engine/run/checkpoint.h"
#include "engine/run/run_dir.h"
#include "engine/run/safetensors.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using mt::json;

namespace {

const float kA[6] = {1, 2, 3, 4, 5, 6};

// A one-shard checkpoint folder holding tensor "a" [2, 3] with slice metadata `slices`, and a valid
// state.json (both file sums and its own CRC-32), at dir/checkpoints/step_<step>.
std::string make_checkpoint(const std::string& run, int step, const std::string& slices) {
  const std::string dir = run + "/checkpoints/step_0000000" + std::to_string(step);
  fs::create_directories(dir);
  const std::string shard = dir + "/model-tp0-ep0.safetensors";
  mt::safetensors::write(shard, {{"a", mt::DType::F32, {2, 3}, kA}}, {{"format", "pt"}, {"moetrain.slices", slices}});
  std::ifstream in(shard, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  json st = {{"step", step}, {"files", {{"model-tp0-ep0.safetensors", {{"bytes", bytes.size()}, {"crc32", 0}}}}}};
  st["files"]["model-tp0-ep0.safetensors"]["crc32"] =
      uint32_t(crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), uInt(bytes.size())));
  st["crc32"] = mt::state_crc(st, "state.json");
  mt::test::write_file(dir + "/state.json", st.dump(2));
  return dir;
}

using mt::test::input_error;

}  // namespace

TEST_CASE("checkpoint slices: an empty start and a rank mismatch are input errors, not reads out of bounds",
          "[reliability]") {
  const std::string run = mt::test::scratch_dir("rel_slices");
  const std::string good = R"({"a": {"global_shape": [2, 3], "start": [0, 0]}})";
  const std::string ok = make_checkpoint(run, 1, good);
  mt::export_checkpoint(ok, run + "/out.safetensors");
  CHECK(mt::safetensors::File(run + "/out.safetensors").entry("a").numel() == 6);
  const std::string empty = make_checkpoint(run, 2, R"({"a": {"global_shape": [2, 3], "start": []}})");
  CHECK_THAT(input_error([&] { mt::export_checkpoint(empty, run + "/x.safetensors"); }),
             Catch::Contains("moetrain.slices[\"a\"].start: must be an array of 2 integers"));
  const std::string rank = make_checkpoint(run, 3, R"({"a": {"global_shape": [6], "start": [0]}})");
  CHECK_THAT(input_error([&] { mt::export_checkpoint(rank, run + "/x.safetensors"); }),
             Catch::Contains("global_shape: must be an array of 2 integers"));
  const std::string outside = make_checkpoint(run, 4, R"({"a": {"global_shape": [2, 3], "start": [1, 0]}})");
  CHECK_THAT(input_error([&] { mt::export_checkpoint(outside, run + "/x.safetensors"); }),
             Catch::Contains("lies outside the global shape"));
  const std::string types = make_checkpoint(run, 5, R"({"a": {"global_shape": "x", "start": {}}})");
  CHECK_THAT(input_error([&] { mt::export_checkpoint(types, run + "/x.safetensors"); }), Catch::Contains("global_shape"));
}

TEST_CASE("state.json is checksummed and typed; --resume auto skips a corrupt newest checkpoint", "[reliability]") {
  const std::string run = mt::test::scratch_dir("rel_state");
  const std::string good = R"({"a": {"global_shape": [2, 3], "start": [0, 0]}})";
  make_checkpoint(run, 1, good);
  const std::string newest = make_checkpoint(run, 2, good);
  json st;
  CHECK(mt::latest_intact_checkpoint(run, &st, false) == newest);
  CHECK(st["step"] == 2);
  CHECK_FALSE(st.contains("crc32"));
  // "step": 1e15 written by hand: the checksum no longer matches.
  std::string text = mt::read_text(newest + "/state.json");
  text.replace(text.find("\"step\": 2"), 9, "\"step\": 1e15");
  mt::test::write_file(newest + "/state.json", text);
  CHECK_THAT(input_error([&] { mt::verify_checkpoint(newest); }), Catch::Contains("CRC-32 does not match"));
  CHECK(mt::latest_intact_checkpoint(run, &st, false) == run + "/checkpoints/step_00000001");
  CHECK(st["step"] == 1);
  // Wrong types with a matching checksum: one line naming the file, no library message.
  json forged = {{"step", "two"}, {"files", {{"model-tp0-ep0.safetensors", {{"bytes", "x"}, {"crc32", 1}}}}}};
  forged["crc32"] = mt::state_crc(forged, "state.json");
  mt::test::write_file(newest + "/state.json", forged.dump());
  CHECK_THAT(input_error([&] { mt::verify_checkpoint(newest); }), Catch::Contains("state.json: corrupt checkpoint state"));
  forged = {{"step", 2}, {"files", {{"../x", {{"bytes", 1}, {"crc32", 1}}}}}};
  forged["crc32"] = mt::state_crc(forged, "state.json");
  mt::test::write_file(newest + "/state.json", forged.dump());
  CHECK_THAT(input_error([&] { mt::verify_checkpoint(newest); }), Catch::Contains("is not a file name"));
  mt::test::write_file(newest + "/state.json", std::string(100000, '{'));
  CHECK_THAT(input_error([&] { mt::verify_checkpoint(newest); }), Catch::Contains("nested deeper"));
  // When no checkpoint verifies, the newest one's reason is the error.
  fs::remove_all(run + "/checkpoints/step_00000001");
  CHECK_THAT(input_error([&] { mt::latest_intact_checkpoint(run, &st, false); }), Catch::Contains("step_00000002"));
}

TEST_CASE("safetensors headers of the wrong types are one-line input errors", "[reliability]") {
  const std::string dir = mt::test::scratch_dir("rel_safetensors");
  auto file_with = [&](const std::string& header) {
    std::string h = header;
    uint64_t n = h.size();
    std::string bytes(reinterpret_cast<const char*>(&n), 8);
    mt::test::write_file(dir + "/t.safetensors", bytes + h + std::string(24, '\0'));
    return input_error([&] { mt::safetensors::File f(dir + "/t.safetensors"); });
  };
  CHECK(file_with(R"({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}})") == "");
  CHECK_THAT(file_with(R"({"a": {"dtype": 5, "shape": [2, 3], "data_offsets": [0, 24]}})"), Catch::Contains("dtype must be a string"));
  CHECK_THAT(file_with(R"({"a": {"dtype": "F32", "shape": 6, "data_offsets": [0, 24]}})"), Catch::Contains("shape must be an array"));
  CHECK_THAT(file_with(R"({"a": {"dtype": "F32", "shape": [6], "data_offsets": "x"}})"), Catch::Contains("data_offsets must be"));
  CHECK_THAT(file_with(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})"),
             Catch::Contains("shape"));
  CHECK_THAT(file_with(std::string(1000, '[')), Catch::Contains("nested deeper"));
}

TEST_CASE("index.json of the wrong types is a one-line input error naming the file", "[reliability]") {
  const std::string dir = mt::test::scratch_dir("rel_index");
  for (const char* text : {R"({"format": 7, "version": 1})", R"({"format": "moetrain", "version": "1"})",
                           R"({"format": "moetrain", "version": 1, "tokenizer": 5})",
                           R"({"format": "moetrain", "version": 1, "tokenizer": {"type": 3}})",
                           R"({"format": "moetrain", "version": 1, "tokenizer": {"type": "byte"}, "vocab_size": 256, "splits": []})"}) {
    INFO(text);
    mt::test::write_file(dir + "/index.json", text);
    const std::string msg = input_error([&] { mt::data::open_dataset(dir, mt::data::Split::Train, 0); });
    CHECK_THAT(msg, Catch::StartsWith(dir + "/index.json: "));
  }
}

TEST_CASE("one run per folder: a second lock names the holder's PID", "[reliability]") {
  const std::string dir = mt::test::scratch_dir("rel_lock");
  mt::RunDirLock first(dir);
  CHECK_THAT(input_error([&] { mt::RunDirLock second(dir); }),
             Catch::Contains("in use by PID " + std::to_string(::getpid())));
  { mt::RunDirLock moved = std::move(first); }  // released with its owner
  mt::RunDirLock again(dir);
}

TEST_CASE("a metrics line that cannot be written is an error, never a silent loss", "[reliability]") {
  const std::string dir = mt::test::scratch_dir("rel_writer");
  {
    mt::CheckedWriter w(dir + "/m.jsonl");
    w.write_line("{\"step\":1}");
    w.write_line("{\"step\":2}");
  }
  CHECK(mt::read_text(dir + "/m.jsonl") == "{\"step\":1}\n{\"step\":2}\n");
  mt::CheckedWriter full("/dev/full");
  CHECK_THROWS_AS(full.write_line("{\"step\":1}"), mt::Error);
}

TEST_CASE("a checkpoint is written only from finite weights and moments; NaN weights do not load", "[reliability]") {
  const std::string run = mt::test::scratch_dir("rel_finite");
  mt::ModelConfig cfg;
  cfg.vocab_size = 16;
  cfg.d_model = 8;
  cfg.n_layers = 1;
  cfg.n_heads = 2;
  cfg.head_dim = 4;
  cfg.d_ffn = 8;
  cfg.seq_len = 4;
  mt::CpuOps<float> ops;
  auto grid = mt::make_grid(1, 1, ops.device());
  const mt::ParamLayout layout = mt::build_param_layout(cfg, {});
  std::vector<float> w(layout.dense.numel, 0.5f), m(w.size(), 0.f), v(w.size(), 1.f);
  mt::CheckpointBuffers bufs{w.data(), nullptr, m.data(), v.data(), nullptr, nullptr};
  mt::save_checkpoint(run, 1, json::object(), *grid, layout, bufs, 5);
  std::vector<float> back(w.size());
  mt::load_weights(run + "/checkpoints/step_00000001", layout, back.data(), nullptr);
  CHECK(back == w);
  v[3] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(mt::save_checkpoint(run, 2, json::object(), *grid, layout, bufs, 5),
                    Catch::Contains("not written: the weights or Adam moments hold NaN or Inf after step 2"));
  CHECK_FALSE(fs::exists(run + "/checkpoints/step_00000002"));
  // A single-file export with a NaN weight: load_weights (eval, init) refuses it.
  mt::export_checkpoint(run + "/checkpoints/step_00000001", run + "/w.safetensors");
  w[0] = std::nanf("");
  mt::safetensors::write(run + "/nan.safetensors", mt::table_refs(layout.dense, w.data()));
  CHECK_THAT(input_error([&] { mt::load_weights(run + "/nan.safetensors", layout, back.data(), nullptr); }),
             Catch::Contains("NaN or Inf"));
}
