// Why: see sample.h; the parts that do not depend on the compute type.
#include "engine/run/sample.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "data/shards.h"
#include "engine/core/check.h"

namespace mt {

int32_t pick_token(std::vector<float>& logits, const SampleOptions& o, std::mt19937_64& rng) {
  const size_t v = logits.size();
  if (o.temperature <= 0) return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<int32_t> ids(v);
  std::iota(ids.begin(), ids.end(), 0);
  size_t k = o.top_k > 0 ? std::min(v, size_t(o.top_k)) : v;
  // The k largest, in a fixed order (ties by id) so that every rank draws the same.
  auto larger = [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b); };
  std::partial_sort(ids.begin(), ids.begin() + std::ptrdiff_t(k), ids.end(), larger);
  const double top = logits[size_t(ids[0])];
  std::vector<double> w(k);
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += w[i] = std::exp((double(logits[size_t(ids[i])]) - top) / o.temperature);
  double r = std::uniform_real_distribution<double>(0, sum)(rng);
  for (size_t i = 0; i < k; ++i) {
    if (r < w[i]) return ids[i];
    r -= w[i];
  }
  return ids[k - 1];
}

std::vector<int32_t> prompt_tokens(data::Tokenizer& tok, const std::string& prompt) {
  std::vector<int32_t> ids;
  if (!prompt.empty()) {
    tok.encode(prompt, &ids);
  } else if (tok.end_of_document() >= 0) {
    ids.push_back(tok.end_of_document());
  } else {
    tok.encode("\n", &ids);
  }
  return ids;
}

data::Tokenizer run_tokenizer(const RunConfig& cfg) {
  MT_INPUT(!cfg.data.train.empty(), cfg.name, ": data.train is empty: no dataset to take the tokenizer from");
  const data::TokenDataset ds = data::open_dataset(cfg.data.train, data::Split::Train, cfg.model.vocab_size);
  std::optional<data::Tokenizer> tok = data::load_tokenizer(ds.tokenizer);
  MT_INPUT(tok.has_value(), cfg.data.train, ": the dataset's tokenizer is unknown (no index.json): cannot decode "
           "samples (build the data with `moetrain data build`)");
  MT_INPUT(tok->vocab_size() <= cfg.model.vocab_size, cfg.data.train, ": the tokenizer's vocab (", tok->vocab_size(),
           ") exceeds model.vocab_size (", cfg.model.vocab_size, ")");
  return *tok;
}

std::string quote_sample(const std::string& text) {
  std::string out = "  | ";
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = uint8_t(text[i]);
    if (c == '\n') {
      out += "\n  | ";
    } else if (c < 0x20 || c == 0x7F) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    } else {
      out += char(c);
    }
  }
  return out + "\n";
}

}  // namespace mt
