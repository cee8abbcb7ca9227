// Why: typed views of a parameter-shaped buffer (master weights, gradients or compute copies): one
// pointer per tensor of each layer, resolved once from the tables of engine/model/params.h. Sizes are this
// rank's: Hl = H / tp heads, Fl = d_ffn / tp, El = E / ep experts, Del = d_expert / tp,
// Dsl = d_shared / tp.
#pragma once

#include <string>
#include <vector>

#include "engine/core/check.h"
#include "engine/model/model_config.h"
#include "engine/model/params.h"

namespace mt {

template <typename X>
struct LayerTensors {
  X* attn_norm = nullptr;  // (Dm)
  X* wqkv = nullptr;       // (3 * Hl * Dh, Dm): wq, wk, wv of this rank's heads, adjacent
  X* wo = nullptr;         // (Dm, Hl * Dh)
  X* ffn_norm = nullptr;   // (Dm)
  X* w13 = nullptr;        // (2 * Fl, Dm): w1 (gate) then w3 (up), adjacent   [dense layer]
  X* w2 = nullptr;         // (Dm, Fl)                                          [dense layer]
  X* router = nullptr;     // (E, Dm)                                           [MoE layer]
  X* sh_w13 = nullptr;     // (2 * Dsl, Dm): shared w1 then w3                  [MoE, d_shared > 0]
  X* sh_w2 = nullptr;      // (Dm, Dsl)
  X* ex_w1 = nullptr;      // (El, Del, Dm)                                     [expert buffer]
  X* ex_w3 = nullptr;      // (El, Del, Dm)
  X* ex_w2 = nullptr;      // (El, Dm, Del)
};

template <typename X>
struct ModelTensors {
  X* embed = nullptr;       // (V, Dm)
  std::vector<LayerTensors<X>> layers;
  X* final_norm = nullptr;  // (Dm)
  X* lm_head = nullptr;     // (V, Dm); the embedding when tie_embeddings
};

// Resolves every pointer into `dense` and `expert` (buffers laid out by `layout`).
template <typename X>
ModelTensors<X> bind_tensors(const ModelConfig& m, const ParamLayout& layout, X* dense, X* expert) {
  ModelTensors<X> t;
  auto at = [&](const std::string& name) { return dense + layout.dense.at(name).offset; };
  auto at_expert = [&](const std::string& name) { return expert + layout.expert.at(name).offset; };
  t.embed = at("embed.weight");
  for (int l = 0; l < m.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    LayerTensors<X> L;
    L.attn_norm = at(p + "attn_norm.weight");
    L.wqkv = at(p + "attn.wq.weight");
    MT_CHECK(at(p + "attn.wk.weight") == L.wqkv + layout.dense.at(p + "attn.wq.weight").numel &&
                 at(p + "attn.wv.weight") == at(p + "attn.wk.weight") + layout.dense.at(p + "attn.wk.weight").numel,
             "wq, wk, wv must be adjacent");
    L.wo = at(p + "attn.wo.weight");
    L.ffn_norm = at(p + "ffn_norm.weight");
    if (!m.is_moe_layer(l)) {
      L.w13 = at(p + "ffn.w1.weight");
      MT_CHECK(at(p + "ffn.w3.weight") == L.w13 + layout.dense.at(p + "ffn.w1.weight").numel, "w1, w3 adjacent");
      L.w2 = at(p + "ffn.w2.weight");
    } else {
      L.router = at(p + "moe.router.weight");
      if (m.moe.d_shared > 0) {
        L.sh_w13 = at(p + "moe.shared.w1.weight");
        L.sh_w2 = at(p + "moe.shared.w2.weight");
      }
      L.ex_w1 = at_expert(p + "moe.experts.w1");
      L.ex_w3 = at_expert(p + "moe.experts.w3");
      L.ex_w2 = at_expert(p + "moe.experts.w2");
    }
    t.layers.push_back(L);
  }
  t.final_norm = at("final_norm.weight");
  t.lm_head = m.tie_embeddings ? t.embed : at("lm_head.weight");
  return t;
}

}  // namespace mt
