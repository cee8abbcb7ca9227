// Why: see params.h. The table order and the names here are the checkpoint contract of DESIGN.md.
#include "engine/model/params.h"

#include <cmath>

#include "engine/core/check.h"

namespace mt {

const TensorInfo* ParamTable::find(const std::string& name) const {
  for (auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorInfo& ParamTable::at(const std::string& name) const {
  const TensorInfo* t = find(name);
  MT_CHECK(t, "no parameter named ", name);
  return *t;
}

namespace {

// A tensor dimension cut into `parts` equal slices, of which this rank holds slice `index`; the
// experts have two (dim 0 over ep, the hidden dimension over tp).
enum class Over { Tp, Ep };
struct Split {
  int dim = -1, index = 0, parts = 1;
  Over over = Over::Tp;
};

void add(ParamTable& t, const std::string& name, std::vector<int64_t> global, Init init, Decay decay,
         Split a = {}, Split b = {}) {
  TensorInfo info;
  info.name = name;
  info.global_shape = global;
  info.shape = global;
  info.slice_start.assign(global.size(), 0);
  for (const Split& s : {a, b}) {
    if (s.dim < 0 || s.parts == 1) continue;
    MT_CHECK(global[s.dim] % s.parts == 0, name, ": dimension ", s.dim, " (", global[s.dim],
             ") does not split into ", s.parts);
    info.shape[s.dim] = global[s.dim] / s.parts;
    info.slice_start[s.dim] = info.shape[s.dim] * s.index;
    if (s.over == Over::Tp) info.tp_sharded = true;
  }
  info.numel = 1;
  for (auto d : info.shape) info.numel *= size_t(d);
  info.offset = t.numel;
  info.init = init;
  info.decay = decay;
  t.numel += info.numel;
  t.tensors.push_back(std::move(info));
}

}  // namespace

ParamLayout build_param_layout(const ModelConfig& m, const ShardSpec& sh) {
  ParamLayout out;
  ParamTable& d = out.dense;
  const int64_t V = m.vocab_size, Dm = m.d_model, QKV = int64_t(m.n_heads) * m.head_dim;
  const Split rows{0, sh.tp_rank, sh.tp_size};  // column-parallel: output rows split over tp
  const Split cols{1, sh.tp_rank, sh.tp_size};  // row-parallel: input columns split over tp
  add(d, "embed.weight", {V, Dm}, Init::Normal, Decay::Yes);
  for (int l = 0; l < m.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    add(d, p + "attn_norm.weight", {Dm}, Init::Ones, Decay::No);
    // wq, wk, wv are adjacent: one fused GEMM computes q, k and v of this rank's heads.
    for (const char* w : {"wq", "wk", "wv"}) {
      add(d, p + "attn." + w + ".weight", {QKV, Dm}, Init::Normal, Decay::Yes, rows);
      }
    add(d, p + "attn.wo.weight", {Dm, QKV}, Init::NormalScaledOut, Decay::Yes, cols);
    add(d, p + "ffn_norm.weight", {Dm}, Init::Ones, Decay::No);
    if (!m.is_moe_layer(l)) {
      // w1 (gate) and w3 (up) are adjacent: one GEMM gives [gate | up].
      add(d, p + "ffn.w1.weight", {m.d_ffn, Dm}, Init::Normal, Decay::Yes, rows);
        add(d, p + "ffn.w3.weight", {m.d_ffn, Dm}, Init::Normal, Decay::Yes, rows);
        add(d, p + "ffn.w2.weight", {Dm, m.d_ffn}, Init::NormalScaledOut, Decay::Yes, cols);
      } else {
      add(d, p + "moe.router.weight", {m.moe.n_experts, Dm}, Init::Normal, Decay::Yes);
      if (m.moe.d_shared > 0) {
        add(d, p + "moe.shared.w1.weight", {m.moe.d_shared, Dm}, Init::Normal, Decay::Yes, rows);
            add(d, p + "moe.shared.w3.weight", {m.moe.d_shared, Dm}, Init::Normal, Decay::Yes, rows);
            add(d, p + "moe.shared.w2.weight", {Dm, m.moe.d_shared}, Init::NormalScaledOut, Decay::Yes, cols);
          }
      // Experts: dim 0 over ep, the hidden dimension over tp.
      ParamTable& e = out.expert;
      const int64_t E = m.moe.n_experts, De = m.moe.d_expert;
      const Split by_ep{0, sh.ep_rank, sh.ep_size, Over::Ep};
      add(e, p + "moe.experts.w1", {E, De, Dm}, Init::Normal, Decay::Yes, by_ep, {1, sh.tp_rank, sh.tp_size});
      add(e, p + "moe.experts.w3", {E, De, Dm}, Init::Normal, Decay::Yes, by_ep, {1, sh.tp_rank, sh.tp_size});
      add(e, p + "moe.experts.w2", {E, Dm, De}, Init::NormalScaledOut, Decay::Yes, by_ep,
          {2, sh.tp_rank, sh.tp_size});
    }
  }
  add(d, "final_norm.weight", {Dm}, Init::Ones, Decay::No);
  if (!m.tie_embeddings) add(d, "lm_head.weight", {V, Dm}, Init::Normal, Decay::Yes);
  return out;
}

int64_t global_flat_index(const TensorInfo& t, int64_t local_index) {
  int64_t g = 0;
  int64_t rem = local_index;
  // Decompose the local index (row-major) and recompose in the global shape.
  std::vector<int64_t> idx(t.shape.size());
  for (int d = int(t.shape.size()) - 1; d >= 0; --d) {
    idx[d] = rem % t.shape[d];
    rem /= t.shape[d];
  }
  for (size_t d = 0; d < t.shape.size(); ++d) g = g * t.global_shape[d] + idx[d] + t.slice_start[d];
  return g;
}

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Uniform in (0, 1] from a 64-bit key (53 random bits).
double unit(uint64_t key) { return (double(splitmix64(key) >> 11) + 1.0) * (1.0 / 9007199254740992.0); }

}  // namespace

template <typename P>
void init_params(P* buffer, const ParamTable& table, uint64_t seed, int n_layers) {
  const double std_in = 0.02, std_out = 0.02 / std::sqrt(2.0 * n_layers);
  for (const TensorInfo& t : table.tensors) {
    P* out = buffer + t.offset;
    if (t.init == Init::Ones) {
      for (size_t i = 0; i < t.numel; ++i) out[i] = P(1);
      continue;
    }
    const double sd = t.init == Init::Normal ? std_in : std_out;
    const uint64_t key = splitmix64(seed ^ fnv1a(t.name));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < int64_t(t.numel); ++i) {
      const uint64_t g = uint64_t(global_flat_index(t, i));
      // Box-Muller on two uniforms drawn from (key, 2g) and (key, 2g + 1).
      double u1 = unit(key + 2 * g), u2 = unit(key + 2 * g + 1);
      out[i] = P(sd * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }
  }
}

template void init_params<float>(float*, const ParamTable&, uint64_t, int);
template void init_params<double>(double*, const ParamTable&, uint64_t, int);

}  // namespace mt
