// Why: validation must be the same fixed set of text for every run that shares a val split, so that
// BPC numbers compare across runs, layouts and resumes. The set is the first windows of the val split
// in order (no shuffle), and it carries the characters of the text its targets encode, so that
// BPC = (sum of NLL in nats / ln 2) / characters (DESIGN.md), independent of the tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "data/shards.h"

namespace mt::data {

class EvalSet {
 public:
  // The first n windows of `val` (S + 1 tokens at stride S), n = floor(tokens / S) rounded down to a
  // multiple of `multiple` (micro-batch x dp) and at least `multiple`. InputError when the split holds
  // fewer than `multiple` windows.
  EvalSet(std::shared_ptr<const TokenDataset> val, int seq_len, int64_t tokens, int multiple);

  int64_t sequences() const { return n_; }
  const int32_t* window(int64_t i) const { return windows_.data() + size_t(i) * size_t(seq_len_ + 1); }
  int64_t target_tokens() const { return n_ * seq_len_; }
  // UTF-8 characters and bytes of the text the target tokens decode to; -1 when the tokenizer is not
  // known (a raw or Megatron dataset): then only loss, not BPC, can be reported.
  double characters() const { return characters_; }
  double text_bytes() const { return bytes_; }

 private:
  int seq_len_;
  int64_t n_ = 0;
  std::vector<int32_t> windows_;
  double characters_ = -1, bytes_ = -1;
};

struct EvalResult {
  double nll_sum = 0;      // nats over all target tokens
  int64_t tokens = 0;
  double characters = -1;
  double text_bytes = -1;
  double loss() const { return tokens > 0 ? nll_sum / double(tokens) : 0; }
  double bpc() const;              // bits per character, -1 if characters are unknown
  double bits_per_byte() const;    // bits per UTF-8 byte, -1 if unknown
};

}  // namespace mt::data
