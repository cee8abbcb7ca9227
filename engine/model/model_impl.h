// Why: the body of Model<T> (engine/model/model.h), in a header so that the CPU build instantiates it for
// float and double (engine/model/model.cpp) and the CUDA build for bf16 (cuda/). The forward saves what the
// backward needs in the arena; the backward walks the layers in reverse with the residual-stream
// gradient dx accumulating (rmsnorm_backward adds into it) and every other activation gradient
// written.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/model/arena.h"
#include "engine/core/check.h"
#include "engine/model/linear.h"
#include "engine/model/model.h"
#include "engine/model/moe.h"
#include "engine/model/tensors.h"

namespace mt {

template <typename T>
struct Model<T>::Impl {
  ModelConfig cfg;
  const ProcessGrid& grid;
  Ops<T>& ops;
  Device& dev;
  Profiler prof;
  ParamLayout layout;
  Arena arena;

  // Sizes on this rank.
  int B, S, N, Dm, V, L, Hl, Dh, Q, Fl, head0, chunk;
  size_t dense_numel, expert_numel;

  // Parameter-shaped buffers (device): master weights, gradients, compute copies (bf16 only).
  P* params_dense = nullptr;
  P* params_expert = nullptr;
  P* grads_dense = nullptr;
  P* grads_expert = nullptr;
  T* compute_dense = nullptr;
  T* compute_expert = nullptr;
  ModelTensors<T> w;   // compute weights
  ModelTensors<P> g;   // gradients

  // Activations (arena).
  int32_t* inputs = nullptr;    // (N)
  int32_t* targets = nullptr;   // (N)
  float* slopes = nullptr;      // (Hl)
  std::vector<T*> x;            // L + 1 residual streams (N, Dm): x[l] enters layer l
  std::vector<T*> x_mid;        // L (N, Dm): after attention
  std::vector<T*> ln1, ln2;     // L (N, Dm)
  std::vector<P*> rstd1, rstd2; // L (N)
  std::vector<T*> qkv;          // L (N, 3 Q)
  std::vector<T*> atty;         // L (N, Q)
  std::vector<P*> lse;          // L (B, Hl, S)
  std::vector<T*> h13, act;     // L (N, 2 Fl), (N, Fl)   [dense layers]
  T* lnf = nullptr;             // (N, Dm)
  P* rstdf = nullptr;           // (N)
  T* logits = nullptr;          // (chunk, V): logits, then their gradient in place
  P* losses = nullptr;          // (N)
  // Backward scratch.
  T* dx = nullptr;              // (N, Dm) residual-stream gradient
  T* dln = nullptr;             // (N, Dm)
  T* tmp = nullptr;             // (N, Dm)
  T* dwide = nullptr;           // (N, max(3 Q, 2 Fl))
  T* dnarrow = nullptr;         // (N, max(Q, Fl))

  MoeScratch<T> moe_scratch;
  std::vector<std::unique_ptr<MoeLayer<T>>> moe;  // per layer (null for dense layers)
  // The MoE layers' records (dispatcher.h MoeRecord), one block of n_moe records per forward_backward
  // until read_moe_stats reads them; the forwards of evaluation write to eval_record.
  int n_moe = 0;                        // MoE layers
  int moe_groups = 1;                   // balance groups per micro-batch (moe.h)
  size_t record_words = 0;              // words of one layer's record
  int64_t* records = nullptr;           // (record_slots, n_moe, record_words), device
  int record_slots = 0;                 // forward_backward calls the block holds
  int recorded = 0;                     // forward_backward calls since the last read
  int64_t* eval_record = nullptr;       // (n_moe, record_words) (arena)
  // The expert bias of aux-loss-free balancing (MoeConfig::uses_bias), the host copy being the state.
  P* expert_bias = nullptr;             // (n_moe, E) device (arena)                 [uses_bias]
  std::vector<P> expert_bias_host;      // (n_moe, E)                                [uses_bias]
  int32_t* round_robin = nullptr;       // (N, K) device, the routing_map of MoeRouting::ForceBalance (owned)
  bool force_balance = false;           // MoeRouting::ForceBalance

  Impl(const ModelConfig& c, int micro_batch, const ProcessGrid& gr, Ops<T>& o)
      : cfg(c), grid(gr), ops(o), dev(o.device()), prof(o.device()), arena(o.device()) {
    const int tp = grid.tp_size, ep = grid.ep_size;
    B = micro_batch;
    S = cfg.seq_len;
    N = B * S;
    Dm = cfg.d_model;
    V = cfg.vocab_size;
    L = cfg.n_layers;
    MT_CHECK(cfg.n_heads % tp == 0 && cfg.d_ffn % tp == 0, "tensor-parallel split must divide heads and d_ffn");
    Hl = cfg.n_heads / tp;
    Dh = cfg.head_dim;
    Q = Hl * Dh;
    Fl = cfg.d_ffn / tp;
    head0 = grid.tp_rank * Hl;
    // LM head in chunks of tokens, so that (chunk, V) logits stay within 32M elements.
    chunk = std::max(1, std::min(N, int((int64_t(1) << 25) / V)));
    layout = build_param_layout(cfg, ShardSpec{grid.tp_rank, tp, grid.ep_rank, ep});
    dense_numel = layout.dense.numel;
    expert_numel = layout.expert.numel;

    params_dense = alloc<P>(dense_numel);
    grads_dense = alloc<P>(dense_numel);
    params_expert = alloc<P>(expert_numel);
    grads_expert = alloc<P>(expert_numel);
    if constexpr (!std::is_same_v<T, P>) {
      compute_dense = alloc<T>(dense_numel);
      compute_expert = alloc<T>(expert_numel);
    } else {
      compute_dense = params_dense;
      compute_expert = params_expert;
    }
    w = bind_tensors<T>(cfg, layout, compute_dense, compute_expert);
    g = bind_tensors<P>(cfg, layout, grads_dense, grads_expert);

    arena.request(&inputs, N);
    arena.request(&targets, N);
    arena.request(&slopes, Hl);
    x.resize(L + 1);
    x_mid.resize(L);
    ln1.resize(L);
    ln2.resize(L);
    rstd1.resize(L);
    rstd2.resize(L);
    qkv.resize(L);
    atty.resize(L);
    lse.resize(L);
    h13.assign(L, nullptr);
    act.assign(L, nullptr);
    const size_t nd = size_t(N) * Dm;
    for (int l = 0; l <= L; ++l) arena.request(&x[l], nd);
    for (int l = 0; l < L; ++l) {
      arena.request(&x_mid[l], nd);
      arena.request(&ln1[l], nd);
      arena.request(&ln2[l], nd);
      arena.request(&rstd1[l], N);
      arena.request(&rstd2[l], N);
      arena.request(&qkv[l], size_t(N) * 3 * Q);
      arena.request(&atty[l], size_t(N) * Q);
      arena.request(&lse[l], size_t(N) * Hl);
      if (!cfg.is_moe_layer(l)) {
        arena.request(&h13[l], size_t(N) * 2 * Fl);
        arena.request(&act[l], size_t(N) * Fl);
      }
    }
    arena.request(&lnf, nd);
    arena.request(&rstdf, N);
    arena.request(&logits, size_t(chunk) * V);
    arena.request(&losses, N);
    arena.request(&dx, nd);
    arena.request(&dln, nd);
    arena.request(&tmp, nd);
    arena.request(&dwide, size_t(N) * std::max(3 * Q, 2 * Fl));
    arena.request(&dnarrow, size_t(N) * std::max(Q, Fl));

    moe.resize(L);
    if (cfg.moe.enabled) {
      const auto& mc = cfg.moe;
      MT_CHECK(mc.n_experts % ep == 0 && mc.d_expert % tp == 0 && mc.d_shared % tp == 0,
               "expert / tensor-parallel split must divide n_experts, d_expert and d_shared");
      MoeDims md;
      md.N = N;
      md.Dm = Dm;
      md.E = mc.n_experts;
      md.El = mc.n_experts / ep;
      md.K = mc.top_k;
      md.Del = mc.d_expert / tp;
      md.Dsl = mc.d_shared / tp;
      md.ep = ep;
      md.capacity = mc.capacity_factor > 0 ? int(std::ceil(mc.capacity_factor * double(N) * mc.top_k / mc.n_experts)) : -1;
      md.norm = mc.normalize_gates ? GateNorm::Renormalize : GateNorm::None;
      md.balance_coef = float(mc.trained_balance_coef());
      // Balance groups of balance_group sequences (split_batch checks that they divide a training
      // micro-batch); 0, and a model for forward passes of fewer sequences (init, sample), count over all.
      md.group = mc.balance_group > 0 && micro_batch % mc.balance_group == 0 ? mc.balance_group * S : N;
      moe_groups = N / md.group;
      md.z_coef = float(mc.z_loss_coef);
      moe_scratch.request(arena, md);
      for (int l = 0; l < L; ++l)
        if (cfg.is_moe_layer(l)) {
          moe[l] = std::make_unique<MoeLayer<T>>(md, ops, grid, prof, arena, moe_scratch);
          ++n_moe;
        }
      record_words = MoeRecord::words(md.E, moe_groups);
      arena.request(&eval_record, size_t(n_moe) * record_words);
      if (mc.uses_bias()) {
        arena.request(&expert_bias, size_t(n_moe) * md.E);
        expert_bias_host.assign(size_t(n_moe) * md.E, P(0));
      }
      grow_records(8);
    }
    arena.allocate();
    if (expert_bias) upload_expert_bias();

    std::vector<float> all(cfg.n_heads);
    alibi_slopes(all.data(), cfg.n_heads);
    dev.copy(slopes, all.data() + head0, sizeof(float) * Hl, CopyKind::HostToDevice);
  }

  ~Impl() {
    for (void* p : owned) dev.release(p);
    if (records) dev.release(records);
  }

  void upload_expert_bias() {
    dev.copy(expert_bias, expert_bias_host.data(), sizeof(P) * expert_bias_host.size(), CopyKind::HostToDevice);
  }

  // Room for `slots` forward_backward calls' records, keeping those recorded.
  void grow_records(int slots) {
    const size_t per_call = size_t(n_moe) * record_words * sizeof(int64_t);
    auto* bigger = static_cast<int64_t*>(dev.alloc(slots * per_call));
    if (records) {
      if (recorded) dev.copy(bigger, records, recorded * per_call, CopyKind::DeviceToDevice);
      dev.release(records);
    }
    records = bigger;
    record_slots = slots;
  }

  // The expert bias of MoE layer l (E, device), null without one.
  const P* layer_bias(int l) const {
    if (!expert_bias) return nullptr;
    int index = 0;
    for (int i = 0; i < l; ++i) index += moe[i] ? 1 : 0;
    return expert_bias + size_t(index) * cfg.moe.n_experts;
  }

  // The record of MoE layer l for this forward: the next slot of the block (Record) or eval_record.
  enum class MoeStats { Record, Discard };
  MoeRecord moe_record(int l, MoeStats mode) {
    int index = 0;
    for (int i = 0; i < l; ++i) index += moe[i] ? 1 : 0;
    if (mode == MoeStats::Discard)
      return MoeRecord::at(eval_record + index * record_words, cfg.moe.n_experts, moe_groups, false);
    int64_t* call = records + size_t(recorded) * n_moe * record_words;
    return MoeRecord::at(call + index * record_words, cfg.moe.n_experts, moe_groups, true);
  }

  std::vector<void*> owned;
  template <typename X>
  X* alloc(size_t n) {
    if (n == 0) return nullptr;
    X* p = static_cast<X*>(dev.alloc(n * sizeof(X)));
    owned.push_back(p);
    return p;
  }

  MemSpace space() const { return dev.space(); }

  // Every tp reduction of a block is one of these calls in forward() and backward() (the rule is at
  // the top of moe.h): the attention's and the FFN's or MoE's outputs, the gradients of their inputs,
  // and an MoE layer's gate gradients.
  template <typename X>
  void tp_allreduce(X* buf, size_t n) {
    if (grid.tp_size == 1) return;
    Profiler::Scope ps(prof, OpFamily::TpComm);
    grid.tp().allreduce_sum(buf, n, dtype_of<X>(), space());
  }

  double attention_flops_forward() const {
    // QK^T and PV over the causal triangle.
    return 2.0 * 2.0 * double(B) * Hl * Dh * (double(S) * (S + 1) / 2);
  }

  void load_tokens(const int32_t* windows, int n_seqs) {
    MT_CHECK(n_seqs == B, "a micro-batch holds ", B, " sequences, got ", n_seqs);
    std::vector<int32_t> in(N), tg(N);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < S; ++t) {
        in[size_t(b) * S + t] = windows[size_t(b) * (S + 1) + t];
        tg[size_t(b) * S + t] = windows[size_t(b) * (S + 1) + t + 1];
      }
    for (int i = 0; i < N; ++i)
      MT_CHECK(in[i] >= 0 && in[i] < V && tg[i] >= 0 && tg[i] < V, "token id out of [0, ", V, ")");
    dev.copy(inputs, in.data(), sizeof(int32_t) * N, CopyKind::HostToDevice);
    dev.copy(targets, tg.data(), sizeof(int32_t) * N, CopyKind::HostToDevice);
  }

  // ---- forward ----------------------------------------------------------------------------------------
  void forward(MoeStats mode) {
    const size_t nd = size_t(N) * Dm;
    if (mode == MoeStats::Record && n_moe > 0 && recorded == record_slots) grow_records(2 * record_slots);
    {
      Profiler::Scope ps(prof, OpFamily::Embedding);
      ops.embedding_forward(x[0], inputs, w.embed, N, Dm);
    }
    for (int l = 0; l < L; ++l) {
      const LayerTensors<T>& lw = w.layers[l];
      {
        Profiler::Scope ps(prof, OpFamily::Norm);
        ops.rmsnorm_forward(ln1[l], rstd1[l], x[l], lw.attn_norm, N, Dm, float(cfg.norm_eps));
      }
      {
        Profiler::Scope ps(prof, OpFamily::Linear);
        linear_forward(ops, prof, OpFamily::Linear, qkv[l], ln1[l], lw.wqkv, N, Dm, 3 * Q);
      }
      {
        Profiler::Scope ps(prof, OpFamily::Attention);
        ops.attention_forward(atty[l], lse[l], qkv[l], slopes, {B, S, Hl, Dh});
        prof.add_flops(OpFamily::Attention, attention_flops_forward());
      }
      {
        Profiler::Scope ps(prof, OpFamily::Linear);
        linear_forward(ops, prof, OpFamily::Linear, tmp, atty[l], lw.wo, N, Q, Dm);
      }
      tp_allreduce(tmp, nd);
      dev.copy(x_mid[l], x[l], sizeof(T) * nd, CopyKind::DeviceToDevice);
      ops.add_inplace(x_mid[l], tmp, nd);
      {
        Profiler::Scope ps(prof, OpFamily::Norm);
        ops.rmsnorm_forward(ln2[l], rstd2[l], x_mid[l], lw.ffn_norm, N, Dm, float(cfg.norm_eps));
      }
      if (!moe[l]) {
        {
          Profiler::Scope ps(prof, OpFamily::Linear);
          linear_forward(ops, prof, OpFamily::Linear, h13[l], ln2[l], lw.w13, N, Dm, 2 * Fl);
        }
        {
          Profiler::Scope ps(prof, OpFamily::SwiGLU);
          ops.swiglu_forward(act[l], h13[l], N, Fl);
        }
        Profiler::Scope ps(prof, OpFamily::Linear);
        linear_forward(ops, prof, OpFamily::Linear, tmp, act[l], lw.w2, N, Fl, Dm);
      } else {
        const RouteControl<P> control{layer_bias(l), force_balance ? round_robin : nullptr};
        moe[l]->forward(tmp, ln2[l], lw, moe_record(l, mode), control);
      }
      tp_allreduce(tmp, nd);
      dev.copy(x[l + 1], x_mid[l], sizeof(T) * nd, CopyKind::DeviceToDevice);
      ops.add_inplace(x[l + 1], tmp, nd);
    }
    if (mode == MoeStats::Record && n_moe > 0) ++recorded;
    Profiler::Scope ps(prof, OpFamily::Norm);
    ops.rmsnorm_forward(lnf, rstdf, x[L], w.final_norm, N, Dm, float(cfg.norm_eps));
  }

  // The LM head and loss in chunks of tokens. With Pass::WithBackward the gradient of the loss (scaled
  // by dloss per token) w.r.t. lnf is written to dln and lm_head's gradient accumulates.
  enum class Pass { ForwardOnly, WithBackward };
  double head_and_loss(float dloss, Pass pass) {
    const bool backward = pass == Pass::WithBackward;
    for (int c0 = 0; c0 < N; c0 += chunk) {
      const int n = std::min(chunk, N - c0);
      {
        Profiler::Scope ps(prof, OpFamily::LmHead);
        linear_forward(ops, prof, OpFamily::LmHead, logits, lnf + size_t(c0) * Dm, w.lm_head, n, Dm, V);
      }
      {
        Profiler::Scope ps(prof, OpFamily::Loss);
        ops.cross_entropy(losses + c0, backward ? logits : nullptr, logits, targets + c0, dloss, n, V);
      }
      if (backward) {
        Profiler::Scope ps(prof, OpFamily::LmHead);
        linear_backward(ops, prof, OpFamily::LmHead, dln + size_t(c0) * Dm, g.lm_head, logits,
                        lnf + size_t(c0) * Dm, w.lm_head, n, Dm, V);
      }
    }
    return ops.sum(losses, size_t(N));
  }

  // ---- backward ---------------------------------------------------------------------------------------
  void backward(float loss_scale, GradReadyHook* hook) {
    const size_t nd = size_t(N) * Dm;
    dev.zero(dx, sizeof(T) * nd);
    {
      Profiler::Scope ps(prof, OpFamily::Norm);
      ops.rmsnorm_backward(dx, g.final_norm, dln, x[L], w.final_norm, rstdf, N, Dm);
    }
    if (hook) hook->ready(ParamGroup::Dense, layout.dense.at("final_norm.weight").offset);
    for (int l = L - 1; l >= 0; --l) {
      const LayerTensors<T>& lw = w.layers[l];
      const LayerTensors<P>& lg = g.layers[l];
      // FFN or MoE: its output's gradient is dx; its input's (ln2) goes to dln.
      if (!moe[l]) {
        {
          Profiler::Scope ps(prof, OpFamily::Linear);
          linear_backward(ops, prof, OpFamily::Linear, dnarrow, lg.w2, dx, act[l], lw.w2, N, Fl, Dm);
        }
        {
          Profiler::Scope ps(prof, OpFamily::SwiGLU);
          ops.swiglu_backward(dwide, dnarrow, h13[l], N, Fl);
        }
        {
          Profiler::Scope ps(prof, OpFamily::Linear);
          linear_backward(ops, prof, OpFamily::Linear, dln, lg.w13, dwide, ln2[l], lw.w13, N, Dm, 2 * Fl);
        }
        tp_allreduce(dln, nd);
      } else {
        // The tp rule of moe.h: the MoE's partial input gradient and gate gradients are reduced here,
        // then the replicated router adds its input gradient.
        moe[l]->backward(dln, dx, ln2[l], lw, lg);
        tp_allreduce(dln, nd);
        tp_allreduce(moe[l]->dgates(), size_t(N) * cfg.moe.top_k);
        moe[l]->router_backward(dln, ln2[l], lw, lg, loss_scale);
        if (hook) hook->ready(ParamGroup::Expert, layout.expert.at("layers." + std::to_string(l) + ".moe.experts.w1").offset);
      }
      {
        Profiler::Scope ps(prof, OpFamily::Norm);
        ops.rmsnorm_backward(dx, lg.ffn_norm, dln, x_mid[l], lw.ffn_norm, rstd2[l], N, Dm);
      }
      // Attention: the output's gradient is dx (the residual passes through unchanged).
      {
        Profiler::Scope ps(prof, OpFamily::Linear);
        linear_backward(ops, prof, OpFamily::Linear, dnarrow, lg.wo, dx, atty[l], lw.wo, N, Q, Dm);
      }
      {
        Profiler::Scope ps(prof, OpFamily::Attention);
        ops.attention_backward(dwide, dnarrow, qkv[l], atty[l], lse[l], slopes, {B, S, Hl, Dh});
        // The backward recomputes the scores and forms dV, dP, dQ, dK: five triangle products.
        prof.add_flops(OpFamily::Attention, 2.5 * attention_flops_forward());
      }
      {
        Profiler::Scope ps(prof, OpFamily::Linear);
        linear_backward(ops, prof, OpFamily::Linear, dln, lg.wqkv, dwide, ln1[l], lw.wqkv, N, Dm, 3 * Q);
      }
      tp_allreduce(dln, nd);
      {
        Profiler::Scope ps(prof, OpFamily::Norm);
        ops.rmsnorm_backward(dx, lg.attn_norm, dln, x[l], lw.attn_norm, rstd1[l], N, Dm);
      }
      if (hook)
        hook->ready(ParamGroup::Dense, layout.dense.at("layers." + std::to_string(l) + ".attn_norm.weight").offset);
    }
    {
      Profiler::Scope ps(prof, OpFamily::Embedding);
      ops.embedding_backward(g.embed, dx, inputs, N, Dm, V);
    }
    if (hook) hook->ready(ParamGroup::Dense, 0);
  }
};

template <typename T>
Model<T>::Model(const ModelConfig& cfg, int micro_batch, const ProcessGrid& grid, Ops<T>& ops)
    : impl_(std::make_unique<Impl>(cfg, micro_batch, grid, ops)) {}

template <typename T>
Model<T>::~Model() = default;

template <typename T>
const ModelConfig& Model<T>::config() const {
  return impl_->cfg;
}
template <typename T>
const ParamLayout& Model<T>::layout() const {
  return impl_->layout;
}
template <typename T>
int Model<T>::micro_batch() const {
  return impl_->B;
}
template <typename T>
typename Model<T>::P* Model<T>::params(ParamGroup g) {
  return g == ParamGroup::Dense ? impl_->params_dense : impl_->params_expert;
}
template <typename T>
typename Model<T>::P* Model<T>::grads(ParamGroup g) {
  return g == ParamGroup::Dense ? impl_->grads_dense : impl_->grads_expert;
}
template <typename T>
size_t Model<T>::numel(ParamGroup g) const {
  return g == ParamGroup::Dense ? impl_->dense_numel : impl_->expert_numel;
}
template <typename T>
Profiler& Model<T>::profiler() {
  return impl_->prof;
}
template <typename T>
size_t Model<T>::activation_bytes() const {
  return impl_->arena.bytes();
}

template <typename T>
void Model<T>::init_params(uint64_t seed) {
  auto& im = *impl_;
  for (ParamGroup g : {ParamGroup::Dense, ParamGroup::Expert}) {
    const ParamTable& table = g == ParamGroup::Dense ? im.layout.dense : im.layout.expert;
    if (table.numel == 0) continue;
    std::vector<P> host(table.numel);
    mt::init_params<P>(host.data(), table, seed, im.cfg.n_layers);
    im.dev.copy(params(g), host.data(), sizeof(P) * host.size(), CopyKind::HostToDevice);
  }
  refresh_compute_weights();
}

template <typename T>
void Model<T>::zero_grads() {
  auto& im = *impl_;
  if (im.dense_numel) im.dev.zero(im.grads_dense, sizeof(P) * im.dense_numel);
  if (im.expert_numel) im.dev.zero(im.grads_expert, sizeof(P) * im.expert_numel);
}

template <typename T>
void Model<T>::refresh_compute_weights() {
  if constexpr (!std::is_same_v<T, P>) {
    auto& im = *impl_;
    im.ops.to_compute(im.compute_dense, im.params_dense, im.dense_numel);
    if (im.expert_numel) im.ops.to_compute(im.compute_expert, im.params_expert, im.expert_numel);
  }
}

template <typename T>
MicroBatchStats Model<T>::forward_backward(const int32_t* windows_host, int n_seqs, float loss_scale,
                                          GradReadyHook* hook) {
  auto& im = *impl_;
  MicroBatchStats stats;
  im.load_tokens(windows_host, n_seqs);
  im.forward(Impl::MoeStats::Record);
  stats.loss_sum = im.head_and_loss(loss_scale / float(im.N), Impl::Pass::WithBackward);
  stats.tokens = im.N;
  im.backward(loss_scale, hook);
  return stats;
}

template <typename T>
void Model<T>::read_moe_stats(MicroBatchStats* stats, int n) {
  auto& im = *impl_;
  if (im.n_moe == 0) return;
  MT_CHECK(n == im.recorded, "read_moe_stats: ", n, " micro-batches asked, ", im.recorded, " run since the last read");
  if (n == 0) return;
  const size_t words = size_t(n) * im.n_moe * im.record_words;
  std::vector<int64_t> host(words);
  im.dev.copy(host.data(), im.records, sizeof(int64_t) * words, CopyKind::DeviceToHost);
  im.dev.zero(im.records, sizeof(int64_t) * words);  // the index-check flags start clear
  im.recorded = 0;
  const int E = im.cfg.moe.n_experts;
  const int64_t choices = int64_t(im.N) * im.cfg.moe.top_k;
  for (int i = 0; i < n; ++i) {
    MicroBatchStats& s = stats[i];
    int index = 0;
    for (int l = 0; l < im.L; ++l) {
      if (!im.moe[l]) continue;
      int64_t* words_of_layer = host.data() + (size_t(i) * im.n_moe + index++) * im.record_words;
      const int groups = im.moe_groups;
      const MoeRecord r = MoeRecord::at(words_of_layer, E, groups, true);
      MT_CHECK(*r.bad == 0, "MoE layer ", l, ": an expert index outside [0, ", E, ") (NaN router logits?)");
      // The groups' three doubles each, as bytes (the host copy holds int64 words); the means over groups.
      std::vector<double> losses(3 * size_t(groups));
      std::memcpy(losses.data(), words_of_layer, sizeof(double) * losses.size());
      double balance = 0, z = 0, entropy = 0;
      std::vector<int64_t> counts(E, 0);
      for (int grp = 0; grp < groups; ++grp) {
        balance += losses[3 * size_t(grp)];
        z += losses[3 * size_t(grp) + 1];
        entropy += losses[3 * size_t(grp) + 2];
        for (int e = 0; e < E; ++e) counts[e] += r.counts[size_t(grp) * E + e];
      }
      s.balance_loss += balance / groups;
      s.z_loss += z / groups;
      s.router_entropy.push_back(entropy / groups);
      s.dropped += choices - r.offsets[E];
      s.layer_dropped.push_back(choices - r.offsets[E]);
      s.tokens_per_expert.push_back(std::move(counts));
      // With ep = 1 the experts' rows are the kept ones, known only now (moe.h).
      if (im.grid.ep_size == 1) im.prof.add_flops(OpFamily::Experts, double(r.offsets[E]) * im.moe[l]->expert_flops_per_row());
    }
  }
}

template <typename T>
void Model<T>::update_expert_bias(const std::vector<double>& load) {
  auto& im = *impl_;
  if (!im.expert_bias) return;
  const int E = im.cfg.moe.n_experts;
  MT_CHECK(load.size() == im.expert_bias_host.size(), "update_expert_bias: ", load.size(), " loads for ", im.n_moe,
           " MoE layers of ", E, " experts");
  const P rate = P(im.cfg.moe.bias_rate);
  for (int m = 0; m < im.n_moe; ++m) {
    const double* l = load.data() + size_t(m) * E;
    double mean = 0;
    for (int e = 0; e < E; ++e) mean += l[e];
    mean /= E;
    P* b = im.expert_bias_host.data() + size_t(m) * E;
    for (int e = 0; e < E; ++e) b[e] += l[e] < mean ? rate : l[e] > mean ? -rate : P(0);
  }
  im.upload_expert_bias();
}

template <typename T>
void Model<T>::set_routing(MoeRouting routing) {
  auto& im = *impl_;
  im.force_balance = routing == MoeRouting::ForceBalance && im.n_moe > 0;
  if (!im.force_balance || im.round_robin) return;
  const int K = im.cfg.moe.top_k;
  std::vector<int32_t> map(size_t(im.N) * K);
  // Token t, choice k: expert (t K + k) mod E, K distinct experts as K <= E.
  for (size_t i = 0; i < map.size(); ++i) map[i] = int32_t(i % size_t(im.cfg.moe.n_experts));
  im.round_robin = static_cast<int32_t*>(im.dev.alloc(sizeof(int32_t) * map.size()));
  im.owned.push_back(im.round_robin);
  im.dev.copy(im.round_robin, map.data(), sizeof(int32_t) * map.size(), CopyKind::HostToDevice);
}

template <typename T>
std::vector<double> Model<T>::expert_bias() const {
  const auto& h = impl_->expert_bias_host;
  return std::vector<double>(h.begin(), h.end());
}

template <typename T>
void Model<T>::set_expert_bias(const std::vector<double>& bias) {
  auto& im = *impl_;
  MT_CHECK(bias.size() == im.expert_bias_host.size(), "set_expert_bias: ", bias.size(), " values for ",
           im.expert_bias_host.size());
  if (bias.empty()) return;
  for (size_t i = 0; i < bias.size(); ++i) im.expert_bias_host[i] = P(bias[i]);
  im.upload_expert_bias();
}

template <typename T>
double Model<T>::forward_nll(const int32_t* windows_host, int n_seqs) {
  auto& im = *impl_;
  im.load_tokens(windows_host, n_seqs);
  im.forward(Impl::MoeStats::Discard);
  return im.head_and_loss(0.f, Impl::Pass::ForwardOnly);
}

template <typename T>
void Model<T>::forward_logits(const int32_t* windows_host, int n_seqs, int position, float* logits_host) {
  auto& im = *impl_;
  MT_CHECK(position >= 0 && position < im.S, "position ", position, " is outside the window [0, ", im.S, ")");
  im.load_tokens(windows_host, n_seqs);
  im.forward(Impl::MoeStats::Discard);
  linear_forward(im.ops, im.prof, OpFamily::LmHead, im.logits, im.lnf + size_t(position) * im.Dm, im.w.lm_head, 1, im.Dm, im.V);
  std::vector<T> row(size_t(im.V));
  im.dev.copy(row.data(), im.logits, sizeof(T) * row.size(), CopyKind::DeviceToHost);
  for (size_t i = 0; i < row.size(); ++i) {
    if constexpr (std::is_same_v<T, bf16>) logits_host[i] = to_float(row[i]);
    else logits_host[i] = float(row[i]);
  }
}

}  // namespace mt
