// Why: `moetrain data build` turns corpora as they come (plain text or JSON Lines, plain, gzip or
// zstd, files, globs, folders or stdin) into native shards (and optionally a Megatron-LM pair) and an
// index.json that records, per shard, its tokens and the bytes and characters of the text they encode
// (what BPC divides by). It streams: pieces of input are tokenized on worker threads and their tokens
// written in input order, so memory stays small whatever the corpus size and the output does not
// depend on the number of workers.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mt::data {

enum class InputFormat { Auto, Text, Jsonl };  // Auto: JSON Lines by file name (is_jsonl_name)

struct BuildOptions {
  std::vector<std::string> inputs;      // files, globs, folders (plain, gzip or zstd, by magic) or "-"
  std::string out_dir;
  std::string tokenizer = "byte";       // "byte" or the path of a Hugging Face tokenizer.json
  double val_fraction = 0.005;          // the val split's share of the tokens ...
  std::optional<int64_t> val_tokens;    // ... or its size in tokens (takes precedence)
  int64_t shard_tokens = 100'000'000;   // tokens per shard file (llm.c's default)
  InputFormat format = InputFormat::Auto;
  std::string text_key = "text";        // JSON Lines: the field that holds a document's text
  bool skip_bad_lines = false;          // JSON Lines: count malformed lines instead of failing
  int workers = 0;                      // tokenizing threads (0: one per core)
  bool megatron = false;                // also write OUT/<text_key>_document.bin/.idx
  size_t piece_bytes = size_t(1) << 20; // text per piece of work, at least (tests make pieces small)
};

struct BuildProgress {
  int64_t input_bytes = 0;   // bytes read from the inputs (compressed, for gzip)
  int64_t input_total = -1;  // their total size (-1: unknown, e.g. stdin)
  int64_t text_bytes = 0;    // uncompressed text so far
  int64_t tokens = 0;
  double seconds = 0;
};

struct SplitSummary {
  int shards = 0;
  int64_t tokens = 0, text_bytes = 0, characters = 0;
};

struct BuildSummary {
  SplitSummary train, val;
  int vocab_size = 0;
  int64_t input_bytes = 0;
  int64_t files = 0, jsonl_files = 0, gzip_files = 0, zstd_files = 0;
  int64_t documents = 0, bad_lines = 0, empty_documents = 0;
  int32_t eod_token = -1;               // the token after each document (-1: none, byte-level)
  std::string megatron_prefix;          // when written
  int workers = 0;
  double seconds = 0;
  std::vector<std::string> warnings;  // e.g. invalid UTF-8, a val cut that is not at a line start
};

// Writes OUT/train_000000.bin ... and OUT/val_000000.bin ... (native v1, or v7 for vocab > 65536),
// a copy of the tokenizer.json (BPE) and OUT/index.json:
//   {"format": "moetrain", "version": 1, "tokenizer": {"type": "byte"} | {"type": "bpe", "file":
//    "tokenizer.json"}, "vocab_size": V, "splits": {"train": [{"file", "tokens", "bytes",
//    "characters"[, "documents"]}, ...], "val": [...]}, "documents": {"count": N, "separator": ...,
//    ["end_token": id, "end_text": "<|endoftext|>"]}[, "megatron": {...}]}
// A document is a JSON Lines record or a whole plain text file. With an end-of-document token (GPT-2's
// <|endoftext|>) it follows every document (its bytes and characters count 0, and a shard's
// "documents" counts them); without one (byte-level), a newline goes between two documents when the
// first does not end with one (a real character of the text).
// The val split is the end of the text: the last val_tokens (or val_fraction of all) tokens, moved
// back to the start of a line. Every file is written under a temporary name and renamed into place.
// `on_progress` (may be empty) is called after every chunk of input.
BuildSummary build_dataset(const BuildOptions& options, const std::function<void(const BuildProgress&)>& on_progress);

}  // namespace mt::data
