// Why: a look at what a model learned: text generated from a checkpoint (`moetrain sample`) or from
// the model being trained (at each eval when eval.sample_tokens > 0). Generation is the simplest that
// is right: a full forward over the last seq_len tokens for every new token (no KV cache), the next
// token drawn from the logits at the last position (greedy at temperature 0, else softmax(logits / T)
// over the top-k). Every rank of a parallel layout runs it with the same seed, so all draw the same.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "comm/grid.h"
#include "data/tokenizer.h"
#include "engine/core/check.h"
#include "engine/model/model.h"
#include "engine/run/config.h"
#include "engine/run/weights.h"

namespace mt {

struct SampleOptions {
  int64_t tokens = 200;       // new tokens
  double temperature = 1.0;   // 0: greedy (the most likely token)
  int top_k = 0;              // draw among the k most likely (0: all)
  uint64_t seed = 1;
};

// The next token from a row of logits (at temperature 0 the first largest).
int32_t pick_token(std::vector<float>& logits, const SampleOptions& o, std::mt19937_64& rng);

// The tokens a prompt starts from: its encoding, or (empty prompt) the end-of-document token, or a
// newline where the tokenizer has none.
std::vector<int32_t> prompt_tokens(data::Tokenizer& tok, const std::string& prompt);

// The tokenizer of the dataset cfg.data.train was built with; an InputError when it is unknown.
data::Tokenizer run_tokenizer(const RunConfig& cfg);

// Appends o.tokens new tokens to `context` (at least one token) with `model` (all its micro-batch's
// windows get the same tokens; window 0's logits are used).
template <typename T>
void generate(Model<T>& model, std::vector<int32_t>* context, const SampleOptions& o) {
  const int S = model.config().seq_len, B = model.micro_batch();
  const int V = model.config().vocab_size;
  MT_CHECK(!context->empty(), "generation needs at least one token to start from");
  std::mt19937_64 rng(o.seed);
  std::vector<int32_t> windows(size_t(B) * size_t(S + 1), 0);
  std::vector<float> logits(static_cast<size_t>(V));
  for (int64_t i = 0; i < o.tokens; ++i) {
    const size_t n = std::min(context->size(), size_t(S));
    for (int b = 0; b < B; ++b)
      std::copy(context->end() - std::ptrdiff_t(n), context->end(), windows.begin() + std::ptrdiff_t(b) * (S + 1));
    model.forward_logits(windows.data(), B, int(n) - 1, logits.data());
    context->push_back(pick_token(logits, o, rng));
  }
}

// The prompt followed by o.tokens generated tokens, decoded.
template <typename T>
std::string sample_text(Model<T>& model, data::Tokenizer& tok, const std::string& prompt, const SampleOptions& o) {
  std::vector<int32_t> ctx = prompt_tokens(tok, prompt);
  const size_t start = prompt.empty() ? ctx.size() : 0;  // an empty prompt's start token is not shown
  generate(model, &ctx, o);
  return tok.decode(ctx.data() + start, ctx.size() - start);
}

// `moetrain sample`: loads a checkpoint (any layout, as export and eval do) into a model of cfg
// (micro-batch 1) and returns sample_text().
template <typename T>
std::string sample_checkpoint(const RunConfig& cfg, const std::string& ckpt_dir, Ops<T>& ops, const ProcessGrid& grid,
                              const std::string& prompt, const SampleOptions& o) {
  data::Tokenizer tok = run_tokenizer(cfg);
  Model<T> model(cfg.model, 1, grid, ops);
  load_model_weights(model, ckpt_dir, ops.device());
  return sample_text(model, tok, prompt, o);
}

// Text made readable on a terminal: each line indented by "  | ", control characters as \xNN.
std::string quote_sample(const std::string& text);

// The trainer's look at the model at each eval (eval.sample_tokens > 0): a sample from the start of a
// document (temperature 0.8, top-k 40, the run's seed), printed by the root rank.
template <typename T>
void print_eval_sample(Model<T>& model, const RunConfig& cfg, bool root) {
  data::Tokenizer tok = run_tokenizer(cfg);
  SampleOptions o;
  o.tokens = cfg.eval.sample_tokens;
  o.temperature = 0.8;
  o.top_k = 40;
  o.seed = cfg.train.seed;
  const std::string text = sample_text(model, tok, "", o);
  if (!root) return;
  std::printf("sample:\n%s", quote_sample(text).c_str());
  std::fflush(stdout);
}

}  // namespace mt
