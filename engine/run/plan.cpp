// Why: see plan.h. Counts are exact (every weight matrix, router and norm); FLOPs follow the paper.
#include "engine/run/plan.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "engine/core/check.h"

namespace mt {

ParamCounts count_params(const ModelConfig& m) {
  ParamCounts c;
  const int64_t dm = m.d_model, qkv = int64_t(m.n_heads) * m.head_dim;
  for (int l = 0; l < m.n_layers; ++l) {
    c.attention += 4 * dm * qkv;
    c.norms += 2 * dm;
    if (m.is_moe_layer(l)) {
      c.experts += int64_t(m.moe.n_experts) * 3 * dm * m.moe.d_expert;
      c.experts_active += int64_t(m.moe.top_k) * 3 * dm * m.moe.d_expert;
      c.shared += 3 * dm * m.moe.d_shared;
      c.router += int64_t(m.moe.n_experts) * dm;
    } else {
      c.dense_ffn += 3 * dm * m.d_ffn;
    }
  }
  c.norms += dm;  // final_norm
  c.embedding = int64_t(m.vocab_size) * dm * (m.tie_embeddings ? 1 : 2);
  return c;
}

double flops_per_token(const ModelConfig& m) {
  double na = double(count_params(m).active());
  return 6.0 * na + 12.0 * m.n_layers * double(m.d_model) * m.seq_len;
}

double step_law_lr(double n_params, double tokens) {
  return 1.79 * std::pow(n_params, -0.713) * std::pow(tokens, 0.307);
}

double step_law_batch_tokens(double tokens) { return 0.58 * std::pow(tokens, 0.571); }

int auto_warmup(int64_t iters) {
  int64_t w = std::clamp<int64_t>(int64_t(0.01 * double(iters)), 200, 2000);
  return int(std::min<int64_t>(w, std::max<int64_t>(iters / 10, 0)));
}

Plan make_plan(const RunConfig& cfg, int depth) {
  const ModelConfig& m = cfg.model;
  const TrainConfig& t = cfg.train;
  Plan p;
  p.name = cfg.name;
  p.counts = count_params(m);
  p.n_params = p.counts.total();
  p.n_active = p.counts.active();
  p.activation_rate = double(p.n_active) / double(p.n_params);
  p.flops_per_token = flops_per_token(m);

  double d_req = 0;
  switch (t.budget) {
    case Budget::Tokens: d_req = t.tokens; break;
    case Budget::Compute: d_req = t.compute / p.flops_per_token; break;
    case Budget::MatchCompute: {
      MT_INPUT(depth < 8, t.match_compute, ": train.match_compute: chain of more than 8 manifests (a cycle?)");
      json other = read_json_file(t.match_compute);
      MT_INPUT(!is_sweep_manifest(other), t.match_compute,
               ": train.match_compute must name a run manifest, not a sweep");
      std::string dir = std::filesystem::path(t.match_compute).parent_path().string();
      RunConfig oc = parse_run(other, t.match_compute, dir.empty() ? "." : dir);
      Plan op = make_plan(oc, depth + 1);
      d_req = op.compute / p.flops_per_token;
      break;
    }
  }
  const std::string who = cfg.name.empty() ? "manifest" : cfg.name;
  MT_INPUT(d_req <= kMaxTokens, who, ": the budget gives D = ", d_req, " tokens, more than ", kMaxTokens);
  const int S = m.seq_len;
  if (t.batch_size > 0) {
    p.batch_size = t.batch_size;
  } else {
    p.batch_auto = true;
    // Round to a multiple of 8 sequences (and of the micro-batch), as the paper's batch sizes are.
    int q = 8;
    if (t.micro_batch_size > 0) q = std::lcm(q, t.micro_batch_size);
    double b = step_law_batch_tokens(d_req) / S;
    MT_INPUT(b <= kMaxBatch, who, ": the Step Law batch for D = ", d_req, " is ", b, " sequences, more than ",
             kMaxBatch, "; give train.batch_size");
    p.batch_size = std::max<int>(q, int(std::llround(b / q)) * q);
  }
  const double tokens_per_iter = double(p.batch_size) * S;
  MT_INPUT(d_req / tokens_per_iter <= kMaxSteps, who, ": ", d_req, " tokens in batches of ", tokens_per_iter,
           " are more than ", kMaxSteps, " steps");
  p.iters = std::max<int64_t>(1, std::llround(d_req / tokens_per_iter));
  p.tokens = double(p.iters) * tokens_per_iter;
  p.compute = p.flops_per_token * p.tokens;
  p.d_over_n = p.tokens / double(p.n_params);

  switch (cfg.data.reuse) {
    case Reuse::None: p.unique_tokens = p.tokens; break;
    case Reuse::Loose: p.unique_tokens = p.tokens / 2; break;
    case Reuse::Strict:
      // Checked against the budget as given; the rounding of iterations may then consume a hair
      // fewer tokens than D-hat, and a run never sees more unique tokens than it consumes.
      p.unique_tokens = std::min(cfg.data.unique_tokens, p.tokens);
      MT_INPUT(cfg.data.unique_tokens <= d_req * (1 + 1e-9), cfg.name.empty() ? "manifest" : cfg.name,
               ": data.unique_tokens (", cfg.data.unique_tokens, ") is larger than the consumed tokens D (",
               d_req, ") with reuse \"strict\"");
      MT_INPUT(p.unique_tokens >= S, cfg.name.empty() ? "manifest" : cfg.name, ": data.unique_tokens (",
               p.unique_tokens, ") is less than one sequence (model.seq_len = ", S, ")");
      break;
  }
  p.epochs = p.tokens / p.unique_tokens;

  if (t.lr > 0) {
    p.lr = t.lr;
  } else {
    p.lr_auto = true;
    p.lr = step_law_lr(double(p.n_params), p.tokens);
  }
  if (t.warmup_iters >= 0) {
    p.warmup_iters = t.warmup_iters;
  } else {
    p.warmup_auto = true;
    p.warmup_iters = auto_warmup(p.iters);
  }

  const double dm = m.d_model;
  p.alpha = m.d_ffn / dm;
  if (m.moe.enabled) {
    p.mu = (m.moe.d_shared + double(m.moe.n_experts) * m.moe.d_expert) / dm;
    p.beta = (m.moe.d_shared + double(m.moe.top_k) * m.moe.d_expert) / dm;
  }
  p.zeta = dm / m.n_layers;
  p.gamma = S / dm;
  return p;
}

json Plan::to_json() const {
  json j;
  j["name"] = name;
  j["n_params"] = n_params;
  j["n_active"] = n_active;
  j["activation_rate"] = activation_rate;
  j["flops_per_token"] = flops_per_token;
  j["tokens"] = tokens;
  j["compute"] = compute;
  j["unique_tokens"] = unique_tokens;
  j["epochs"] = epochs;
  j["iters"] = iters;
  j["batch_size"] = batch_size;
  j["batch_tokens"] = tokens / double(std::max<int64_t>(iters, 1));
  j["batch_auto"] = batch_auto;
  j["lr"] = lr;
  j["lr_auto"] = lr_auto;
  j["warmup_iters"] = warmup_iters;
  j["d_over_n"] = d_over_n;
  j["alpha"] = alpha;
  j["mu"] = mu;
  j["beta"] = beta;
  j["zeta"] = zeta;
  j["gamma"] = gamma;
  j["n_embedding_params"] = counts.embedding;
  j["params_by_family"] = {{"attention", counts.attention}, {"dense_ffn", counts.dense_ffn},
                           {"experts", counts.experts},     {"shared", counts.shared},
                           {"router", counts.router},       {"norms", counts.norms}};
  return j;
}

json resolved_manifest(const RunConfig& cfg, const Plan& plan) {
  json j = cfg.source;
  json& t = j["train"];
  t.erase("compute");
  t.erase("match_compute");
  t["tokens"] = plan.tokens;
  t["batch_size"] = plan.batch_size;
  t["lr"] = plan.lr;
  t["warmup_iters"] = plan.warmup_iters;
  if (!cfg.data.train.empty() || !cfg.data.val.empty()) {
    // Paths are written absolute so that the file works from any folder.
    const std::string cwd = std::filesystem::current_path().string();
    if (!cfg.data.train.empty()) j["data"]["train"] = resolve_dataset_spec(cfg.data.train, cwd);
    if (!cfg.data.val.empty()) j["data"]["val"] = resolve_dataset_spec(cfg.data.val, cwd);
  }
  if (cfg.data.reuse == Reuse::Strict) j["data"]["unique_tokens"] = plan.unique_tokens;
  return j;
}

}  // namespace mt
