// Why: the model's shape and the optimizer's recipe as plain structs, so that the model code needs
// nothing of the run around it. The manifest parser (engine/run/config) fills them.
#pragma once

#include "engine/ops/ops.h"  // AttentionImpl

namespace mt {

enum class MoeLayout { Full, OneDense, Interleave };

const char* to_string(MoeLayout layout);

// How the router's load is balanced (model.moe.balance): the balance loss (aux, the paper's), the
// aux-loss-free expert bias of DeepSeek-V3 (bias: a per-expert bias added to the router scores for the
// top-K only, moved after each optimizer step by bias_rate * sign(mean load - load); the balance loss is
// then logged but not trained on), or both.
enum class MoeBalance { Aux, Bias, AuxBias };

struct MoeConfig {
  bool enabled = false;           // false: a dense model (no "moe" object in the manifest)
  MoeLayout layout = MoeLayout::OneDense;
  int n_experts = 0;              // E
  int top_k = 0;                  // K
  int d_expert = 0;               // De, hidden size of each routed expert
  int d_shared = 0;               // Dse, hidden size of the shared expert (0: none)
  bool normalize_gates = false;   // renormalise the K chosen gates to sum to 1
  double balance_coef = 0.01;     // lambda of the paper's balance loss
  int balance_group = 0;          // sequences over which f_i and p_i are counted (divides every micro-batch);
                                  // 0: the whole micro-batch
  double z_loss_coef = 0.0;       // router z-loss coefficient (0: off)
  double capacity_factor = 0.0;   // > 0: at most ceil(cf * tokens * K / E) tokens per expert
  MoeBalance balance = MoeBalance::Aux;
  double bias_rate = 1e-3;        // the expert bias's step (balance bias or aux+bias)

  bool uses_bias() const { return balance != MoeBalance::Aux; }
  // The balance loss's coefficient in the gradient (0 with balance = bias).
  double trained_balance_coef() const { return balance == MoeBalance::Bias ? 0.0 : balance_coef; }
  // Whether the balance groups lie whole in micro-batches of `micro` sequences (always for a dense
  // model and for balance_group 0, the whole micro-batch).
  bool groups_fit(int micro) const { return !enabled || balance_group == 0 || micro % balance_group == 0; }
};

struct ModelConfig {
  int vocab_size = 65536;
  int d_model = 0;                // Dm
  int n_layers = 0;               // L
  int n_heads = 0;                // H
  int head_dim = 0;               // Dh (default d_model / n_heads)
  int d_ffn = 0;                  // Dffn of dense layers
  int seq_len = 2048;             // S
  double norm_eps = 1e-5;
  bool tie_embeddings = false;
  AttentionImpl attention_impl = AttentionImpl::Native;  // model.attention_impl: "native" | "cudnn"
  MoeConfig moe;

  bool is_moe_layer(int layer) const;
  int n_moe_layers() const;
  int n_dense_layers() const { return n_layers - n_moe_layers(); }
};

// AdamW and its schedule (the paper's Table 4 recipe); the manifest's "train" object extends it.
struct OptimConfig {
  double lr = 0;                  // 0 = "auto" (Step Law)
  double min_lr = 1e-5;
  int warmup_iters = -1;          // -1 = "auto" = clip(0.01 * iters, 200, 2000)
  double weight_decay = 0.1;
  double grad_clip = 1.0;         // 0: no clipping
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
};

}  // namespace mt
