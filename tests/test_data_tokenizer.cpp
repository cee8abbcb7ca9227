// Why: a dataset built here must hold exactly the ids the reference tokenizers give, or a model
// trained on it cannot be compared with one trained on data from the reference tools. Our BPE
// (data/tokenizer.cpp) is compared with an independent encoder, the JavaScript package gpt-tokenizer
// (tests/js/bpe_reference.js, installed by scripts/setup_js.sh), on 200 KB of real English text plus
// lines in many scripts, for GPT-2's vocabulary (GPT-2's tokenizer.json layout) and for cl100k's
// (Llama-3's layout and regex). Without node or the package those two tests WARN and pass (Catch2 v2
// has no skip); the hand-checked merges and the tokenizer.json errors below always run.
//
// The test text avoids U+0085 and U+FEFF (JavaScript's \s disagrees with Unicode's White_Space on
// them) and white space after a newline at the end of a segment (gpt-tokenizer's cl100k regex has
// tiktoken's newer `\s+$` there, Llama-3's tokenizer.json the older `\s*[\r\n]+`).
#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "data/build.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "data/utf8.h"
#include "engine/core/check.h"
#include "engine/run/config.h"
#include "tests/test_data_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using mt::data::Tokenizer;

namespace {

const char* const kUnicodeLines =
    "Ünïcödé: naïve café, façade, Straße, smørrebrød, Ångström, Œuvre, ĳ, ǅ, ﬁ\n"
    "Ελληνικά: Γειά σου Κόσμε! Русский: Привет, мир. Українська: Ґґ Її Єє\n"
    "中文：你好，世界。日本語：こんにちは、カタカナ、ｶﾀｶﾅ。한국어: 안녕하세요 세계\n"
    "العربية: مرحبا بالعالم ١٢٣٤٥ — עברית: שלום עולם\n"
    "हिन्दी: नमस्ते दुनिया (combining marks: é vs é, n̈)\n"
    "Numbers: 1234567890 12 3.14159 ½ ¾ ² ³ Ⅻ ⅷ ０１２３ ٣ ৩\n"
    "Emoji: 😀😃 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ✓ ★\n"
    "Spaces:\u00a0nbsp,\u2003em\u2003space,\u3000ideographic, tab\there,  two  spaces   three\n"
    "Contractions: don't it's we'll they're I've she'd I'm DON'T IT'S WE'LL THEY'RE I'VE 'tis rock'n'roll\n"
    "Quotes: ‘single’ “double” «guillemets» it’s ’s\n"
    "CRLF line\r\nand CR\ronly, trailing spaces   \nsoft\u00adhyphen zero\u200bwidth joiner\u200dhere\n"
    "Code: for (int i = 0; i < n; ++i) { x[i] += 0x1F; } // done...!!! ??? ---\n"
    "Special: before<|endoftext|>after <|endoftext|> spaced <|endoftext|>\n<|endoftext|><|endoftext|>x\n"
    "Mixed: abc123def 123abc ABC_def-ghi über-cool e.g. U.S.A. 1,000,000 $5.99 50%\n"
    "END.";

// The first ~200 KB of the GNU dictionary (dict-gcide), cut at a line end, then the lines above.
std::string reference_text() {
  gzFile f = gzopen("/usr/share/dictd/gcide.dict.dz", "rb");
  REQUIRE(f != nullptr);  // dict-gcide: scripts/setup.sh
  std::string text(200'000, '\0');
  int n = gzread(f, text.data(), unsigned(text.size()));
  gzclose(f);
  REQUIRE(n == int(text.size()));
  text.resize(text.rfind('\n') + 1);
  text += kUnicodeLines;
  size_t first_bad = 0;
  REQUIRE(mt::data::utf8::count_invalid(reinterpret_cast<const uint8_t*>(text.data()), text.size(), &first_bad) == 0);
  return text;
}

// Runs a shell command; its exit status.
int shell(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return rc == -1 ? -1 : WEXITSTATUS(rc);
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// True when node and the reference package are installed; otherwise a WARN saying how to get them.
bool have_reference() {
  const std::string pkg = mt::test::source_path("tests/js/node_modules/gpt-tokenizer/package.json");
  if (shell("node --version > /dev/null 2>&1") != 0) {
    WARN("SKIPPED: no `node` on PATH; the BPE reference comparison did not run (install nodejs, then "
         "bash scripts/setup_js.sh)");
    return false;
  }
  if (!fs::exists(pkg)) {
    WARN("SKIPPED: " << pkg << " is missing; the BPE reference comparison did not run (bash scripts/setup_js.sh)");
    return false;
  }
  return true;
}

std::string node_script() { return mt::test::source_path("tests/js/bpe_reference.js"); }

std::vector<int32_t> reference_ids(const std::string& encoding, const std::string& text_path, const std::string& out) {
  REQUIRE(shell("node " + quoted(node_script()) + " encode " + encoding + " " + quoted(text_path) + " " + quoted(out)) ==
          0);
  const std::string bytes = mt::test::read_file(out);
  REQUIRE(bytes.size() % 4 == 0);
  std::vector<int32_t> ids(bytes.size() / 4);
  std::memcpy(ids.data(), bytes.data(), bytes.size());
  return ids;
}

// Compares two id sequences; on a difference, says where and shows the text around it.
void require_same(const Tokenizer& tok, const std::vector<int32_t>& ours, const std::vector<int32_t>& ref) {
  size_t i = 0;
  while (i < ours.size() && i < ref.size() && ours[i] == ref[i]) ++i;
  if (i == ours.size() && i == ref.size()) return;
  const size_t lo = i > 8 ? i - 8 : 0;
  auto show = [&](const std::vector<int32_t>& v) {
    std::string s;
    for (size_t k = lo; k < std::min(v.size(), i + 8); ++k)
      s += (k == i ? " >>" : " ") + std::to_string(v[k]) + "'" + std::string(tok.token_bytes(v[k])) + "'";
    return s;
  };
  FAIL("first difference at id " << i << " of " << ours.size() << " (ours) / " << ref.size()
                                  << " (reference)\n  ours:" << show(ours) << "\n  ref: " << show(ref));
}

// The whole comparison for one encoding: plain encode, streaming encode_prefix, and a dataset build.
void compare_with_reference(const std::string& encoding, const std::string& name) {
  if (!have_reference()) return;
  const std::string dir = mt::test::scratch_dir(name);
  const std::string json_path = dir + "/tokenizer.json";
  REQUIRE(shell("node " + quoted(node_script()) + " tokenizer-json " + encoding + " " + quoted(json_path)) == 0);
  const std::string text = reference_text();
  mt::test::write_file(dir + "/text.txt", text);
  const std::vector<int32_t> ref = reference_ids(encoding, dir + "/text.txt", dir + "/ref.ids");

  Tokenizer tok = Tokenizer::from_file(json_path);
  std::vector<int32_t> ours;
  tok.encode(text, &ours);
  require_same(tok, ours, ref);
  CHECK(tok.decode(ours.data(), ours.size()) == text);
  CHECK(ours.size() < text.size() / 2);  // it is a BPE, not bytes

  // Streaming: random chunks through encode_prefix give the same ids, for chunks of up to 3000
  // bytes over the whole text and of up to 40 bytes over the many-scripts part at its end.
  std::mt19937 rng(5);
  std::vector<int32_t> streamed;
  std::string pending;
  const size_t tail = text.size() - std::strlen(kUnicodeLines);
  for (size_t pos = 0; pos < text.size();) {
    size_t n = std::min<size_t>(text.size() - pos, 1 + rng() % (pos < tail ? 3000 : 40));
    pending.append(text, pos, n);
    pos += n;
    pending.erase(0, tok.encode_prefix(pending, &streamed));
  }
  tok.encode(pending, &streamed);
  require_same(tok, streamed, ref);

  // A dataset built with it: the same ids, and the bytes and characters of the text. The build encodes
  // added tokens written in a document as text (see the end), so its reference is the text without them.
  std::string doc_text = text;
  const std::string eod_text(tok.token_bytes(tok.end_of_document()));
  for (size_t at; (at = doc_text.find(eod_text)) != std::string::npos;) doc_text.erase(at, eod_text.size());
  mt::test::write_file(dir + "/doc.txt", doc_text);
  const std::vector<int32_t> ref_plain = reference_ids(encoding, dir + "/doc.txt", dir + "/doc.ids");
  mt::data::BuildOptions o;
  o.inputs = {dir + "/doc.txt"};
  o.out_dir = dir + "/ds";
  o.tokenizer = json_path;
  o.val_tokens = 2000;
  o.shard_tokens = 20000;
  mt::data::BuildSummary s = mt::data::build_dataset(o, nullptr);
  // The file is one document: the end-of-document token follows it, and counts no characters.
  std::vector<int32_t> ref_doc = ref_plain;
  REQUIRE(tok.end_of_document() >= 0);
  ref_doc.push_back(tok.end_of_document());
  CHECK(s.documents == 1);
  CHECK(s.train.tokens + s.val.tokens == int64_t(ref_doc.size()));
  CHECK(s.train.text_bytes + s.val.text_bytes == int64_t(doc_text.size()));
  CHECK(s.train.characters + s.val.characters ==
        mt::data::utf8::count_chars(reinterpret_cast<const uint8_t*>(doc_text.data()), doc_text.size()));
  const mt::json index = mt::read_json_file(dir + "/ds/index.json");
  CHECK(index["tokenizer"] == mt::json{{"type", "bpe"}, {"file", "tokenizer.json"}});
  CHECK(index["vocab_size"] == tok.vocab_size());
  std::vector<int32_t> stored;
  for (auto split : {mt::data::Split::Train, mt::data::Split::Val}) {
    mt::data::TokenDataset ds = mt::data::open_dataset(dir + "/ds", split, 0);
    CHECK(ds.shards[0].format ==
          (tok.vocab_size() > 65536 ? mt::data::ShardFormat::NativeV7 : mt::data::ShardFormat::NativeV1));
    for (size_t k = 0; k < ds.shards.size(); ++k) {
      std::vector<int32_t> t(size_t(ds.shards[k].tokens));
      ds.read(k, 0, ds.shards[k].tokens, t.data());
      stored.insert(stored.end(), t.begin(), t.end());
    }
    REQUIRE(mt::data::load_tokenizer(ds.tokenizer).has_value());
  }
  require_same(tok, stored, ref_doc);
  CHECK(index["documents"]["count"] == 1);
  CHECK(index["documents"]["end_token"] == tok.end_of_document());

  // Any number of workers, on pieces cut where the pre-tokenizer cuts anyway: the same bytes.
  o.out_dir = dir + "/ds_workers";
  o.workers = 3;
  o.piece_bytes = 4096;
  mt::data::build_dataset(o, nullptr);
  for (const char* f : {"train_000000.bin", "val_000000.bin", "index.json"})
    CHECK(mt::test::read_file(dir + "/ds/" + f) == mt::test::read_file(dir + "/ds_workers/" + f));

  // "<|endoftext|>" written in a document is text: only the appended token ends it, and every
  // character of the text is counted.
  o.inputs = {dir + "/text.txt"};
  o.out_dir = dir + "/ds_literal";
  s = mt::data::build_dataset(o, nullptr);
  CHECK(s.train.characters + s.val.characters ==
        mt::data::utf8::count_chars(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  int64_t eods = 0;
  for (auto split : {mt::data::Split::Train, mt::data::Split::Val}) {
    mt::data::TokenDataset ds = mt::data::open_dataset(dir + "/ds_literal", split, 0);
    std::vector<int32_t> t(size_t(ds.shards[0].tokens));
    ds.read(0, 0, ds.shards[0].tokens, t.data());
    eods += std::count(t.begin(), t.end(), tok.end_of_document());
  }
  CHECK(eods == 1);
}

}  // namespace

TEST_CASE("BPE: GPT-2's vocabulary gives the reference encoder's ids on real text", "[data][tokenizer][bpe]") {
  compare_with_reference("r50k_base", "bpe_gpt2");
}

TEST_CASE("BPE: cl100k in Llama-3's layout gives the reference encoder's ids on real text", "[data][tokenizer][bpe]") {
  compare_with_reference("cl100k_base", "bpe_llama3");
}

namespace {

// A tokenizer.json with the byte-level alphabet for a, b, c, space (Ġ), ' and s, plus `extra`.
mt::json tiny_tokenizer() {
  return mt::json::parse(R"({
    "version": "1.0", "normalizer": null,
    "added_tokens": [{"id": 20, "content": "<|x|>", "single_word": false, "lstrip": false, "rstrip": false,
                      "normalized": false, "special": true}],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
              "vocab": {"a": 0, "b": 1, "c": 2, "Ġ": 3, "'": 4, "s": 5, "ab": 6, "bc": 7, "abc": 8, "Ġa": 9,
                        "Ġab": 10, "'s": 11, "ca": 12},
              "merges": ["a b", "b c", "ab c", "Ġ a", "Ġa b", "' s", "c a"]}
  })");
}

std::vector<int32_t> encode(Tokenizer& t, const std::string& s) {
  std::vector<int32_t> ids;
  t.encode(s, &ids);
  return ids;
}

}  // namespace

TEST_CASE("BPE: merges by rank on a hand-checked vocabulary", "[data][tokenizer]") {
  const std::string dir = mt::test::scratch_dir("bpe_tiny");
  mt::test::write_file(dir + "/t.json", tiny_tokenizer().dump());
  Tokenizer t = Tokenizer::from_file(dir + "/t.json");
  CHECK(t.vocab_size() == 21);
  using V = std::vector<int32_t>;
  CHECK(encode(t, "abc") == V{8});               // a b -> ab (rank 0), then ab c (rank 2)
  CHECK(encode(t, "bca") == V{7, 0});            // b c (rank 1) before c a (rank 6)
  CHECK(encode(t, "cab") == V{2, 6});            // a b (rank 0) first; c ab is no merge
  CHECK(encode(t, "abcab") == V{8, 6});
  CHECK(encode(t, " a") == V{9});
  CHECK(encode(t, " ab c") == V{3, 6, 3, 2});    // a b (rank 0) before Ġ a (rank 3): no Ġab
  CHECK(encode(t, "a's") == V{0, 11});           // the contraction 's splits off
  CHECK(encode(t, "ab<|x|>ab") == V{6, 20, 6});  // an added token is matched literally
  CHECK(encode(t, "  a") == V{3, 9});            // two spaces: the last one goes with the word
  CHECK(t.decode(V{10, 3, 11, 20}.data(), 4) == " ab 's<|x|>");
  // A byte the vocab lacks cannot be encoded.
  CHECK_THROWS_AS(encode(t, "d"), mt::InputError);
}

TEST_CASE("BPE: unsupported or broken tokenizer.json files are one-line InputErrors", "[data][tokenizer]") {
  const std::string dir = mt::test::scratch_dir("bpe_errors");
  auto error_with = [&](const std::function<void(mt::json&)>& edit) -> std::string {
    mt::json j = tiny_tokenizer();
    edit(j);
    mt::test::write_file(dir + "/t.json", j.dump());
    const std::string m = mt::test::input_error([&] { Tokenizer::from_file(dir + "/t.json"); });
    if (!m.empty()) CHECK(m.find(dir + "/t.json") != std::string::npos);
    return m;
  };
  auto has = [](const std::string& s, const char* part) { return s.find(part) != std::string::npos; };
  CHECK(error_with([](mt::json&) {}) == "");
  CHECK(has(error_with([](mt::json& j) { j["model"]["type"] = "WordPiece"; }), "model.type"));
  CHECK(has(error_with([](mt::json& j) { j["normalizer"] = {{"type", "NFC"}}; }), "normalizer"));
  CHECK(has(error_with([](mt::json& j) { j["pre_tokenizer"]["add_prefix_space"] = true; }), "add_prefix_space"));
  CHECK(has(error_with([](mt::json& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }), "pre_tokenizer"));
  CHECK(has(error_with([](mt::json& j) { j["model"]["byte_fallback"] = true; }), "byte_fallback"));
  CHECK(has(error_with([](mt::json& j) { j["model"]["merges"].push_back("a q"); }), "\"q\" is not in model.vocab"));
  CHECK(has(error_with([](mt::json& j) { j["model"]["merges"].push_back("c c"); }), "merged token"));
  CHECK(has(error_with([](mt::json& j) { j["model"]["merges"].push_back("abc"); }), "two tokens"));
  CHECK(has(error_with([](mt::json& j) { j["model"]["vocab"]["\n"] = 30; }), "not a byte-level token"));
  CHECK(has(error_with([](mt::json& j) { j["added_tokens"][0]["lstrip"] = true; }), "lstrip"));
  // Ids that would wrap (2^32 + 5 became 5 and collided with a byte) or size a 100 GB table are refused at once.
  CHECK(has(error_with([](mt::json& j) { j["added_tokens"][0]["id"] = (int64_t(1) << 32) + 5; }), "added_tokens[0]: needs an integer id in [0, 16777215]"));
  CHECK(has(error_with([](mt::json& j) { j["model"]["vocab"]["ca"] = int64_t(99999999999); }), "the id must be an integer in [0, 16777215]"));
  CHECK(has(error_with([](mt::json& j) { j["model"]["vocab"]["ca"] = int64_t(2147483647); }), "the id must be an integer in"));
  mt::test::write_file(dir + "/t.json", std::string(100000, '[') + std::string(100000, ']'));
  CHECK_THROWS_WITH(Tokenizer::from_file(dir + "/t.json"), Catch::Contains("nested deeper"));
  CHECK(has(error_with([](mt::json& j) {
              j["pre_tokenizer"] = {{"type", "Sequence"},
                                    {"pretokenizers",
                                     {{{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Isolated"}},
                                      {{"type", "ByteLevel"}, {"use_regex", false}}}}};
            }),
            "unsupported regex"));
  mt::test::write_file(dir + "/t.json", "{\"model\": ");
  CHECK_THROWS_AS(Tokenizer::from_file(dir + "/t.json"), mt::InputError);
  CHECK_THROWS_AS(Tokenizer::from_file(dir + "/missing.json"), mt::InputError);
}
