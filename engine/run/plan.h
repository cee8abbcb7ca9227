// Why: the resource accounting of the paper (DESIGN.md "Resource accounting"): from the architecture
// alone, the exact parameter counts N and Na, the activation rate, FLOPs per token M, and from the
// budget the consumed tokens D, compute C, unique tokens D-hat, epochs and iterations; "auto" batch
// size and learning rate from the Step Law. `moetrain plan` prints it and the trainer runs by it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "engine/run/config.h"

namespace mt {

// Exact parameter counts by family (whole model, unsharded).
struct ParamCounts {
  int64_t attention = 0;     // wq, wk, wv, wo of every layer
  int64_t dense_ffn = 0;     // w1, w2, w3 of dense layers
  int64_t experts = 0;       // all routed experts of all MoE layers
  int64_t experts_active = 0;// K routed experts per MoE layer
  int64_t shared = 0;        // shared experts
  int64_t router = 0;        // router weights
  int64_t norms = 0;         // attn_norm, ffn_norm per layer, final_norm
  int64_t embedding = 0;     // embed (and lm_head unless tied): not in N
  int64_t total() const { return attention + dense_ffn + experts + shared + router + norms; }
  int64_t active() const { return attention + dense_ffn + experts_active + shared + router + norms; }
};

ParamCounts count_params(const ModelConfig& m);

// Training FLOPs per token by the paper's convention: M = 6 Na + 12 L Dm S.
double flops_per_token(const ModelConfig& m);

// The Step Law of Li et al. 2025 (arXiv 2503.04715): optimal peak learning rate and batch size (in
// tokens) as power laws of non-embedding parameters N and consumed tokens D.
double step_law_lr(double n_params, double tokens);
double step_law_batch_tokens(double tokens);

struct Plan {
  std::string name;
  ParamCounts counts;
  int64_t n_params = 0;         // N: non-embedding parameters
  int64_t n_active = 0;         // Na: with K routed experts per MoE layer
  double activation_rate = 0;   // ra = Na / N
  double flops_per_token = 0;   // M
  double tokens = 0;            // D consumed = iters * B * S
  double compute = 0;           // C = M * D
  double unique_tokens = 0;     // D-hat
  double epochs = 0;            // D / D-hat
  int64_t iters = 0;
  double d_over_n = 0;
  int batch_size = 0;           // B in sequences
  bool batch_auto = false;
  double lr = 0;
  bool lr_auto = false;
  int warmup_iters = 0;
  bool warmup_auto = false;
  // Shape ratios of the paper (Table 1): alpha = Dffn/Dm, mu = (Dse + E De)/Dm,
  // beta = (Dse + K De)/Dm, zeta = Dm/L, gamma = S/Dm.
  double alpha = 0, mu = 0, beta = 0, zeta = 0, gamma = 0;

  json to_json() const;
};

// Resolves a run's budget and "auto" values. match_compute manifests are loaded from disk (their C is
// taken); `depth` guards against cycles.
Plan make_plan(const RunConfig& cfg, int depth = 0);

// The auto warmup: clip(0.01 * iters, 200, 2000), and never more than a tenth of a short run.
int auto_warmup(int64_t iters);

// Returns the manifest with every "auto" replaced and the budget resolved to train.tokens (the
// tokens actually consumed), so that the result re-plans to the same run (written as config.json).
json resolved_manifest(const RunConfig& cfg, const Plan& plan);

}  // namespace mt
