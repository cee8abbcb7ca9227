// Why: `moetrain data build` writes what every BPC number divides by: the characters behind each
// shard's tokens. These tests build small corpora (plain and gzip, ASCII and not) and check the
// shards against the text itself: the tokens decode back to it, the counts in index.json are those of
// an independent count, and the val split starts at a line start.
#include <catch2/catch.hpp>
#include <zlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/build.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "engine/core/check.h"
#include "engine/run/config.h"
#include "tests/test_data_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using mt::data::BuildOptions;
using mt::data::Split;

namespace {

// Code points of valid UTF-8, counted from the bit patterns of the lead bytes (1 to 4 bytes long).
int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) {
    const auto b = uint8_t(s[i]);
    i += b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
  }
  return n;
}

// Lines of mixed scripts; line i is distinct so that any slice can be located.
std::string sample_text(int lines) {
  const char* const words[] = {"the", "naïve", "café", "straße", "日本語", "😀", "Ελληνικά", "x", "1234", "—"};
  std::string t;
  for (int i = 0; i < lines; ++i) {
    t += std::to_string(i) + ":";
    for (int w = 0; w < 3 + i % 7; ++w) t += std::string(" ") + words[(i * 3 + w) % 10];
    t += "\n";
  }
  return t;
}

std::string gzip(const std::string& text, const std::string& path) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, text.data(), unsigned(text.size())) == int(text.size()));
  REQUIRE(gzclose(f) == Z_OK);
  return mt::test::read_file(path);
}

// All tokens of a split, decoded with the byte tokenizer.
std::string split_text(const std::string& dir, Split split) {
  mt::data::TokenDataset ds = mt::data::open_dataset(dir, split, 256);
  std::string out;
  for (size_t s = 0; s < ds.shards.size(); ++s) {
    std::vector<int32_t> t(size_t(ds.shards[s].tokens));
    ds.read(s, 0, ds.shards[s].tokens, t.data());
    for (int32_t v : t) out.push_back(char(v));
  }
  return out;
}

mt::data::BuildSummary build(const std::vector<std::string>& inputs, const std::string& out, int64_t val_tokens,
                             int64_t shard_tokens = 100'000'000) {
  return mt::test::build_with(inputs, out, val_tokens, [&](BuildOptions& o) { o.shard_tokens = shard_tokens; });
}

using mt::test::input_error;

}  // namespace

TEST_CASE("build: plain text to shards and index.json with tokens, bytes and characters", "[data][build]") {
  const std::string dir = mt::test::scratch_dir("build_plain");
  const std::string text = sample_text(2000);
  mt::test::write_file(dir + "/in.txt", text);
  int calls = 0;
  BuildOptions o;
  o.inputs = {dir + "/in.txt"};
  o.out_dir = dir + "/ds";
  o.val_tokens = 3000;
  mt::data::BuildSummary s = mt::data::build_dataset(o, [&](const mt::data::BuildProgress& p) {
    ++calls;
    CHECK(p.input_total == int64_t(text.size()));
  });
  CHECK(calls >= 1);
  CHECK(s.warnings.empty());
  CHECK(s.vocab_size == 256);

  const std::string train = split_text(dir + "/ds", Split::Train), val = split_text(dir + "/ds", Split::Val);
  REQUIRE(train + val == text);  // the byte tokens decode back to the text, split in two
  // The val split: at least the tokens asked for, at most twice, from the start of a line.
  CHECK(val.size() >= 3000);
  CHECK(val.size() <= 6000);
  CHECK(train.back() == '\n');

  const mt::json index = mt::read_json_file(dir + "/ds/index.json");
  CHECK(index["format"] == "moetrain");
  CHECK(index["version"] == 1);
  CHECK(index["tokenizer"] == mt::json{{"type", "byte"}});
  CHECK(index["vocab_size"] == 256);
  const mt::json& t0 = index["splits"]["train"][0];
  const mt::json& v0 = index["splits"]["val"][0];
  CHECK(index["splits"]["train"].size() == 1);
  CHECK(t0["file"] == "train_000000.bin");
  CHECK(t0["tokens"] == train.size());
  CHECK(t0["bytes"] == train.size());
  CHECK(t0["characters"] == code_points(train));
  CHECK(v0["tokens"] == val.size());
  CHECK(v0["characters"] == code_points(val));
  CHECK(code_points(train) < int64_t(train.size()));  // the text is not ASCII
  CHECK(s.train.tokens == int64_t(train.size()));
  CHECK(s.train.characters + s.val.characters == code_points(text));
  CHECK(s.val.text_bytes == int64_t(val.size()));
  // The shard itself is llm.c's v1 layout.
  const std::string raw = mt::test::read_file(dir + "/ds/train_000000.bin");
  CHECK(raw.size() == 1024 + 2 * train.size());
  CHECK(raw.substr(0, 12) == mt::test::native_shard({}, 1, -1, int64_t(train.size())).substr(0, 12));
}

TEST_CASE("build: gzip input (one or more members) gives the same shards as plain text", "[data][build]") {
  const std::string dir = mt::test::scratch_dir("build_gzip");
  const std::string a = sample_text(700), b = sample_text(300);
  mt::test::write_file(dir + "/plain.txt", a + b);
  const std::string gz = gzip(a, dir + "/a.gz") + gzip(b, dir + "/b.gz");
  mt::test::write_bytes(dir + "/both.gz", gz);
  build({dir + "/plain.txt"}, dir + "/p", 500);
  build({dir + "/both.gz"}, dir + "/g", 500);
  for (const char* f : {"train_000000.bin", "val_000000.bin", "index.json"})
    CHECK(mt::test::read_file(dir + "/p/" + f) == mt::test::read_file(dir + "/g/" + f));

  // Broken gzip data is one line naming the file.
  mt::test::write_bytes(dir + "/trunc.gz", gz.substr(0, gz.size() / 3));
  std::string m = input_error([&] { build({dir + "/trunc.gz"}, dir + "/t", 10); });
  CHECK(m.find("truncated gzip") != std::string::npos);
  CHECK(m.find(dir + "/trunc.gz") != std::string::npos);
  std::string bad = gz;
  for (size_t i = 40; i < 80; ++i) bad[i] = char(0xFF);
  mt::test::write_bytes(dir + "/bad.gz", bad);
  m = input_error([&] { build({dir + "/bad.gz"}, dir + "/b", 10); });
  CHECK(m.find(dir + "/bad.gz") != std::string::npos);
}

TEST_CASE("build: many shards, several inputs, a character split across a chunk", "[data][build]") {
  const std::string dir = mt::test::scratch_dir("build_shards");
  // Two inputs: the first does not end with a newline, so one is put between them.
  std::string a = sample_text(900);
  a.pop_back();
  const std::string b = sample_text(100);
  mt::test::write_file(dir + "/a.txt", a);
  mt::test::write_file(dir + "/b.txt", b);
  const std::string text = a + "\n" + b;
  mt::data::BuildSummary s = build({dir + "/a.txt", dir + "/b.txt"}, dir + "/ds", 2000, 5000);
  CHECK(s.train.shards == int(((text.size() - size_t(s.val.tokens)) + 4999) / 5000));
  CHECK(s.train.shards >= 4);
  REQUIRE(split_text(dir + "/ds", Split::Train) + split_text(dir + "/ds", Split::Val) == text);
  // Per shard: characters are the lead bytes of its own bytes (a character cut by a shard boundary
  // counts where it starts), so the shards add up to the text's code points.
  const mt::json index = mt::read_json_file(dir + "/ds/index.json");
  int64_t chars = 0, pos = 0;
  for (const mt::json& e : index["splits"]["train"]) {
    const int64_t n = e["tokens"];
    CHECK(n <= 5000);
    int64_t leads = 0;
    for (int64_t i = pos; i < pos + n; ++i) leads += (uint8_t(text[size_t(i)]) & 0xC0) != 0x80;
    CHECK(e["characters"] == leads);
    chars += leads;
    pos += n;
  }
  CHECK(chars + int64_t(index["splits"]["val"][0]["characters"]) == code_points(text));

  // Rebuilding into the same folder with bigger shards removes the stale ones.
  build({dir + "/a.txt", dir + "/b.txt"}, dir + "/ds", 2000, 1'000'000);
  CHECK(fs::exists(dir + "/ds/train_000000.bin"));
  CHECK_FALSE(fs::exists(dir + "/ds/train_000001.bin"));

  // More than one read chunk (4 MiB), with a 4-byte character across the chunk boundary: no invalid
  // UTF-8 is reported and the characters are exact.
  std::string big(size_t(4) << 20, 'a');
  for (size_t i = 100; i < big.size(); i += 1000) big[i] = '\n';
  big.resize((size_t(4) << 20) - 2);
  big += "😀 tail\n" + sample_text(50);
  mt::test::write_file(dir + "/big.txt", big);
  mt::data::BuildSummary g = build({dir + "/big.txt"}, dir + "/big", 1000);
  CHECK(g.warnings.empty());
  CHECK(g.train.characters + g.val.characters == code_points(big));
  CHECK(g.train.tokens + g.val.tokens == int64_t(big.size()));
}

TEST_CASE("build: the default val fraction, invalid UTF-8 and bad options", "[data][build]") {
  const std::string dir = mt::test::scratch_dir("build_options");
  const std::string text = sample_text(3000);
  mt::test::write_file(dir + "/in.txt", text);
  BuildOptions o;
  o.inputs = {dir + "/in.txt"};
  o.out_dir = dir + "/ds";
  mt::data::BuildSummary s = mt::data::build_dataset(o, nullptr);
  const double want = 0.005 * double(text.size());
  CHECK(double(s.val.tokens) >= want);
  CHECK(double(s.val.tokens) <= 2 * want + 1);
  CHECK(split_text(dir + "/ds", Split::Val).front() != '\n');

  // Invalid UTF-8 is a warning (characters then count lead bytes), not an error.
  std::string bad = text;
  bad[50] = char(0xFF);
  bad[51] = char(0x80);
  mt::test::write_file(dir + "/bad.txt", bad);
  o.inputs = {dir + "/bad.txt"};
  o.out_dir = dir + "/bad";
  s = mt::data::build_dataset(o, nullptr);
  REQUIRE(s.warnings.size() == 1);
  CHECK(s.warnings[0].find("2 invalid UTF-8 sequences (the first at byte 50)") != std::string::npos);

  // No line start in the text: the val split begins mid-line, with a warning.
  mt::test::write_file(dir + "/one_line.txt", std::string(1000, 'z'));
  s = build({dir + "/one_line.txt"}, dir + "/one", 100);
  CHECK(s.val.tokens == 100);
  REQUIRE(s.warnings.size() == 1);
  CHECK(s.warnings[0].find("mid-line") != std::string::npos);

  CHECK(input_error([&] { build({dir + "/in.txt"}, dir + "/x", int64_t(text.size())); }).find("leaves no training") !=
        std::string::npos);
  CHECK(input_error([&] { build({dir + "/nope.txt"}, dir + "/x", 10); }).find("nope.txt") != std::string::npos);
  CHECK(input_error([&] { build({dir + "/in.txt"}, dir + "/x", 10, 1); }).find("--shard-tokens") != std::string::npos);
  mt::test::write_file(dir + "/one.txt", "a");
  CHECK(input_error([&] { build({dir + "/one.txt"}, dir + "/x", 0); }).find("need at least 2") != std::string::npos);
  o.inputs = {dir + "/in.txt"};
  o.tokenizer = dir + "/no_tokenizer.json";
  CHECK(input_error([&] { mt::data::build_dataset(o, nullptr); }).find("no_tokenizer.json") != std::string::npos);
}

TEST_CASE("byte tokenizer: every byte round-trips", "[data][tokenizer]") {
  mt::data::Tokenizer tok = mt::data::Tokenizer::byte_level();
  CHECK(tok.vocab_size() == 256);
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(char(b));
  all += "héllo <|endoftext|> wörld";
  std::vector<int32_t> ids;
  tok.encode(all, &ids);
  REQUIRE(ids.size() == all.size());
  for (size_t i = 0; i < all.size(); ++i) REQUIRE(ids[i] == int32_t(uint8_t(all[i])));
  CHECK(tok.decode(ids.data(), ids.size()) == all);
  std::vector<int32_t> prefix;
  CHECK(tok.encode_prefix(all, &prefix) == all.size());
  CHECK(prefix == ids);
  CHECK(tok.token_bytes(256).empty());
}
