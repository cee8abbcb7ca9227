// Why: see shards.h. Every check here turns a malformed file into one line naming the file and what
// is wrong with it, before a single token is used.
#include "data/shards.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include "engine/core/check.h"
#include "engine/core/json.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the shard readers assume a little-endian host (the formats are little-endian)"
#endif

namespace fs = std::filesystem;

namespace mt::data {

int token_type_size(TokenType t) {
  switch (t) {
    case TokenType::U8: case TokenType::I8: return 1;
    case TokenType::I16: case TokenType::U16: return 2;
    case TokenType::I32: case TokenType::U32: return 4;
    case TokenType::I64: return 8;
  }
  return 0;
}

const char* to_string(TokenType t) {
  switch (t) {
    case TokenType::U8: return "uint8";
    case TokenType::I8: return "int8";
    case TokenType::I16: return "int16";
    case TokenType::U16: return "uint16";
    case TokenType::I32: return "int32";
    case TokenType::U32: return "uint32";
    case TokenType::I64: return "int64";
  }
  return "?";
}

const char* to_string(ShardFormat f) {
  switch (f) {
    case ShardFormat::NativeV1: return "native v1 (llm.c, uint16)";
    case ShardFormat::NativeV7: return "native v7 (llm.c, uint32)";
    case ShardFormat::Megatron: return "Megatron-LM indexed dataset";
    case ShardFormat::RawU16: return "raw uint16";
  }
  return "?";
}

const char* to_string(Split s) { return s == Split::Train ? "train" : "val"; }

std::string TokenizerInfo::describe() const {
  switch (kind) {
    case Kind::Byte: return "byte-level";
    case Kind::Bpe: return "BPE " + file;
    case Kind::Unknown: break;
  }
  return "unknown";
}

std::optional<Tokenizer> load_tokenizer(const TokenizerInfo& info) {
  switch (info.kind) {
    case TokenizerInfo::Kind::Byte: return Tokenizer::byte_level();
    case TokenizerInfo::Kind::Bpe: return Tokenizer::from_file(info.file);
    case TokenizerInfo::Kind::Unknown: break;
  }
  return std::nullopt;
}

// ---- mapping -------------------------------------------------------------------------------------

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MT_INPUT(fd >= 0, path, ": cannot open (", std::strerror(errno), ")");
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file");
  }
  size_ = int64_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_t(size_), PROT_READ, MAP_SHARED, fd, 0);
    int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) throw Error(str(path, ": mmap failed (", std::strerror(err), ")"));
    data_ = static_cast<const uint8_t*>(p);
  } else {
    ::close(fd);
  }
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_t(size_));
}

// ---- the formats ---------------------------------------------------------------------------------

namespace {

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

Shard open_native(const std::string& path) {
  auto f = std::make_shared<MappedFile>(path);
  MT_INPUT(f->size() >= 4, path, ": truncated (", f->size(), " bytes; a native shard starts with a 1024-byte header)");
  int32_t magic = load<int32_t>(f->data());
  MT_INPUT(magic != kMagicEval, path, ": an llm.c eval file (magic ", kMagicEval,
           ") holds multiple-choice examples, not a token stream");
  MT_INPUT(magic == kMagicV1 || magic == kMagicV7, path, ": bad magic ", magic, " (a native/llm.c shard has ",
           kMagicV1, " or ", kMagicV7, "; a headerless uint16 token file is read with the spec raw:", path, ")");
  MT_INPUT(f->size() >= kNativeHeaderBytes, path, ": truncated header (", f->size(),
           " bytes; a native shard starts with a 1024-byte header)");
  int32_t version = load<int32_t>(f->data() + 4);
  int32_t want = magic == kMagicV1 ? 1 : 7;
  MT_INPUT(version == want, path, ": version ", version, " does not match magic ", magic, " (expected ", want, ")");
  int32_t count = load<int32_t>(f->data() + 8);
  MT_INPUT(count >= 0, path, ": negative token count ", count, " in the header");
  Shard s;
  s.path = path;
  s.format = magic == kMagicV1 ? ShardFormat::NativeV1 : ShardFormat::NativeV7;
  s.type = magic == kMagicV1 ? TokenType::U16 : TokenType::U32;
  s.tokens = count;
  int64_t expect = kNativeHeaderBytes + int64_t(count) * token_type_size(s.type);
  MT_INPUT(f->size() == expect, path, ": size ", f->size(), " bytes does not match its header (1024 + ", count,
           " tokens x ", token_type_size(s.type), " bytes = ", expect, ")");
  s.file = std::move(f);
  s.data_offset = kNativeHeaderBytes;
  return s;
}

Shard open_raw(const std::string& path) {
  auto f = std::make_shared<MappedFile>(path);
  MT_INPUT(f->size() % 2 == 0, path, ": odd size ", f->size(), " bytes (a raw file holds uint16 tokens)");
  Shard s;
  s.path = path;
  s.format = ShardFormat::RawU16;
  s.type = TokenType::U16;
  s.tokens = f->size() / 2;
  s.file = std::move(f);
  return s;
}

Shard open_megatron(const std::string& prefix) {
  const std::string idx_path = prefix + ".idx", bin_path = prefix + ".bin";
  auto idx = std::make_shared<MappedFile>(idx_path);
  auto bin = std::make_shared<MappedFile>(bin_path);
  const uint8_t* p = idx->data();
  const int64_t size = idx->size();
  constexpr int64_t kHeader = 9 + 8 + 1 + 8 + 8;
  MT_INPUT(size >= 9 && std::memcmp(p, "MMIDIDX\0\0", 9) == 0, idx_path,
           ": bad magic (a Megatron-LM index starts with \"MMIDIDX\\0\\0\")");
  MT_INPUT(size >= kHeader, idx_path, ": truncated header (", size, " bytes, need ", kHeader, ")");
  uint64_t version = load<uint64_t>(p + 9);
  MT_INPUT(version == 1, idx_path, ": unsupported version ", version, " (only 1)");
  uint8_t code = p[17];
  static const char* const kFloat[] = {"float64", "float32"};
  MT_INPUT(code != 6 && code != 7, idx_path, ": dtype code ", int(code), " (", kFloat[code == 7],
           ") is not an integer token type");
  TokenType type;
  switch (code) {
    case 1: type = TokenType::U8; break;
    case 2: type = TokenType::I8; break;
    case 3: type = TokenType::I16; break;
    case 4: type = TokenType::I32; break;
    case 5: type = TokenType::I64; break;
    case 8: type = TokenType::U16; break;
    default: throw InputError(str(idx_path, ": unknown dtype code ", int(code), " (Megatron-LM codes are 1-8)"));
  }
  const int64_t w = token_type_size(type);
  uint64_t n = load<uint64_t>(p + 18), d = load<uint64_t>(p + 26);
  constexpr uint64_t kLimit = uint64_t(1) << 40;
  MT_INPUT(n < kLimit && d < kLimit, idx_path, ": implausible counts (", n, " sequences, ", d, " documents)");
  const int64_t need = kHeader + 12 * int64_t(n) + 8 * int64_t(d);
  MT_INPUT(size >= need, idx_path, ": truncated (", size, " bytes; its header promises ", n, " sequences and ", d,
           " documents = ", need, " bytes)");
  // Multimodal indices append one mode byte per sequence; anything else is corruption.
  MT_INPUT(size == need || size == need + int64_t(n), idx_path, ": size ", size, " bytes does not match its header (",
           n, " sequences and ", d, " documents = ", need, " bytes)");
  const uint8_t* lengths = p + kHeader;
  const uint8_t* offsets = lengths + 4 * n;
  const uint8_t* docs = offsets + 8 * n;
  int64_t expect = 0;
  for (uint64_t i = 0; i < n; ++i) {
    int32_t len = load<int32_t>(lengths + 4 * i);
    int64_t off = load<int64_t>(offsets + 8 * i);
    MT_INPUT(len >= 0, idx_path, ": sequence ", i, " has negative length ", len);
    MT_INPUT(off == expect, idx_path, ": sequence ", i, " starts at byte ", off, ", expected ", expect,
             " (sequences must be contiguous)");
    expect += int64_t(len) * w;
  }
  int64_t last = 0;
  for (uint64_t i = 0; i < d; ++i) {
    int64_t doc = load<int64_t>(docs + 8 * i);
    MT_INPUT(doc >= last && doc <= int64_t(n), idx_path, ": document index ", i, " (", doc,
             ") is out of order or past the ", n, " sequences");
    last = doc;
  }
  MT_INPUT(bin->size() == expect, bin_path, ": size ", bin->size(), " bytes does not match ", idx_path, " (",
           expect / w, " tokens x ", w, " bytes = ", expect, ")");
  Shard s;
  s.path = bin_path;
  s.format = ShardFormat::Megatron;
  s.type = type;
  s.tokens = bin->size() / w;
  s.file = std::move(bin);
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string strip(const std::string& s, size_t n) { return s.substr(0, s.size() - n); }

// A file that is part of a Megatron pair gives its prefix; "" otherwise.
std::string megatron_prefix(const std::string& path) {
  if (ends_with(path, ".idx")) return strip(path, 4);
  if (ends_with(path, ".bin") && fs::exists(strip(path, 4) + ".idx")) return strip(path, 4);
  return "";
}

std::vector<std::string> expand_glob(const std::string& pattern) {
  glob_t g{};
  int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  MT_INPUT(!out.empty(), pattern, ": no file matches");
  return out;
}

int64_t get_count(const json& e, const char* key, const std::string& where, bool required) {
  auto it = e.find(key);
  if (it == e.end()) {
    MT_INPUT(!required, where, ".", key, ": missing");
    return -1;
  }
  MT_INPUT(it->is_number_integer() && it->get<int64_t>() >= 0, where, ".", key, ": must be an integer >= 0");
  return it->get<int64_t>();
}

TokenDataset open_index(const std::string& dir, Split split, int model_vocab) {
  const std::string index_path = (fs::path(dir) / "index.json").string();
  MT_INPUT(fs::exists(index_path), dir, ": a folder without index.json (name its shards with a glob, e.g. ", dir,
           "/*.bin)");
  json j = read_json_file(index_path);
  MT_INPUT(j.is_object() && j.contains("format") && j["format"] == "moetrain", index_path,
           ": format: expected \"moetrain\"");
  MT_INPUT(j.contains("version") && j["version"] == 1, index_path, ": version: only 1 is supported");
  MT_INPUT(!j.contains("tokenizer") || j["tokenizer"].is_object(), index_path, ": tokenizer: must be an object");
  MT_INPUT(!j.contains("splits") || j["splits"].is_object(), index_path, ": splits: must be an object");
  TokenDataset ds;
  ds.spec = dir;
  ds.description = str("moetrain dataset ", dir, " (index.json), ", to_string(split), " split");
  const json tok = j.value("tokenizer", json::object());
  MT_INPUT(!tok.contains("type") || tok["type"].is_string(), index_path, ": tokenizer.type: must be a string");
  std::string type = tok.value("type", "");
  if (type == "byte") {
    ds.tokenizer.kind = TokenizerInfo::Kind::Byte;
  } else if (type == "bpe") {
    MT_INPUT(tok.contains("file") && tok["file"].is_string(), index_path, ": tokenizer.file: missing");
    ds.tokenizer.kind = TokenizerInfo::Kind::Bpe;
    ds.tokenizer.file = (fs::path(dir) / tok["file"].get<std::string>()).string();
  } else {
    throw InputError(index_path + ": tokenizer.type: expected \"byte\" or \"bpe\"");
  }
  int64_t vocab = get_count(j, "vocab_size", index_path + ": vocab_size", true);
  MT_INPUT(vocab >= 1 && vocab <= std::numeric_limits<int32_t>::max(), index_path, ": vocab_size: out of range");
  MT_INPUT(model_vocab <= 0 || vocab <= model_vocab, index_path, ": vocab_size ", vocab,
           " is larger than the model's vocab_size ", model_vocab);
  ds.vocab_size = int(vocab);
  const json splits = j.value("splits", json::object());
  const char* name = to_string(split);
  if (!splits.contains(name)) return ds;
  MT_INPUT(splits[name].is_array(), index_path, ": splits.", name, ": must be an array");
  for (size_t i = 0; i < splits[name].size(); ++i) {
    const json& e = splits[name][i];
    std::string where = str(index_path, ": splits.", name, "[", i, "]");
    MT_INPUT(e.is_object() && e.contains("file") && e["file"].is_string(), where, ".file: missing");
    Shard s = open_native((fs::path(dir) / e["file"].get<std::string>()).string());
    int64_t tokens = get_count(e, "tokens", where, true);
    MT_INPUT(tokens == s.tokens, where, ": ", s.path, " holds ", s.tokens, " tokens, index.json says ", tokens);
    s.text_bytes = get_count(e, "bytes", where, false);
    s.characters = get_count(e, "characters", where, false);
    ds.shards.push_back(std::move(s));
  }
  return ds;
}

}  // namespace

TokenDataset open_dataset(const std::string& spec, Split split, int vocab_size) {
  MT_INPUT(!spec.empty(), "the dataset spec is empty (a folder with index.json, a glob of shards or a Megatron prefix)");
  const bool raw = spec.rfind("raw:", 0) == 0;
  const std::string path = raw ? spec.substr(4) : spec;
  if (!raw && fs::is_directory(path)) return open_index(path, split, vocab_size);

  TokenDataset ds;
  ds.spec = spec;
  ds.vocab_size = std::max(vocab_size, 0);
  const bool is_glob = path.find_first_of("*?[") != std::string::npos;
  std::vector<std::string> files;
  if (is_glob) {
    files = expand_glob(path);
  } else if (fs::exists(path)) {
    files = {path};
  } else {
    MT_INPUT(!raw && fs::exists(path + ".bin") && fs::exists(path + ".idx"), spec,
             ": no such file, folder or Megatron-LM prefix (", path, ".bin + ", path, ".idx)");
    files = {path + ".idx"};
  }
  std::vector<std::string> megatron_seen;
  for (const std::string& f : files) {
    if (raw) {
      ds.shards.push_back(open_raw(f));
      continue;
    }
    std::string prefix = megatron_prefix(f);
    if (prefix.empty()) {
      ds.shards.push_back(open_native(f));
    } else if (std::find(megatron_seen.begin(), megatron_seen.end(), prefix) == megatron_seen.end()) {
      megatron_seen.push_back(prefix);
      ds.shards.push_back(open_megatron(prefix));
    }
  }
  const Shard& first = ds.shards.front();
  bool mixed = std::any_of(ds.shards.begin(), ds.shards.end(), [&](const Shard& s) { return s.format != first.format; });
  ds.description = str(ds.shards.size(), " ", mixed ? "mixed" : to_string(first.format),
                       ds.shards.size() == 1 ? " file" : " files");
  return ds;
}

// ---- tokens --------------------------------------------------------------------------------------

int64_t TokenDataset::total_tokens() const {
  int64_t n = 0;
  for (const Shard& s : shards) n += s.tokens;
  return n;
}

int64_t TokenDataset::characters() const {
  int64_t n = 0;
  for (const Shard& s : shards) {
    if (s.characters < 0) return -1;
    n += s.characters;
  }
  return n;
}

int64_t TokenDataset::text_bytes() const {
  int64_t n = 0;
  for (const Shard& s : shards) {
    if (s.text_bytes < 0) return -1;
    n += s.text_bytes;
  }
  return n;
}

namespace {

// Copies n tokens of type T to int32 (out may be null: check only) and returns {min, max}.
template <typename T>
std::pair<int64_t, int64_t> convert(const uint8_t* src, int64_t n, int32_t* out) {
  T lo = std::numeric_limits<T>::max(), hi = std::numeric_limits<T>::lowest();
  for (int64_t i = 0; i < n; ++i) {
    T v = load<T>(src + i * int64_t(sizeof(T)));
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    if (out) out[i] = int32_t(v);
  }
  return {int64_t(lo), int64_t(hi)};
}

std::pair<int64_t, int64_t> convert(TokenType t, const uint8_t* src, int64_t n, int32_t* out) {
  switch (t) {
    case TokenType::U8: return convert<uint8_t>(src, n, out);
    case TokenType::I8: return convert<int8_t>(src, n, out);
    case TokenType::I16: return convert<int16_t>(src, n, out);
    case TokenType::U16: return convert<uint16_t>(src, n, out);
    case TokenType::I32: return convert<int32_t>(src, n, out);
    case TokenType::U32: return convert<uint32_t>(src, n, out);
    case TokenType::I64: return convert<int64_t>(src, n, out);
  }
  return {0, 0};
}

int64_t token_at(TokenType t, const uint8_t* src, int64_t i) {
  return convert(t, src + i * token_type_size(t), 1, nullptr).first;
}

// Tokens [begin, begin + count) of shard s, checked against [0, limit); returns the largest.
int64_t copy_checked(const Shard& s, int64_t begin, int64_t count, int64_t limit, int32_t* out) {
  const uint8_t* src = s.file->data() + s.data_offset + begin * token_type_size(s.type);
  auto [lo, hi] = convert(s.type, src, count, out);
  if (count > 0 && (lo < 0 || hi >= limit)) {
    for (int64_t i = 0; i < count; ++i) {
      int64_t v = token_at(s.type, src, i);
      MT_INPUT(v >= 0 && v < limit, s.path, ": token ", v, " at position ", begin + i, " is ",
               v < 0 ? "negative" : str(">= the vocab size ", limit));
    }
  }
  return hi;
}

}  // namespace

void TokenDataset::read(size_t s, int64_t begin, int64_t count, int32_t* out) const {
  MT_CHECK(s < shards.size() && begin >= 0 && count >= 0 && begin + count <= shards[s].tokens, "shard ", s,
           " range [", begin, ", ", begin + count, ")");
  const int64_t limit = vocab_size > 0 ? vocab_size : int64_t(std::numeric_limits<int32_t>::max()) + 1;
  copy_checked(shards[s], begin, count, limit, out);
}

int64_t TokenDataset::scan() const {
  const int64_t limit = vocab_size > 0 ? vocab_size : int64_t(std::numeric_limits<int32_t>::max()) + 1;
  int64_t hi = -1;
  constexpr int64_t kBlock = 1 << 20;
  for (const Shard& s : shards)
    for (int64_t b = 0; b < s.tokens; b += kBlock)
      hi = std::max(hi, copy_checked(s, b, std::min(kBlock, s.tokens - b), limit, nullptr));
  return hi;
}

}  // namespace mt::data
