// Why: see tokenizer.h. The BPE follows the Hugging Face tokenizers library step by step: added
// tokens are split out of the text first; each remaining segment is cut into pre-tokens by the
// model's regex (hand-written here as a scanner over code points, since std::regex has no \p{L});
// each pre-token's bytes are mapped through GPT-2's bytes-to-unicode table and merged pairwise,
// always the pair of lowest merge rank, leftmost first.
#include "data/tokenizer.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "data/unicode_tables.h"
#include "data/utf8.h"
#include "engine/core/check.h"
#include "engine/core/io.h"
#include "engine/core/json.h"

namespace mt::data {

namespace {

// The two pre-tokenizer regexes we implement (exactly as tokenizer.json spells them).
const char* const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char* const kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

enum class Pattern { Gpt2, Llama3 };

using unicode::CharClass;

CharClass char_class(char32_t cp) {
  if (cp == utf8::kInvalid) return unicode::kOther;
  const auto* begin = std::begin(unicode::kClassRanges);
  const auto* end = std::end(unicode::kClassRanges);
  auto it = std::upper_bound(begin, end, cp, [](char32_t c, const unicode::ClassRange& r) { return c < r.first; });
  if (it == begin) return unicode::kOther;
  --it;
  return cp <= it->last ? it->cls : unicode::kOther;
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the other 68 to U+0100 onwards.
struct ByteMap {
  std::array<char32_t, 256> to_cp{};
  std::array<int16_t, 324> to_byte{};  // code point -> byte, -1 if none (all mapped cps are < 324)
  ByteMap() {
    to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_cp[b] = printable ? char32_t(b) : char32_t(256 + extra++);
      to_byte[to_cp[b]] = int16_t(b);
    }
  }
};

// A vocab string of the byte-level alphabet back to raw bytes; false if a character is outside it.
bool unmap_bytes(const ByteMap& bm, const std::string& s, std::string* out) {
  out->clear();
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    size_t len;
    char32_t cp = utf8::decode(p + i, s.size() - i, &len);
    if (cp == utf8::kInvalid || cp >= bm.to_byte.size() || bm.to_byte[cp] < 0) return false;
    out->push_back(char(bm.to_byte[cp]));
    i += len;
  }
  return true;
}

struct Merge {
  int32_t rank;
  int32_t id;  // the merged token
};

struct AddedToken {
  std::string content;
  int32_t id;
};

}  // namespace

struct BpeModel {
  TokenizerKind kind = TokenizerKind::Byte;
  std::string file;
  Pattern pattern = Pattern::Gpt2;
  int vocab_size = 256;
  std::string token_pool;               // decoded bytes of every id, back to back
  std::vector<uint32_t> token_offset;   // vocab_size + 1 offsets into token_pool
  std::unordered_map<std::string, int32_t> by_bytes;  // model vocab: raw bytes -> id
  std::array<int32_t, 256> byte_id{};   // the single-byte tokens (-1: missing)
  std::unordered_map<uint64_t, Merge> merges;  // (left id << 32 | right id) -> merge
  bool ignore_merges = false;
  std::vector<AddedToken> added;        // longest first
  std::array<bool, 256> added_first{};  // first bytes of added tokens
};

struct Tokenizer::Cache {
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>> words;  // word -> (offset, count)
  std::vector<int32_t> pool;
  // scratch of the scanner and of one merge
  std::vector<char32_t> cps;
  std::vector<uint8_t> cls;
  std::vector<uint32_t> offs;
  std::vector<int32_t> sym, next, prev;
  struct Candidate {
    int32_t rank, pos, left, right, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Candidate> heap;
  void clear_if_large() {
    if (pool.size() > (size_t(1) << 24) || words.size() > (size_t(1) << 20)) {
      words.clear();
      pool.clear();
    }
  }
};

namespace {

// Token ids above this are refused before anything is sized by them (real vocabularies are < 2^20).
constexpr int64_t kMaxTokenId = (int64_t(1) << 24) - 1;

[[noreturn]] void bad(const std::string& file, const std::string& what) {
  throw InputError(file + ": " + what);
}

// A string as a JSON literal (quoted, control characters escaped): error messages stay one line.
std::string quote(const std::string& s) { return nlohmann::json(s).dump(); }

const nlohmann::json* child(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

bool flag(const nlohmann::json& j, const char* key) {
  const nlohmann::json* v = child(j, key);
  return v && v->is_boolean() && v->get<bool>();
}

std::string type_of(const nlohmann::json& j) {
  const nlohmann::json* t = child(j, "type");
  return t && t->is_string() ? t->get<std::string>() : "";
}

// Reads the pre-tokenizer section: returns the regex it applies.
Pattern read_pre_tokenizer(const std::string& file, const nlohmann::json* pre) {
  auto check_byte_level = [&](const nlohmann::json& bl, const std::string& where, bool want_regex) {
    if (flag(bl, "add_prefix_space"))
      bad(file, where + ".add_prefix_space: true is not supported (only false)");
    const nlohmann::json* ur = child(bl, "use_regex");
    bool use_regex = !ur || (ur->is_boolean() && ur->get<bool>());
    if (use_regex != want_regex)
      bad(file, where + ".use_regex: " + (use_regex ? "true" : "false") + " is not supported here");
  };
  if (!pre) bad(file, "pre_tokenizer: missing (a byte-level BPE needs a ByteLevel pre-tokenizer)");
  std::string t = type_of(*pre);
  if (t == "ByteLevel") {
    check_byte_level(*pre, "pre_tokenizer", true);
    return Pattern::Gpt2;
  }
  if (t == "Sequence") {
    const nlohmann::json* seq = child(*pre, "pretokenizers");
    if (seq && seq->is_array() && seq->size() == 2 && type_of((*seq)[0]) == "Split" &&
        type_of((*seq)[1]) == "ByteLevel") {
      const nlohmann::json& split = (*seq)[0];
      const nlohmann::json* pat = child(split, "pattern");
      const nlohmann::json* re = pat ? child(*pat, "Regex") : nullptr;
      std::string regex = re && re->is_string() ? re->get<std::string>() : "";
      const nlohmann::json* behavior = child(split, "behavior");
      if (!behavior || *behavior != "Isolated" || flag(split, "invert"))
        bad(file, "pre_tokenizer.pretokenizers[0]: only a Split with behavior \"Isolated\" and invert false is supported");
      check_byte_level((*seq)[1], "pre_tokenizer.pretokenizers[1]", false);
      if (regex == kLlama3Pattern) return Pattern::Llama3;
      if (regex == kGpt2Pattern) return Pattern::Gpt2;
      bad(file, "pre_tokenizer.pretokenizers[0].pattern: unsupported regex (supported: the GPT-2 and Llama-3 patterns)");
    }
  }
  bad(file, "pre_tokenizer: unsupported (supported: ByteLevel, or Sequence [Split with the Llama-3 regex, ByteLevel])");
}

}  // namespace

Tokenizer::Tokenizer(std::shared_ptr<const BpeModel> model) : model_(std::move(model)), cache_(new Cache) {}
Tokenizer::Tokenizer(const Tokenizer& other) : model_(other.model_), cache_(new Cache) {}
Tokenizer& Tokenizer::operator=(const Tokenizer& other) {
  model_ = other.model_;
  cache_.reset(new Cache);
  return *this;
}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::byte_level() {
  auto m = std::make_shared<BpeModel>();
  m->kind = TokenizerKind::Byte;
  m->vocab_size = 256;
  for (int b = 0; b < 256; ++b) {
    m->token_offset.push_back(uint32_t(b));
    m->token_pool.push_back(char(b));
    m->byte_id[b] = b;
  }
  m->token_offset.push_back(256);
  return Tokenizer(std::move(m));
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MT_INPUT(in.good() && !std::filesystem::is_directory(path), path, ": cannot open the tokenizer file");
  nlohmann::json j;
  try {
    const std::string text = read_text(path);
    check_json_depth(text, path);
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    bad(path, std::string("not valid JSON (") + e.what() + ")");
  }
  MT_INPUT(j.is_object(), path, ": not a tokenizer.json (expected a JSON object)");
  auto m = std::make_shared<BpeModel>();
  m->kind = TokenizerKind::Bpe;
  m->file = path;

  const nlohmann::json* model = child(j, "model");
  if (!model || type_of(*model) != "BPE")
    bad(path, "model.type: only \"BPE\" (byte-level) tokenizers are supported");
  if (child(j, "normalizer")) bad(path, "normalizer: not supported (only null)");
  m->pattern = read_pre_tokenizer(path, child(j, "pre_tokenizer"));
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const nlohmann::json* v = child(*model, key);
    if (v && !(v->is_string() && v->get<std::string>().empty()))
      bad(path, std::string("model.") + key + ": not supported (only null or \"\")");
  }
  if (flag(*model, "byte_fallback")) bad(path, "model.byte_fallback: true is not supported");
  if (const nlohmann::json* d = child(*model, "dropout"); d && d->is_number() && d->get<double>() > 0)
    bad(path, "model.dropout: BPE dropout is not supported");
  m->ignore_merges = flag(*model, "ignore_merges");

  const ByteMap bm;
  const nlohmann::json* vocab = child(*model, "vocab");
  if (!vocab || !vocab->is_object()) bad(path, "model.vocab: missing or not an object");
  const nlohmann::json* added = child(j, "added_tokens");
  if (added && !added->is_array()) bad(path, "added_tokens: not an array");

  // Every id's decoded bytes: added tokens decode to their content, vocab tokens through the byte map.
  int32_t max_id = -1;
  std::unordered_map<int32_t, std::string> bytes_of;
  if (added) {
    for (size_t i = 0; i < added->size(); ++i) {
      const nlohmann::json& a = (*added)[i];
      std::string where = "added_tokens[" + std::to_string(i) + "]";
      const nlohmann::json* id = child(a, "id");
      const nlohmann::json* content = child(a, "content");
      if (!id || !id->is_number_integer() || id->get<int64_t>() < 0 || id->get<int64_t>() > kMaxTokenId ||
          !content || !content->is_string() || content->get<std::string>().empty())
        bad(path, where + ": needs an integer id in [0, " + std::to_string(kMaxTokenId) +
                      "] and a non-empty content string");
      for (const char* f : {"single_word", "lstrip", "rstrip"})
        if (flag(a, f)) bad(path, where + "." + f + ": true is not supported");
      int32_t tid = id->get<int32_t>();
      m->added.push_back({content->get<std::string>(), tid});
      bytes_of[tid] = content->get<std::string>();
      max_id = std::max(max_id, tid);
    }
  }
  std::string raw;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > kMaxTokenId)
      bad(path, "model.vocab[" + quote(it.key()) + "]: the id must be an integer in [0, " +
                    std::to_string(kMaxTokenId) + "]");
    int32_t id = it.value().get<int32_t>();
    max_id = std::max(max_id, id);
    if (!unmap_bytes(bm, it.key(), &raw)) {
      if (bytes_of.count(id)) continue;  // an added token listed in the vocab under its own spelling
      bad(path, "model.vocab[" + quote(it.key()) + "]: not a byte-level token (a character outside GPT-2's byte map)");
    }
    m->by_bytes.emplace(raw, id);
    bytes_of.emplace(id, raw);  // added tokens keep their content
  }
  MT_INPUT(max_id >= 0, path, ": model.vocab is empty");
  m->vocab_size = max_id + 1;
  m->token_offset.reserve(size_t(m->vocab_size) + 1);
  for (int32_t id = 0; id < m->vocab_size; ++id) {
    m->token_offset.push_back(uint32_t(m->token_pool.size()));
    auto it = bytes_of.find(id);
    if (it != bytes_of.end()) m->token_pool += it->second;
  }
  m->token_offset.push_back(uint32_t(m->token_pool.size()));
  for (int b = 0; b < 256; ++b) {
    auto it = m->by_bytes.find(std::string(1, char(b)));
    m->byte_id[b] = it == m->by_bytes.end() ? -1 : it->second;
  }

  const nlohmann::json* merges = child(*model, "merges");
  if (!merges || !merges->is_array()) bad(path, "model.merges: missing or not an array");
  m->merges.reserve(merges->size() * 2);
  std::string left, right;
  for (size_t i = 0; i < merges->size(); ++i) {
    const nlohmann::json& e = (*merges)[i];
    std::string a, b;
    if (e.is_string()) {  // "a b"
      const std::string& s = e.get_ref<const std::string&>();
      auto sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        bad(path, "model.merges[" + std::to_string(i) + "]: expected two tokens separated by one space");
      a = s.substr(0, sp), b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {  // ["a", "b"]
      a = e[0].get<std::string>(), b = e[1].get<std::string>();
    } else {
      bad(path, "model.merges[" + std::to_string(i) + "]: expected \"a b\" or [\"a\", \"b\"]");
    }
    auto id_of = [&](const std::string& tok, std::string* bytes) {
      auto it = unmap_bytes(bm, tok, bytes) ? m->by_bytes.find(*bytes) : m->by_bytes.end();
      if (it == m->by_bytes.end())
        bad(path, "model.merges[" + std::to_string(i) + "]: " + quote(tok) + " is not in model.vocab");
      return it->second;
    };
    int32_t l = id_of(a, &left), r = id_of(b, &right);
    auto merged = m->by_bytes.find(left + right);
    if (merged == m->by_bytes.end())
      bad(path, "model.merges[" + std::to_string(i) + "]: the merged token " + quote(a + b) + " is not in model.vocab");
    uint64_t key = (uint64_t(uint32_t(l)) << 32) | uint32_t(r);
    m->merges.emplace(key, Merge{int32_t(i), merged->second});  // a repeated pair keeps its first rank
  }

  std::sort(m->added.begin(), m->added.end(),
            [](const AddedToken& x, const AddedToken& y) { return x.content.size() > y.content.size(); });
  for (const AddedToken& a : m->added) m->added_first[uint8_t(a.content[0])] = true;
  return Tokenizer(std::move(m));
}

TokenizerKind Tokenizer::kind() const { return model_->kind; }
int Tokenizer::vocab_size() const { return model_->vocab_size; }
const std::string& Tokenizer::file() const { return model_->file; }

int32_t Tokenizer::end_of_document() const {
  for (const char* name : {"<|endoftext|>", "<|end_of_text|>"})
    for (const AddedToken& a : model_->added)
      if (a.content == name) return a.id;
  return -1;
}

std::string Tokenizer::describe() const {
  if (model_->kind == TokenizerKind::Byte) return "byte-level (vocab 256)";
  return str("BPE ", model_->file, " (vocab ", model_->vocab_size, ", ",
             model_->pattern == Pattern::Gpt2 ? "GPT-2" : "Llama-3", " pre-tokenizer)");
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= model_->vocab_size) return {};
  uint32_t a = model_->token_offset[size_t(id)], b = model_->token_offset[size_t(id) + 1];
  return std::string_view(model_->token_pool).substr(a, b - a);
}

std::string Tokenizer::decode(const int32_t* ids, size_t n) const {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += token_bytes(ids[i]);
  return s;
}

// ---- BPE merges of one pre-token -----------------------------------------------------------------

void Tokenizer::encode_word(const uint8_t* p, size_t n, std::vector<int32_t>* out) {
  const BpeModel& m = *model_;
  auto byte_token = [&](uint8_t b) {
    int32_t id = m.byte_id[b];
    if (id < 0) throw InputError(str(m.file, ": the vocab has no token for byte 0x", std::hex, int(b)));
    return id;
  };
  if (n == 1) {
    out->push_back(byte_token(p[0]));
    return;
  }
  Cache& c = *cache_;
  std::string key(reinterpret_cast<const char*>(p), n);
  if (m.ignore_merges) {
    auto it = m.by_bytes.find(key);
    if (it != m.by_bytes.end()) {
      out->push_back(it->second);
      return;
    }
  }
  if (auto hit = c.words.find(key); hit != c.words.end()) {
    out->insert(out->end(), c.pool.begin() + hit->second.first,
                c.pool.begin() + hit->second.first + hit->second.second);
    return;
  }
  // Symbols in a linked list; candidate pairs in a min-heap by (rank, position). A popped pair is
  // applied only if both symbols are still the ones it was made from.
  c.sym.resize(n), c.next.resize(n), c.prev.resize(n);
  for (size_t i = 0; i < n; ++i) {
    c.sym[i] = byte_token(p[i]);
    c.next[i] = i + 1 < n ? int32_t(i + 1) : -1;
    c.prev[i] = int32_t(i) - 1;
  }
  c.heap.clear();
  auto push_pair = [&](int32_t pos) {
    if (pos < 0 || c.next[size_t(pos)] < 0) return;
    int32_t l = c.sym[size_t(pos)], r = c.sym[size_t(c.next[size_t(pos)])];
    auto it = m.merges.find((uint64_t(uint32_t(l)) << 32) | uint32_t(r));
    if (it == m.merges.end()) return;
    c.heap.push_back({it->second.rank, pos, l, r, it->second.id});
    std::push_heap(c.heap.begin(), c.heap.end(), std::greater<>());
  };
  for (size_t i = 0; i + 1 < n; ++i) push_pair(int32_t(i));
  while (!c.heap.empty()) {
    std::pop_heap(c.heap.begin(), c.heap.end(), std::greater<>());
    Cache::Candidate top = c.heap.back();
    c.heap.pop_back();
    size_t pos = size_t(top.pos);
    int32_t nx = c.next[pos];
    if (c.sym[pos] != top.left || nx < 0 || c.sym[size_t(nx)] != top.right) continue;
    c.sym[pos] = top.merged;
    c.sym[size_t(nx)] = -1;  // dead
    c.next[pos] = c.next[size_t(nx)];
    if (c.next[pos] >= 0) c.prev[size_t(c.next[pos])] = int32_t(pos);
    push_pair(c.prev[pos]);
    push_pair(int32_t(pos));
  }
  c.clear_if_large();
  uint32_t start = uint32_t(c.pool.size());
  for (int32_t i = 0; i >= 0; i = c.next[size_t(i)]) c.pool.push_back(c.sym[size_t(i)]);
  c.words.emplace(std::move(key), std::make_pair(start, uint32_t(c.pool.size() - start)));
  out->insert(out->end(), c.pool.begin() + start, c.pool.end());
}

// ---- pre-tokenization: the regex as a scanner ----------------------------------------------------

namespace {

// The code points of a segment and their classes; the scanner returns the length (in code points)
// of the regex match starting at i. `tail_is_text`: the segment is followed by more text that starts
// with a non-space character (a streaming cut), not by its end; only `\s+(?!\S)` can tell.
struct Scanner {
  const char32_t* cp;
  const uint8_t* cls;
  size_t n;
  bool tail_is_text;

  bool is(size_t i, CharClass c) const { return i < n && cls[i] == c; }
  size_t run(size_t i, CharClass c) const {
    while (i < n && cls[i] == c) ++i;
    return i;
  }
  static char32_t lower(char32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

  // 's 't 're 've 'm 'll 'd (case-insensitive for Llama-3, ASCII letters only).
  size_t contraction(size_t i, bool fold) const {
    if (cp[i] != '\'' || i + 1 >= n) return 0;
    auto at = [&](size_t k) { return fold ? lower(cp[k]) : cp[k]; };
    char32_t a = at(i + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 < n) {
      char32_t b = at(i + 2);
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    return 0;
  }

  // `\s+(?!\S)|\s+` at a white-space character: the run, less its last character when a
  // non-space follows and the run is longer than one.
  size_t spaces(size_t i) const {
    size_t w = run(i, unicode::kSpace) - i;
    bool at_end = i + w == n && !tail_is_text;
    return at_end || w == 1 ? w : w - 1;
  }

  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  size_t gpt2(size_t i) const {
    if (size_t k = contraction(i, false)) return k;
    size_t j = i + (cp[i] == ' ' ? 1 : 0);
    if (j < n && cls[j] != unicode::kSpace) return run(j, CharClass(cls[j])) - i;
    return spaces(i);
  }

  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  size_t llama3(size_t i) const {
    if (size_t k = contraction(i, true)) return k;
    if (is(i, unicode::kLetter)) return run(i, unicode::kLetter) - i;
    bool newline = cp[i] == '\r' || cp[i] == '\n';
    if (!newline && !is(i, unicode::kNumber) && is(i + 1, unicode::kLetter)) return run(i + 1, unicode::kLetter) - i;
    if (is(i, unicode::kNumber)) return std::min<size_t>(3, run(i, unicode::kNumber) - i);
    size_t j = i + (cp[i] == ' ' ? 1 : 0);
    if (is(j, unicode::kOther)) {
      size_t k = run(j, unicode::kOther);
      while (k < n && (cp[k] == '\r' || cp[k] == '\n')) ++k;
      return k - i;
    }
    // cp[i] is white space here: \s*[\r\n]+ ends after the run's last CR/LF, if it has one.
    size_t end = run(i, unicode::kSpace);
    for (size_t q = end; q > i; --q)
      if (cp[q - 1] == '\r' || cp[q - 1] == '\n') return q - i;
    return spaces(i);
  }
};

CharClass ascii_or_table(char32_t cp) {
  static const auto ascii = [] {
    std::array<CharClass, 128> t{};
    for (int c = 0; c < 128; ++c) t[size_t(c)] = char_class(char32_t(c));
    return t;
  }();
  return cp < 128 ? ascii[cp] : char_class(cp);
}

}  // namespace

void Tokenizer::encode_segment(std::string_view text, bool followed_by_text, std::vector<int32_t>* out) {
  if (text.empty()) return;
  Cache& c = *cache_;
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  c.cps.clear(), c.cls.clear(), c.offs.clear();
  for (size_t i = 0; i < text.size();) {
    size_t len;
    char32_t cp = utf8::decode(p + i, text.size() - i, &len);
    c.cps.push_back(cp);
    c.cls.push_back(ascii_or_table(cp));
    c.offs.push_back(uint32_t(i));
    i += len;
  }
  c.offs.push_back(uint32_t(text.size()));
  Scanner s{c.cps.data(), c.cls.data(), c.cps.size(), followed_by_text};
  bool llama = model_->pattern == Pattern::Llama3;
  for (size_t i = 0; i < s.n;) {
    size_t k = llama ? s.llama3(i) : s.gpt2(i);
    encode_word(p + c.offs[i], c.offs[i + k] - c.offs[i], out);
    i += k;
  }
}

namespace {

// The leftmost-longest added token starting at or after `from`: its position (npos if none).
size_t find_added(const BpeModel& m, std::string_view text, size_t from, size_t* len, int32_t* id) {
  if (m.added.empty()) return std::string_view::npos;
  for (size_t i = from; i < text.size(); ++i) {
    if (!m.added_first[uint8_t(text[i])]) continue;
    for (const AddedToken& a : m.added) {
      if (text.compare(i, a.content.size(), a.content) == 0) {
        *len = a.content.size();
        *id = a.id;
        return i;
      }
    }
  }
  return std::string_view::npos;
}

}  // namespace

void Tokenizer::encode(std::string_view text, std::vector<int32_t>* out) {
  if (model_->kind == TokenizerKind::Byte) {
    size_t old = out->size();
    out->resize(old + text.size());
    int32_t* o = out->data() + old;
    for (size_t i = 0; i < text.size(); ++i) o[i] = uint8_t(text[i]);
    return;
  }
  size_t pos = 0, len = 0;
  int32_t id = 0;
  while (pos < text.size()) {
    size_t at = find_added(*model_, text, pos, &len, &id);
    if (at == std::string_view::npos) break;
    encode_segment(text.substr(pos, at - pos), false, out);
    out->push_back(id);
    pos = at + len;
  }
  encode_segment(text.substr(pos), false, out);
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>* out) {
  if (model_->kind == TokenizerKind::Byte) return encode(text, out);
  encode_segment(text, false, out);
}

size_t Tokenizer::encode_prefix(std::string_view text, std::vector<int32_t>* out) {
  if (model_->kind == TokenizerKind::Byte) {
    encode(text, out);
    return text.size();
  }
  // A cut after a newline that a complete non-space character follows is a pre-token boundary of both
  // regexes whatever comes later (no match can span it: a newline is never the optional prefix of a
  // word, and white space runs stop at the character), unless it falls inside an added token. Any
  // script qualifies, so a corpus whose lines start with non-ASCII letters still streams.
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  size_t cut = 0;
  for (size_t i = text.size(); i-- > 1;) {
    if (text[i - 1] != '\n') continue;
    size_t len;
    char32_t cp = utf8::decode(bytes + i, text.size() - i, &len);
    if (cp != utf8::kInvalid && ascii_or_table(cp) != unicode::kSpace) {
      cut = i;
      break;
    }
  }
  if (cut == 0) return 0;
  size_t pos = 0, len = 0;
  int32_t id = 0;
  while (true) {
    size_t at = find_added(*model_, text, pos, &len, &id);
    if (at == std::string_view::npos || at >= cut) {
      // The last segment [pos, cut) is followed by text, or by an added token that starts at the cut.
      bool token_at_cut = at == cut;
      encode_segment(text.substr(pos, cut - pos), !token_at_cut, out);
      return cut;
    }
    if (at + len > cut) {  // an added token spans the cut: stop before it
      encode_segment(text.substr(pos, at - pos), false, out);
      return at;
    }
    encode_segment(text.substr(pos, at - pos), false, out);
    out->push_back(id);
    pos = at + len;
  }
}

}  // namespace mt::data
