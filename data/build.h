// Why: `moetrain data build` turns raw UTF-8 text (plain or gzip, files or stdin) into native shards
// and an index.json that records, per shard, its tokens and the bytes and characters of the text they
// encode (what BPC divides by). It streams: text is tokenized as it is read and tokens go straight to
// the shard files, so memory stays small whatever the corpus size.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mt::data {

struct BuildOptions {
  std::vector<std::string> inputs;      // text files (plain or gzip, by magic) or "-" for stdin
  std::string out_dir;
  std::string tokenizer = "byte";       // "byte" or the path of a Hugging Face tokenizer.json
  double val_fraction = 0.005;          // the val split's share of the tokens ...
  std::optional<int64_t> val_tokens;    // ... or its size in tokens (takes precedence)
  int64_t shard_tokens = 100'000'000;   // tokens per shard file (llm.c's default)
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
  double seconds = 0;
  std::vector<std::string> warnings;  // e.g. invalid UTF-8, a val cut that is not at a line start
};

// Writes OUT/train_000000.bin ... and OUT/val_000000.bin ... (native v1, or v7 for vocab > 65536),
// a copy of the tokenizer.json (BPE) and OUT/index.json:
//   {"format": "moetrain", "version": 1, "tokenizer": {"type": "byte"} | {"type": "bpe", "file":
//    "tokenizer.json"}, "vocab_size": V, "splits": {"train": [{"file", "tokens", "bytes",
//    "characters"}, ...], "val": [...]}}
// Inputs are concatenated with a newline between two inputs when the first does not end with one.
// The val split is the end of the text: the last val_tokens (or val_fraction of all) tokens, moved
// back to the start of a line. Every file is written under a temporary name and renamed into place.
// `on_progress` (may be empty) is called after every chunk of input.
BuildSummary build_dataset(const BuildOptions& options, const std::function<void(const BuildProgress&)>& on_progress);

}  // namespace mt::data
