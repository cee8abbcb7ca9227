// Why: training reads token files written by us, by llm.c and by Megatron-LM. Each reader must give
// back exactly the tokens the documented layout holds, and a corrupt file must be one InputError line
// naming the file, never a crash or silently wrong tokens. The files are written here byte by byte.
#include <catch2/catch.hpp>

#include <filesystem>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "data/shards.h"
#include "engine/core/check.h"
#include "engine/run/config.h"
#include "tests/test_data_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using mt::data::Split;
using mt::data::TokenDataset;
using mt::test::all_tokens;

namespace {

using mt::test::input_error;

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("readers: llm.c v1 (uint16) and v7 (uint32) shards read back", "[data][shards]") {
  const std::string dir = mt::test::scratch_dir("shards_native");
  std::vector<uint32_t> a = {0, 1, 65535, 300, 7}, b(70);
  std::iota(b.begin(), b.end(), 65500);  // beyond uint16
  mt::test::write_bytes(dir + "/a.bin", mt::test::native_shard(a, 1));
  mt::test::write_bytes(dir + "/b.bin", mt::test::native_shard(b, 7));

  TokenDataset da = mt::data::open_dataset(dir + "/a.bin", Split::Train, 0);
  REQUIRE(da.shards.size() == 1);
  CHECK(da.shards[0].format == mt::data::ShardFormat::NativeV1);
  CHECK(da.shards[0].type == mt::data::TokenType::U16);
  CHECK(all_tokens(da) == std::vector<int32_t>(a.begin(), a.end()));
  CHECK(da.scan() == 65535);
  CHECK(da.characters() == -1);

  TokenDataset db = mt::data::open_dataset(dir + "/b.bin", Split::Train, 100000);
  CHECK(db.shards[0].format == mt::data::ShardFormat::NativeV7);
  CHECK(all_tokens(db) == std::vector<int32_t>(b.begin(), b.end()));
  // A range in the middle.
  std::vector<int32_t> mid(3);
  db.read(0, 10, 3, mid.data());
  CHECK(mid == std::vector<int32_t>{65510, 65511, 65512});

  // A glob gives both, sorted by name.
  TokenDataset both = mt::data::open_dataset(dir + "/*.bin", Split::Train, 100000);
  REQUIRE(both.shards.size() == 2);
  CHECK(both.total_tokens() == int64_t(a.size() + b.size()));
  CHECK(both.shards[0].path == dir + "/a.bin");
}

TEST_CASE("readers: a Megatron-LM indexed dataset reads back as one token stream", "[data][shards]") {
  const std::string dir = mt::test::scratch_dir("shards_megatron");
  const std::vector<std::vector<int64_t>> seqs = {{5, 6, 7}, {}, {8, 9000, 10, 11}, {65535}};
  std::vector<int32_t> expect;
  for (const auto& q : seqs) expect.insert(expect.end(), q.begin(), q.end());
  mt::test::write_megatron(dir + "/u16", seqs, 8);
  mt::test::write_megatron(dir + "/i32", {{1, 2}, {70000, 3}}, 4);

  for (const std::string& spec : {dir + "/u16", dir + "/u16.bin", dir + "/u16.idx"}) {
    INFO(spec);
    TokenDataset ds = mt::data::open_dataset(spec, Split::Train, 65536);
    REQUIRE(ds.shards.size() == 1);
    CHECK(ds.shards[0].format == mt::data::ShardFormat::Megatron);
    CHECK(ds.shards[0].type == mt::data::TokenType::U16);
    CHECK(ds.shards[0].path == dir + "/u16.bin");
    CHECK(all_tokens(ds) == expect);
  }
  TokenDataset i32 = mt::data::open_dataset(dir + "/i32", Split::Train, 0);
  CHECK(i32.shards[0].type == mt::data::TokenType::I32);
  CHECK(all_tokens(i32) == std::vector<int32_t>{1, 2, 70000, 3});
  // A glob over the folder takes each .bin/.idx pair once.
  TokenDataset g = mt::data::open_dataset(dir + "/*", Split::Train, 0);
  REQUIRE(g.shards.size() == 2);
  CHECK(g.total_tokens() == int64_t(expect.size()) + 4);
}

TEST_CASE("readers: raw:FILE is headerless uint16", "[data][shards]") {
  const std::string dir = mt::test::scratch_dir("shards_raw");
  std::string bytes;
  for (uint16_t t : {3, 1, 4, 1, 5, 9, 2, 6}) mt::test::put<uint16_t>(&bytes, t);
  mt::test::write_bytes(dir + "/train.bin", bytes);
  TokenDataset ds = mt::data::open_dataset("raw:" + dir + "/train.bin", Split::Train, 10);
  CHECK(ds.shards[0].format == mt::data::ShardFormat::RawU16);
  CHECK(all_tokens(ds) == std::vector<int32_t>{3, 1, 4, 1, 5, 9, 2, 6});
  // Without raw: the same file is not a native shard.
  CHECK(has(input_error([&] { mt::data::open_dataset(dir + "/train.bin", Split::Train, 10); }), "raw:"));
  // And raw with a glob.
  CHECK(mt::data::open_dataset("raw:" + dir + "/*.bin", Split::Train, 10).total_tokens() == 8);
  // A token >= vocab is refused at read time, naming the position.
  TokenDataset small = mt::data::open_dataset("raw:" + dir + "/train.bin", Split::Train, 9);
  std::vector<int32_t> out(8);
  std::string m = input_error([&] { small.read(0, 0, 8, out.data()); });
  CHECK(has(m, "token 9 at position 5"));
  CHECK(has(m, dir + "/train.bin"));
  small.read(0, 0, 5, out.data());  // the tokens before it are fine
}

TEST_CASE("readers: corrupt inputs are one-line InputErrors naming the file", "[data][shards]") {
  const std::string dir = mt::test::scratch_dir("shards_corrupt");
  const std::vector<uint32_t> tokens = {1, 2, 3, 4, 5, 6};
  auto open = [&](const std::string& spec, int vocab = 0) {
    return input_error([&] { mt::data::open_dataset(spec, Split::Train, vocab).scan(); });
  };
  struct Case {
    const char* name;
    std::string bytes;
    const char* says;
  };
  std::string good = mt::test::native_shard(tokens, 1);
  std::vector<Case> cases = {
      {"magic.bin", mt::test::native_shard(tokens, 1, 12345), "bad magic 12345"},
      {"eval.bin", mt::test::native_shard(tokens, 1, 20240522), "eval file"},
      {"short.bin", good.substr(0, good.size() - 1), "does not match its header"},
      {"long.bin", good + "xy", "does not match its header"},
      {"count.bin", mt::test::native_shard(tokens, 1, -1, 7), "does not match its header"},
      {"header.bin", good.substr(0, 100), "truncated header"},
      {"tiny.bin", good.substr(0, 2), "truncated"},
      {"empty.bin", "", "truncated"},
      {"version.bin", [] { auto s = mt::test::native_shard({1}, 1); s[4] = 7; return s; }(), "version 7"},
      {"v7count.bin", mt::test::native_shard(tokens, 7, -1, -5), "negative token count"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    mt::test::write_bytes(dir + "/" + c.name, c.bytes);
    std::string m = open(dir + "/" + c.name);
    INFO(m);
    CHECK(has(m, c.says));
    CHECK(has(m, dir + "/" + c.name));
  }
  // Token ids against the vocab: scan() checks them all.
  mt::test::write_bytes(dir + "/ok.bin", good);
  CHECK(open(dir + "/ok.bin", 7) == "");
  CHECK(has(open(dir + "/ok.bin", 6), "token 6 at position 5 is >= the vocab size 6"));
  CHECK(has(open(dir + "/missing.bin"), "no such file"));
  CHECK(has(open(dir + "/none_*.bin"), "no file matches"));
  CHECK(open("raw:" + dir + "/tiny.bin") == "");  // two bytes are one raw token
  mt::test::write_bytes(dir + "/odd.raw", "abc");
  CHECK(has(open("raw:" + dir + "/odd.raw"), "odd size 3"));
}

TEST_CASE("readers: corrupt Megatron-LM indices are one-line InputErrors", "[data][shards]") {
  const std::string dir = mt::test::scratch_dir("shards_megatron_corrupt");
  mt::test::write_megatron(dir + "/good", {{1, 2, 3}, {4, 5}}, 8);
  const std::string idx = mt::test::read_file(dir + "/good.idx"), bin = mt::test::read_file(dir + "/good.bin");
  auto variant = [&](const std::string& name, const std::string& i, const std::string& b) {
    mt::test::write_bytes(dir + "/" + name + ".idx", i);
    mt::test::write_bytes(dir + "/" + name + ".bin", b);
    return input_error([&] { mt::data::open_dataset(dir + "/" + name, Split::Train, 0); });
  };
  CHECK(variant("ok", idx, bin) == "");
  CHECK(has(variant("magic", "MMIDIDY" + idx.substr(7), bin), "bad magic"));
  CHECK(has(variant("trunc_header", idx.substr(0, 20), bin), "truncated header"));
  CHECK(has(variant("trunc", idx.substr(0, idx.size() - 9), bin), "truncated"));
  CHECK(has(variant("trunc", idx.substr(0, idx.size() - 9), bin), dir + "/trunc.idx"));
  CHECK(has(variant("extra", idx + "abc", bin), "does not match its header"));
  CHECK(has(variant("binsize", idx, bin + "z"), "does not match"));
  CHECK(has(variant("binsize", idx, bin + "z"), dir + "/binsize.bin"));
  std::string v2 = idx;
  v2[9] = 2;
  CHECK(has(variant("version", v2, bin), "unsupported version 2"));
  std::string f32 = idx;
  f32[17] = 7;
  CHECK(has(variant("float", f32, bin), "float32"));
  std::string code = idx;
  code[17] = 42;
  CHECK(has(variant("code", code, bin), "unknown dtype code 42"));
  std::string ptr = idx;
  ptr[34 + 8 + 8] = 9;  // the second sequence's byte offset (after 2 int32 lengths and one int64)
  CHECK(has(variant("pointer", ptr, bin), "sequence 1 starts at byte"));
  std::string huge = idx;
  huge[18 + 7] = 0x7F;  // an absurd sequence count
  CHECK(has(variant("huge", huge, bin), "implausible counts"));
  // An .idx without its .bin.
  mt::test::write_bytes(dir + "/lonely.idx", idx);
  CHECK(has(input_error([&] { mt::data::open_dataset(dir + "/lonely.idx", Split::Train, 0); }), "lonely.bin"));
}

TEST_CASE("readers: index.json folders give their splits and are checked against the shards", "[data][shards]") {
  const std::string dir = mt::test::scratch_dir("shards_index");
  mt::test::write_bytes(dir + "/t.bin", mt::test::native_shard({1, 2, 3, 4}, 1));
  mt::test::write_bytes(dir + "/v.bin", mt::test::native_shard({5, 6}, 1));
  mt::json index = {{"format", "moetrain"}, {"version", 1}, {"tokenizer", {{"type", "byte"}}}, {"vocab_size", 256},
                    {"splits", {{"train", {{{"file", "t.bin"}, {"tokens", 4}, {"bytes", 4}, {"characters", 3}}}},
                                {"val", {{{"file", "v.bin"}, {"tokens", 2}, {"bytes", 2}, {"characters", 2}}}}}}};
  mt::test::write_file(dir + "/index.json", index.dump());
  TokenDataset train = mt::data::open_dataset(dir, Split::Train, 256);
  TokenDataset val = mt::data::open_dataset(dir, Split::Val, 0);
  CHECK(all_tokens(train) == std::vector<int32_t>{1, 2, 3, 4});
  CHECK(all_tokens(val) == std::vector<int32_t>{5, 6});
  CHECK(train.characters() == 3);
  CHECK(train.text_bytes() == 4);
  CHECK(train.vocab_size == 256);
  CHECK(train.tokenizer.kind == mt::data::TokenizerInfo::Kind::Byte);

  auto error_with = [&](const std::function<void(mt::json&)>& edit) {
    mt::json j = index;
    edit(j);
    mt::test::write_file(dir + "/index.json", j.dump());
    return input_error([&] { mt::data::open_dataset(dir, Split::Train, 256); });
  };
  CHECK(has(error_with([](mt::json& j) { j["splits"]["train"][0]["tokens"] = 5; }), "index.json says 5"));
  CHECK(has(error_with([](mt::json& j) { j["vocab_size"] = 300; }), "larger than the model's vocab_size 256"));
  CHECK(has(error_with([](mt::json& j) { j["tokenizer"]["type"] = "wordpiece"; }), "tokenizer.type"));
  CHECK(has(error_with([](mt::json& j) { j["format"] = "other"; }), "format"));
  CHECK(has(error_with([](mt::json& j) { j["splits"]["train"][0]["characters"] = -3; }), "characters"));
  CHECK(has(error_with([](mt::json& j) { j["splits"]["train"][0]["file"] = "gone.bin"; }), "gone.bin"));
  mt::test::write_file(dir + "/index.json", "{ not json");
  CHECK(has(input_error([&] { mt::data::open_dataset(dir, Split::Train, 256); }), "index.json"));
  fs::remove(dir + "/index.json");
  CHECK(has(input_error([&] { mt::data::open_dataset(dir, Split::Train, 256); }), "without index.json"));
}
