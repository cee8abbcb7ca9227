// Why: training reads token shards that were written by us, by llm.c or by Megatron-LM, and a
// manifest names them with one string (data.train / data.val). This is where such a string becomes
// a list of memory-mapped shards with a vocabulary and, when known, a tokenizer and the characters
// behind the tokens (BPC needs them). Corrupt input is an InputError naming the file, never a crash.
//
// Formats (all little-endian):
//  - native = llm.c: 256 x int32 header (1024 bytes): [0] magic, [1] version, [2] token count, then
//    the tokens. 20240520 / version 1: uint16 tokens; 20240801 / version 7: uint32 tokens. The file
//    is exactly 1024 + count x width bytes. (llm.c's eval files, magic 20240522, are recognised and
//    refused: they hold multiple-choice examples, not a token stream.)
//  - Megatron-LM indexed dataset, version 1: PREFIX.idx = "MMIDIDX\0\0", u64 version, u8 dtype code
//    (1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 6 f64, 7 f32, 8 u16), u64 sequence count n, u64 document count
//    d, int32[n] lengths, int64[n] byte offsets, int64[d] document indices; PREFIX.bin = the tokens.
//    The whole .bin is one token stream (documents are not separated further).
//  - raw uint16 tokens without a header (nanoGPT's train.bin): spec "raw:FILE" or "raw:GLOB", since
//    a headerless file cannot be told from a corrupt one. Its vocab comes from the manifest.
//
// Token ids are validated lazily: every read() checks the tokens it copies against the vocab (a
// vectorised min/max, negligible next to the copy), so opening a dataset of any size costs only its
// headers and indices; scan() checks every token at once (what `moetrain data inspect` does).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace mt::data {

enum class TokenType { U8, I8, I16, U16, I32, U32, I64 };
int token_type_size(TokenType t);
const char* to_string(TokenType t);

enum class ShardFormat { NativeV1, NativeV7, Megatron, RawU16 };
const char* to_string(ShardFormat f);  // "native v1 (llm.c, uint16)", ...

inline constexpr int32_t kMagicV1 = 20240520;    // llm.c / native, uint16 tokens
inline constexpr int32_t kMagicV7 = 20240801;    // llm.c / native, uint32 tokens
inline constexpr int32_t kMagicEval = 20240522;  // llm.c multiple-choice eval file
inline constexpr int64_t kNativeHeaderBytes = 1024;

// A read-only memory mapping of a whole file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // InputError if it cannot be opened
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  int64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  int64_t size_ = 0;
};

struct Shard {
  std::string path;             // the token file (PREFIX.bin for Megatron)
  ShardFormat format = ShardFormat::NativeV1;
  TokenType type = TokenType::U16;
  int64_t tokens = 0;
  int64_t text_bytes = -1;      // UTF-8 bytes its tokens decode to (from index.json; -1 unknown)
  int64_t characters = -1;      // UTF-8 characters of that text (-1 unknown)
  std::shared_ptr<const MappedFile> file;
  int64_t data_offset = 0;      // byte offset of token 0 in the file
};

struct TokenizerInfo {
  enum class Kind { Unknown, Byte, Bpe } kind = Kind::Unknown;
  std::string file;             // the tokenizer.json (Bpe)
  std::string describe() const; // "byte-level", "BPE DIR/tokenizer.json", "unknown"
};

// The tokenizer a dataset was built with; nullopt when unknown.
std::optional<Tokenizer> load_tokenizer(const TokenizerInfo& info);

enum class Split { Train, Val };
const char* to_string(Split s);

struct TokenDataset {
  std::string spec;             // what it was opened from
  std::string description;      // e.g. "moetrain dataset DIR (index.json), train split"
  int vocab_size = 0;           // token ids are checked against it; 0 = unknown (no check but int32 range)
  TokenizerInfo tokenizer;
  std::vector<Shard> shards;

  int64_t total_tokens() const;
  int64_t characters() const;   // sum over shards, -1 if any shard's is unknown
  int64_t text_bytes() const;   // likewise

  // Copies tokens [begin, begin + count) of shard `s` into `out` as int32, checking each id is in
  // [0, vocab_size): an InputError naming the file and the token's position otherwise.
  void read(size_t s, int64_t begin, int64_t count, int32_t* out) const;
  // Checks every token of every shard (InputError at the first bad one); returns the largest id.
  int64_t scan() const;
};

// Opens a dataset spec (a manifest's data.train / data.val, or `moetrain data inspect`'s PATH):
//  - a folder with index.json: its `split` (empty when the folder has none, e.g. no val split);
//  - a glob of shard files ("dir/*.bin", native or Megatron .bin/.idx pairs, sorted by name);
//  - one native file, or a Megatron prefix (PATH.bin + PATH.idx, or either file's name);
//  - "raw:FILE" or "raw:GLOB" for headerless uint16 token files.
// `vocab_size` is the model's (manifest model.vocab_size; 0 if not known): tokens are checked
// against index.json's vocab_size when there is one (which must then not exceed the model's),
// otherwise against this. Only headers and indices are read here; see read() for the tokens.
TokenDataset open_dataset(const std::string& spec, Split split, int vocab_size);

}  // namespace mt::data
