// Why: see eval.h. Characters are counted on the decoded bytes of the target tokens (UTF-8 lead
// bytes), exactly, for byte-level and BPE datasets alike.
#include "data/eval.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "data/loader.h"
#include "engine/core/check.h"

namespace mt::data {

EvalSet::EvalSet(std::shared_ptr<const TokenDataset> val, int seq_len, int64_t tokens, int multiple)
    : seq_len_(seq_len) {
  MT_CHECK(multiple > 0, "eval multiple must be positive");
  WindowIndex index(val, seq_len);
  MT_INPUT(index.size() >= multiple, val->spec, ": the validation split holds ", index.size(),
           " sequences of ", seq_len + 1, " tokens, fewer than the ", multiple,
           " one evaluation step needs (micro-batch x data-parallel ranks)");
  n_ = std::max<int64_t>(tokens / seq_len, multiple);
  n_ = std::min(n_, index.size()) / multiple * multiple;
  const size_t stride = size_t(seq_len) + 1;
  windows_.resize(size_t(n_) * stride);
  for (int64_t i = 0; i < n_; ++i) index.read(i, windows_.data() + size_t(i) * stride);

  std::optional<Tokenizer> tok = load_tokenizer(val->tokenizer);
  if (!tok) return;
  double chars = 0, bytes = 0;
  for (int64_t i = 0; i < n_; ++i) {
    const int32_t* w = window(i);
    for (int t = 1; t <= seq_len; ++t) {
      std::string_view b = tok->token_bytes(w[t]);
      bytes += double(b.size());
      for (char c : b) chars += (uint8_t(c) & 0xC0) != 0x80 ? 1 : 0;
    }
  }
  characters_ = chars;
  bytes_ = bytes;
}

double EvalResult::bpc() const {
  return characters > 0 ? nll_sum / std::log(2.0) / characters : -1;
}

double EvalResult::bits_per_byte() const {
  return text_bytes > 0 ? nll_sum / std::log(2.0) / text_bytes : -1;
}

}  // namespace mt::data
