// Why: corpora as they come (issue 18): JSON Lines under a text key, in files, folders and globs,
// gzip or zstd, one document per record; malformed lines named by file and line; any number of
// workers giving the same bytes; and a Megatron-LM pair that reads back token for token. The
// expected text is built here from the records themselves, never by the code under test.
#include <catch2/catch.hpp>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "data/build.h"
#include "data/shards.h"
#include "engine/core/check.h"
#include "engine/core/json.h"
#include "tests/test_data_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using mt::data::BuildOptions;
using mt::data::Split;

namespace {

// Documents of mixed scripts and lengths; some end with a newline, some hold one inside.
std::vector<std::string> documents(int n) {
  const char* const words[] = {"the", "naïve", "café", "日本語", "😀", "x", "1234", "—", "\"quoted\"", "tab\t"};
  std::vector<std::string> docs;
  for (int i = 0; i < n; ++i) {
    std::string d = "doc " + std::to_string(i) + ":";
    for (int w = 0; w < 5 + (i * 7) % 40; ++w) d += std::string(" ") + words[(i + w) % 10] + (w % 11 == 10 ? "\n" : "");
    if (i % 3 == 0) d += "\n";
    docs.push_back(d);
  }
  return docs;
}

std::string jsonl(const std::vector<std::string>& docs, size_t from, size_t to) {
  std::string s;
  for (size_t i = from; i < to; ++i) s += mt::json{{"id", i}, {"text", docs[i]}}.dump() + "\n";
  return s;
}

// What the byte-level build holds: documents with a newline between two when the first lacks one.
std::string joined(const std::vector<std::string>& docs) {
  std::string s;
  for (const std::string& d : docs) {
    if (!s.empty() && s.back() != '\n') s += '\n';
    s += d;
  }
  return s;
}

std::string zstd(const std::string& text, int frames) {
  std::string out;
  const size_t step = text.size() / size_t(frames) + 1;
  for (size_t pos = 0; pos < text.size(); pos += step) {
    const size_t n = std::min(step, text.size() - pos);
    std::string f(ZSTD_compressBound(n), '\0');
    const size_t m = ZSTD_compress(f.data(), f.size(), text.data() + pos, n, 3);
    REQUIRE(!ZSTD_isError(m));
    out.append(f.data(), m);
  }
  return out;
}

void write_gzip(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, text.data(), unsigned(text.size())) == int(text.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

std::string all_text(const std::string& dir) {
  std::string s;
  for (Split split : {Split::Train, Split::Val})
    for (int32_t t : mt::test::all_tokens(mt::data::open_dataset(dir, split, 256))) s.push_back(char(t));
  return s;
}

mt::data::BuildSummary build(const std::vector<std::string>& inputs, const std::string& out, int workers = 1,
                             bool megatron = false, size_t piece = size_t(1) << 20) {
  return mt::test::build_with(inputs, out, 1000, [&](BuildOptions& o) {
    o.workers = workers;
    o.megatron = megatron;
    o.piece_bytes = piece;
  });
}

using mt::test::input_error;

}  // namespace

TEST_CASE("corpus: JSON Lines, plain, gzip and zstd, files, folders and globs, one document per record",
          "[data][build][corpus]") {
  const std::string dir = mt::test::scratch_dir("corpus_jsonl");
  const std::vector<std::string> docs = documents(600);
  const std::string a = jsonl(docs, 0, 250), b = jsonl(docs, 250, 600);
  fs::create_directories(dir + "/in/sub");
  mt::test::write_file(dir + "/in/a.jsonl", a);
  write_gzip(dir + "/in/sub/b.jsonl.gz", b);
  mt::test::write_file(dir + "/in/.hidden.jsonl", "not json\n");
  mt::test::write_file(dir + "/a.jsonl.zst", zstd(a, 3));
  mt::test::write_file(dir + "/b.data", zstd(b, 1));  // zstd by magic, JSON Lines by --format

  mt::data::BuildSummary s = build({dir + "/in/a.jsonl", dir + "/in/sub/b.jsonl.gz"}, dir + "/plain");
  CHECK(s.documents == 600);
  CHECK(s.files == 2);
  CHECK(s.jsonl_files == 2);
  CHECK(s.gzip_files == 1);
  CHECK(s.eod_token == -1);
  const std::string want = joined(docs);
  REQUIRE(all_text(dir + "/plain") == want);
  const mt::json index = mt::read_json_file(dir + "/plain/index.json");
  CHECK(index["documents"]["count"] == 600);
  const auto leads = std::count_if(want.begin(), want.end(), [](char c) { return (uint8_t(c) & 0xC0) != 0x80; });
  CHECK(s.train.characters + s.val.characters == int64_t(leads));

  // A folder (recursive, sorted, hidden files skipped), and zstd with a glob and --format jsonl.
  mt::data::BuildSummary f = build({dir + "/in"}, dir + "/folder");
  CHECK(f.files == 2);
  CHECK(all_text(dir + "/folder") == want);
  BuildOptions o;
  o.inputs = {dir + "/a.jsonl.*", dir + "/b.data"};
  o.out_dir = dir + "/zstd";
  o.val_tokens = 1000;
  o.format = mt::data::InputFormat::Jsonl;
  mt::data::BuildSummary z = mt::data::build_dataset(o, nullptr);
  CHECK(z.zstd_files == 2);
  for (const char* file : {"train_000000.bin", "val_000000.bin", "index.json"})
    CHECK(mt::test::read_file(dir + "/plain/" + file) == mt::test::read_file(dir + "/zstd/" + file));

  // Truncated zstd, a glob that matches nothing: one-line input errors naming the file.
  const std::string full = zstd(a, 1);
  mt::test::write_file(dir + "/cut.jsonl.zst", full.substr(0, full.size() - 7));
  CHECK(input_error([&] { build({dir + "/cut.jsonl.zst"}, dir + "/cut"); }).find("cut.jsonl.zst: truncated zstd") !=
        std::string::npos);
  CHECK(input_error([&] { build({dir + "/nothing*.jsonl"}, dir + "/none"); }).find("nothing*.jsonl: no such input") !=
        std::string::npos);
}

TEST_CASE("corpus: a malformed line is an error naming file and line, or counted with --skip-bad-lines",
          "[data][build][corpus]") {
  const std::string dir = mt::test::scratch_dir("corpus_bad_lines");
  const std::vector<std::string> docs = documents(200);
  std::string text = jsonl(docs, 0, 100) + "{\"text\": \"cut\n" + jsonl(docs, 100, 150) + "{\"body\": \"x\"}\n\n" +
                     "[1, 2]\n" + "{\"text\": 7}\n" + jsonl(docs, 150, 200);
  mt::test::write_file(dir + "/in.jsonl", text);
  const std::string e = input_error([&] { build({dir + "/in.jsonl"}, dir + "/ds"); });
  CHECK(e.find("in.jsonl:101: not valid JSON") != std::string::npos);
  CHECK(e.find('\n') == std::string::npos);
  BuildOptions o;
  o.inputs = {dir + "/in.jsonl"};
  o.out_dir = dir + "/ds";
  o.val_tokens = 1000;
  o.skip_bad_lines = true;
  o.piece_bytes = 512;
  o.workers = 2;
  mt::data::BuildSummary s = mt::data::build_dataset(o, nullptr);
  CHECK(s.bad_lines == 4);
  CHECK(s.documents == 200);
  CHECK(all_text(dir + "/ds") == joined(docs));
  REQUIRE(!s.warnings.empty());
  CHECK(s.warnings.back().find("4 malformed lines skipped (the first: ") != std::string::npos);
  CHECK(s.warnings.back().find("in.jsonl:101") != std::string::npos);
  o.text_key = "body";
  o.skip_bad_lines = false;
  CHECK(input_error([&] { mt::data::build_dataset(o, nullptr); }).find("in.jsonl:1: no field \"body\"") !=
        std::string::npos);
}

TEST_CASE("corpus: the output is the same bytes for any number of workers", "[data][build][corpus]") {
  const std::string dir = mt::test::scratch_dir("corpus_workers");
  const std::vector<std::string> docs = documents(3000);
  mt::test::write_file(dir + "/in.jsonl", jsonl(docs, 0, 3000));
  mt::test::write_file(dir + "/in.txt", joined(docs));
  for (const char* in : {"in.jsonl", "in.txt"}) {
    build({dir + "/" + in}, dir + "/one", 1, true);
    for (int workers : {2, 5}) {
      build({dir + "/" + in}, dir + "/many", workers, true, 3000);
      for (const char* file : {"train_000000.bin", "val_000000.bin", "index.json", "text_document.bin", "text_document.idx"})
        CHECK(mt::test::read_file(dir + "/one/" + file) == mt::test::read_file(dir + "/many/" + file));
    }
  }
}

TEST_CASE("corpus: --out-format megatron writes a Megatron-LM pair that reads back as the native shards",
          "[data][build][corpus]") {
  const std::string dir = mt::test::scratch_dir("corpus_megatron");
  const std::vector<std::string> docs = documents(400);
  mt::test::write_file(dir + "/in.jsonl", jsonl(docs, 0, 400));
  mt::data::BuildSummary s = build({dir + "/in.jsonl"}, dir + "/ds", 2, true);
  CHECK(s.megatron_prefix == "text_document");
  std::vector<int32_t> native = mt::test::all_tokens(mt::data::open_dataset(dir + "/ds", Split::Train, 256));
  const std::vector<int32_t> val = mt::test::all_tokens(mt::data::open_dataset(dir + "/ds", Split::Val, 256));
  native.insert(native.end(), val.begin(), val.end());
  const mt::data::TokenDataset mega = mt::data::open_dataset(dir + "/ds/text_document", Split::Train, 256);
  REQUIRE(mega.shards.size() == 1);
  CHECK(mega.shards[0].format == mt::data::ShardFormat::Megatron);
  CHECK(mega.shards[0].type == mt::data::TokenType::U16);
  CHECK(mt::test::all_tokens(mega) == native);
  // The index, field by field: one sequence per document, its length that document's tokens (the
  // newline put between two documents opens the second).
  const std::string idx = mt::test::read_file(dir + "/ds/text_document.idx");
  auto u64 = [&](size_t at) {
    uint64_t v;
    std::memcpy(&v, idx.data() + at, 8);
    return v;
  };
  REQUIRE(idx.substr(0, 9) == std::string("MMIDIDX\0\0", 9));
  CHECK(u64(9) == 1);
  CHECK(uint8_t(idx[17]) == 8);
  const uint64_t n = u64(18);
  CHECK(n == 400);
  CHECK(u64(26) == n + 1);
  REQUIRE(idx.size() == 34 + 4 * n + 8 * n + 8 * (n + 1));
  int64_t pointer = 0;
  for (uint64_t i = 0; i < n; ++i) {
    int32_t len;
    std::memcpy(&len, idx.data() + 34 + 4 * i, 4);
    const bool sep = i > 0 && docs[i - 1].back() != '\n';
    CHECK(len == int32_t(docs[i].size() + (sep ? 1 : 0)));
    CHECK(int64_t(u64(34 + 4 * n + 8 * i)) == pointer);
    CHECK(u64(34 + 12 * n + 8 * i) == i);
    pointer += 2 * int64_t(len);
  }
  CHECK(u64(34 + 12 * n + 8 * n) == n);
}
