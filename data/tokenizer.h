// Why: text becomes tokens here, and tokens become bytes again (for BPC's character counts and for a
// readable sample). Two tokenizers: byte-level (vocab 256, token = byte value) and the byte-level BPE
// of a Hugging Face tokenizer.json (GPT-2 and Llama-3 style). The BPE must give exactly the ids the
// Hugging Face tokenizer gives, so a dataset built here matches one built with the reference tools:
// tests/test_data_tokenizer.cpp compares it with an independent JavaScript encoder on real text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mt::data {

enum class TokenizerKind { Byte, Bpe };

struct BpeModel;  // vocab, merges, added tokens and pre-tokenizer of a tokenizer.json

class Tokenizer {
 public:
  static Tokenizer byte_level();
  Tokenizer(const Tokenizer& other);  // shares the model, starts an empty cache
  Tokenizer& operator=(const Tokenizer& other);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();
  // Loads a Hugging Face tokenizer.json: model.type "BPE" with vocab and merges (either format),
  // added tokens, and a ByteLevel pre-tokenizer (GPT-2 regex) or a Split with the Llama-3 regex
  // followed by ByteLevel. Anything else (normalizers, other patterns, add_prefix_space, byte
  // fallback, lstrip/rstrip added tokens) is an InputError naming the file and the field.
  static Tokenizer from_file(const std::string& path);

  TokenizerKind kind() const;
  int vocab_size() const;            // largest id + 1
  const std::string& file() const;   // the tokenizer.json ("" for byte-level)
  std::string describe() const;      // "byte-level (vocab 256)" or "BPE <file> (vocab N, GPT-2 split)"
  // The added token that ends a document (GPT-2's "<|endoftext|>", Llama-3's "<|end_of_text|>"); -1
  // if there is none (byte-level).
  int32_t end_of_document() const;

  // Appends the ids of `text`. Added tokens written literally in the text ("<|endoftext|>") are
  // matched first (leftmost, longest), as Hugging Face does; no BOS/EOS is added. Not thread-safe:
  // it keeps a cache of word encodings (copies of a Tokenizer share the model, not the cache).
  void encode(std::string_view text, std::vector<int32_t>* out);

  // Like encode(), but added tokens written in the text are text like any other (tiktoken's
  // encode_ordinary): what `data build` encodes documents with, so that only the end-of-document
  // token it appends ends a document, and a document's characters are all counted.
  void encode_ordinary(std::string_view text, std::vector<int32_t>* out);

  // For streaming: encodes the longest prefix of `text` whose ids cannot change whatever text
  // follows, and returns its length in bytes (0 when there is none yet). Encoding a stream chunk by
  // chunk this way, passing the unconsumed rest again with the next chunk and ending with encode()
  // of the remainder, gives exactly the ids of encode() on the whole text.
  size_t encode_prefix(std::string_view text, std::vector<int32_t>* out);

  // The bytes token `id` decodes to (empty for an id not in the vocab).
  std::string_view token_bytes(int32_t id) const;
  std::string decode(const int32_t* ids, size_t n) const;

 private:
  explicit Tokenizer(std::shared_ptr<const BpeModel> model);
  void encode_segment(std::string_view text, bool followed_by_text, std::vector<int32_t>* out);
  void encode_word(const uint8_t* p, size_t n, std::vector<int32_t>* out);

  std::shared_ptr<const BpeModel> model_;
  struct Cache;
  std::unique_ptr<Cache> cache_;  // word -> ids, and the scratch buffers of the scanner
};

}  // namespace mt::data
