// Why: the token dispatcher of an MoE layer (Megatron-Core's token_dispatcher in shape): it takes each
// token's chosen experts (routing_map) to the rows of those experts and back, and it owns ALL of the
// MoE layer's communication (the all-to-all over the ep group) and the buffers the rows travel in.
// Two implementations: LocalDispatcher (ep = 1: the experts are all here, the permuted rows are their
// input as they are) and AllToAllDispatcher (ep > 1: rows go to the rank of their expert and come back).
//
// Forward:  dispatch(tokens, routing_map) -> ExpertRows (the experts' input in expert order and the
//           buffer for their output); the experts run; combine(out, gates) gathers their output home
//           and sums it per token, weighted by the gates.
// Backward: combine_backward(dgates, dout, gates) -> ExpertGrads (the gradient of the experts' output
//           and the buffer for the gradient of their input); the experts' backward runs;
//           dispatch_backward(d_tokens) takes those rows home and sums them per token.
//
// The routing plan (moe_route_plan: a stable counting sort of the N K choices by expert, the capacity
// keeping each expert's first tokens) gives slot (N, K), the row of each choice in this rank's expert
// order, row_src (N K), the token of each row, and the experts' offsets, all on the device. With ep = 1
// nothing goes to the host: the buffers are sized for all N K choices and the ops skip the dropped rows.
// With ep > 1 the offsets come to the host (the MoE layer's one device-to-host copy): the R kept rows go
// to their ranks as input_splits (rows to each rank) and arrive as output_splits, in (source rank,
// expert) order; sort_idx puts them into (expert, source rank) order for the experts, unsort_idx back.
#pragma once

#include <algorithm>
#include <memory>
#include <numeric>
#include <vector>

#include "comm/grid.h"
#include "engine/core/check.h"
#include "engine/model/arena.h"
#include "engine/ops/ops.h"
#include "engine/model/profile.h"

namespace mt {

// The sizes of one MoE layer on this rank.
struct MoeDims {
  int N = 0;        // tokens of the micro-batch on this rank
  int Dm = 0;
  int E = 0;        // experts (global)
  int El = 0;       // experts on this rank (E / ep)
  int K = 0;
  int Del = 0;      // expert hidden on this rank (d_expert / tp)
  int Dsl = 0;      // shared hidden on this rank (d_shared / tp)
  int ep = 1;
  int capacity = -1;  // per expert per micro-batch; -1 dropless
  GateNorm norm = GateNorm::None;
  float balance_coef = 0;
  int group = 0;    // tokens per balance group (balance_group sequences); divides N
  float z_coef = 0;

  // Rows this rank sends: the kept choices, at most N K.
  size_t send_rows() const { return size_t(N) * K; }
  // Rows this rank's experts can receive in one micro-batch, what the receiving buffers are sized for:
  // a token's K choices are distinct experts, so each of the ep senders' N tokens sends at most
  // min(K, El) rows to one rank; with a capacity, each sender keeps at most `capacity` rows per expert.
  // With ep = 1 it is the most rows the routing plan can keep: N K, or E capacity.
  size_t recv_rows() const {
    size_t r = size_t(N) * ep * size_t(std::min(K, El));
    if (capacity >= 0) r = std::min(r, size_t(ep) * El * size_t(capacity));
    return r;
  }
};

// The numbers of one MoE layer in one micro-batch, in device memory (8-byte words), which the step reads
// once (Model::read_moe_stats) instead of each op waiting for the device.
// Per balance group (moe.h) of the micro-batch: its losses and counts.
struct MoeRecord {
  double* losses = nullptr;   // (groups, 3) balance loss E sum_i f_i p_i, z-loss mean_t lse_t^2, router entropy
                              //   mean_t -sum_e p ln p (router_stats)                          [null: not kept]
  int64_t* counts = nullptr;  // (groups, E) choices per expert before any drop               [null: not kept]
  int64_t* offsets = nullptr; // (E + 1) the routing plan's first row of each expert; offsets[E] = kept rows
  int64_t* bad = nullptr;     // (1) nonzero: a routing_map entry outside [0, E) (NaN router logits)

  static size_t words(int E, int groups) { return size_t(groups) * (3 + size_t(E)) + size_t(E) + 1 + 1; }
  // The record at `base` (words(E, groups) words); with_stats false leaves losses and counts null (a
  // forward whose statistics nobody reads: evaluation).
  static MoeRecord at(int64_t* base, int E, int groups, bool with_stats) {
    MoeRecord r;
    if (with_stats) {
      r.losses = reinterpret_cast<double*>(base);
      r.counts = base + 3 * size_t(groups);
    }
    r.offsets = base + size_t(groups) * (3 + size_t(E));
    r.bad = r.offsets + E + 1;
    return r;
  }
};

// The dispatcher's side of one direction, shared by every MoE layer (used within one layer's forward
// or backward only). Rr = recv_rows(), R = send_rows().
template <typename T>
struct DispatchScratch {
  T* d_expert_in = nullptr;  // (Rr, Dm) the gradient of the experts' input, in expert order
  T* d_home = nullptr;       // (R, Dm) gradient rows in this rank's dispatch order: of the combined rows
                             //   (combine_backward), then of the dispatched tokens (on their way home)
  T* send = nullptr;         // (R, Dm) [ep > 1] tokens in this rank's expert order, to be sent
  T* arrival = nullptr;      // (Rr, Dm) [ep > 1] rows in arrival order (source rank, expert): received,
                             //   or about to be sent back
  T* expert_rows = nullptr;  // (Rr, Dm) [ep > 1] rows in expert order on their way out: the experts'
                             //   output (forward), the gradient of their output (backward)

  void request(Arena& a, const MoeDims& d) {
    const size_t R = d.send_rows(), Rr = d.recv_rows();
    a.request(&d_expert_in, Rr * d.Dm);
    a.request(&d_home, R * d.Dm);
    if (d.ep > 1) {
      a.request(&send, R * d.Dm);
      a.request(&arrival, Rr * d.Dm);
      a.request(&expert_rows, Rr * d.Dm);
    }
  }
};

// The experts' side of a dispatch: rows sorted by local expert.
template <typename T>
struct ExpertRows {
  const T* input = nullptr;        // (rows, Dm) the dispatched tokens (saved for the backward)
  T* output = nullptr;             // (rows, Dm) where the experts write their output, read by combine
  const int64_t* offsets = nullptr;  // (El + 1, device) local expert e owns rows [offsets[e], offsets[e+1])
  int rows = 0;                      // rows the buffers hold (offsets[El] at most)
};

// The experts' side of a combine_backward.
template <typename T>
struct ExpertGrads {
  const T* d_output = nullptr;  // (rows, Dm) the gradient of the experts' output
  T* d_input = nullptr;         // (rows, Dm) where the experts write the gradient of their input
};

template <typename T>
class Dispatcher {
 public:
  using P = acc_t<T>;
  virtual ~Dispatcher() = default;

  // tokens (N, Dm), routing_map (N, K) -> the experts' input (saved until the backward). The routing
  // plan's offsets and index check go to the record.
  virtual ExpertRows<T> dispatch(const T* tokens, const int32_t* routing_map, const MoeRecord& record) = 0;
  // out (N, Dm) = sum over each token's kept choices of gates (N, K) times the experts' output.
  virtual void combine(T* out, const P* gates) = 0;
  // dgates (N, K) = dout (N, Dm) . the expert output of each choice (0 if dropped); the gradient of
  // the experts' output.
  virtual ExpertGrads<T> combine_backward(P* dgates, const T* dout, const P* gates) = 0;
  // d_tokens (N, Dm) = the sum over each token's kept choices of ExpertGrads::d_input (written).
  virtual void dispatch_backward(T* d_tokens) = 0;

  // The rows of the experts' buffers when they are known on the host without waiting (ep > 1: the
  // all-to-all sizes), else -1 (ep = 1: the kept rows are in the record).
  virtual int64_t expert_rows_on_host() const = 0;

 protected:
  Dispatcher(const MoeDims& d, Ops<T>& ops, Profiler& prof, Arena& arena, DispatchScratch<T>& scratch)
      : d_(d), ops_(ops), prof_(prof), s_(scratch) {
    const size_t R = d.send_rows();
    arena.request(&slot_, R);
    arena.request(&row_src_, R);
    arena.request(&returned_, R * d.Dm);
  }

  // The routing plan of routing_map into slot_, row_src_ and the record's offsets.
  void plan(const int32_t* routing_map, const MoeRecord& record) {
    ops_.moe_route_plan(slot_, row_src_, record.offsets, record.bad, routing_map, {d_.N, d_.E, d_.K}, d_.capacity);
  }
  DispatchDims dims() const { return {d_.N, d_.K, d_.Dm}; }

  MoeDims d_;
  Ops<T>& ops_;
  Profiler& prof_;
  DispatchScratch<T>& s_;
  // Saved for the backward (arena).
  int32_t* slot_ = nullptr;     // (N, K) row of each choice in this rank's expert order, -1 if dropped
  int32_t* row_src_ = nullptr;  // (R) token of each row, -1 past the kept rows
  T* returned_ = nullptr;       // (R, Dm) the experts' output of this rank's rows, in its expert order
};

// ep = 1: the permuted rows are the experts' input, their output is the rows combine reads.
template <typename T>
class LocalDispatcher final : public Dispatcher<T> {
  using B = Dispatcher<T>;
  using P = acc_t<T>;

 public:
  LocalDispatcher(const MoeDims& d, Ops<T>& ops, Profiler& prof, Arena& arena, DispatchScratch<T>& scratch)
      : B(d, ops, prof, arena, scratch) {
    arena.request(&expert_in_, d.recv_rows() * d.Dm);
  }

  // The rows up to the most that can be kept (recv_rows: N K, or E capacity) are gathered, those past the
  // kept ones skipped: R stays on the device.
  ExpertRows<T> dispatch(const T* tokens, const int32_t* routing_map, const MoeRecord& record) override {
    Profiler::Scope ps(this->prof_, OpFamily::Dispatch);
    const int rows = int(this->d_.recv_rows());
    this->plan(routing_map, record);
    this->ops_.moe_permute(expert_in_, tokens, this->row_src_, {rows, this->d_.Dm});
    return {expert_in_, this->returned_, record.offsets, rows};
  }

  int64_t expert_rows_on_host() const override { return -1; }

  void combine(T* out, const P* gates) override {
    Profiler::Scope ps(this->prof_, OpFamily::Dispatch);
    this->ops_.moe_combine(out, this->returned_, gates, this->slot_, this->dims());
  }

  ExpertGrads<T> combine_backward(P* dgates, const T* dout, const P* gates) override {
    Profiler::Scope ps(this->prof_, OpFamily::Dispatch);
    this->ops_.moe_combine_backward(this->s_.d_home, dgates, dout, this->returned_, gates, this->slot_,
                                    this->dims());
    return {this->s_.d_home, this->s_.d_expert_in};
  }

  void dispatch_backward(T* d_tokens) override {
    Profiler::Scope ps(this->prof_, OpFamily::Dispatch);
    this->ops_.moe_permute_backward(d_tokens, this->s_.d_expert_in, this->slot_, this->dims());
  }

 private:
  T* expert_in_ = nullptr;  // (Rr, Dm) the tokens in expert order (saved); Rr = recv_rows() >= the kept rows
};

// ep > 1: rows travel to the rank of their expert by an all-to-all over the ep group and come back.
template <typename T>
class AllToAllDispatcher final : public Dispatcher<T> {
  using B = Dispatcher<T>;
  using P = acc_t<T>;

 public:
  AllToAllDispatcher(const MoeDims& d, Ops<T>& ops, const ProcessGrid& grid, Profiler& prof, Arena& arena,
                     DispatchScratch<T>& scratch)
      : B(d, ops, prof, arena, scratch),
        grid_(grid),
        plan_host_(size_t(d.E) + 1),
        tokens_per_expert_(d.E),
        recv_counts_(size_t(d.ep) * d.El),
        input_splits_(d.ep),
        output_splits_(d.ep) {
    const size_t Rr = d.recv_rows();
    arena.request(&expert_in_, Rr * d.Dm);
    arena.request(&index_block_, index_block_bytes(Rr));
    index_host_.resize(index_block_bytes(Rr));
  }

  ExpertRows<T> dispatch(const T* tokens, const int32_t* routing_map, const MoeRecord& record) override {
    Profiler::Scope ps(this->prof_, OpFamily::Dispatch);
    auto& s = this->s_;
    this->plan(routing_map, record);
    // The layer's one wait for the device: the plan's offsets, which the all-to-all sizes need.
    this->ops_.device().copy(plan_host_.data(), record.offsets, sizeof(int64_t) * plan_host_.size(),
                             CopyKind::DeviceToHost);
    const int R = int(plan_host_[this->d_.E]);
    for (int e = 0; e < this->d_.E; ++e) tokens_per_expert_[e] = plan_host_[e + 1] - plan_host_[e];
    this->ops_.moe_permute(s.send, tokens, this->row_src_, {R, this->d_.Dm});
    exchange_counts();
    alltoallv_rows(s.send, input_splits_, s.arrival, output_splits_);
    this->ops_.moe_permute(expert_in_, s.arrival, sort_idx_, {int(Rr_), this->d_.Dm});
    return {expert_in_, s.expert_rows, offsets_, int(Rr_)};
  }

  int64_t expert_rows_on_host() const override { return Rr_; }

  void combine(T* out, const P* gates) override {
    Profiler::Scope ps(this->prof_, OpFamily::Dispatch);
    auto& s = this->s_;
    // Back to arrival order, then home to the source ranks.
    this->ops_.moe_permute(s.arrival, s.expert_rows, unsort_idx_, {int(Rr_), this->d_.Dm});
    alltoallv_rows(s.arrival, output_splits_, this->returned_, input_splits_);
    this->ops_.moe_combine(out, this->returned_, gates, this->slot_, this->dims());
  }

  ExpertGrads<T> combine_backward(P* dgates, const T* dout, const P* gates) override {
    Profiler::Scope ps(this->prof_, OpFamily::Dispatch);
    auto& s = this->s_;
    this->ops_.moe_combine_backward(s.d_home, dgates, dout, this->returned_, gates, this->slot_, this->dims());
    // The gradient of the returned rows travels like the dispatched tokens, then into expert order.
    alltoallv_rows(s.d_home, input_splits_, s.arrival, output_splits_);
    this->ops_.moe_permute(s.expert_rows, s.arrival, sort_idx_, {int(Rr_), this->d_.Dm});
    return {s.expert_rows, s.d_expert_in};
  }

  void dispatch_backward(T* d_tokens) override {
    Profiler::Scope ps(this->prof_, OpFamily::Dispatch);
    auto& s = this->s_;
    this->ops_.moe_permute(s.arrival, s.d_expert_in, unsort_idx_, {int(Rr_), this->d_.Dm});
    alltoallv_rows(s.arrival, output_splits_, s.d_home, input_splits_);
    this->ops_.moe_permute_backward(d_tokens, s.d_home, this->slot_, this->dims());
  }

 private:
  // Rows to ep peers: send_splits[j] rows from `send` (in rank order) to rank j; recv likewise.
  void alltoallv_rows(const T* send, const std::vector<int64_t>& send_splits, T* recv,
                      const std::vector<int64_t>& recv_splits) {
    const int ep = this->d_.ep, Dm = this->d_.Dm;
    std::vector<size_t> sc(ep), sd(ep), rc(ep), rd(ep);
    size_t so = 0, ro = 0;
    for (int j = 0; j < ep; ++j) {
      sc[j] = size_t(send_splits[j]) * Dm;
      sd[j] = so;
      so += sc[j];
      rc[j] = size_t(recv_splits[j]) * Dm;
      rd[j] = ro;
      ro += rc[j];
    }
    grid_.ep().alltoallv(send, sc.data(), sd.data(), recv, rc.data(), rd.data(), dtype_of<T>(),
                         this->ops_.device().space());
  }

  // The device block of the received rows' indices: the local experts' offsets (El + 1, int64), then
  // sort_idx and unsort_idx (Rr int32 each), written by one host-to-device copy.
  size_t index_block_bytes(size_t Rr) const { return sizeof(int64_t) * (size_t(this->d_.El) + 1) + 2 * sizeof(int32_t) * Rr; }

  // Exchanges tokens_per_expert over the ep group; sets the splits, the rows received (Rr_), the
  // local experts' offsets and the (source, expert) -> (expert, source) order of the received rows.
  void exchange_counts() {
    const int ep = this->d_.ep, El = this->d_.El;
    // tokens_per_expert_ is in global expert order: block j is rank j's experts.
    grid_.ep().alltoall_host(tokens_per_expert_.data(), recv_counts_.data(), size_t(El), DType::I64);
    for (int j = 0; j < ep; ++j) {
      input_splits_[j] = 0;
      output_splits_[j] = 0;
      for (int e = 0; e < El; ++e) {
        input_splits_[j] += tokens_per_expert_[size_t(j) * El + e];
        output_splits_[j] += recv_counts_[size_t(j) * El + e];
      }
    }
    Rr_ = std::accumulate(output_splits_.begin(), output_splits_.end(), int64_t(0));
    MT_CHECK(size_t(Rr_) <= this->d_.recv_rows(), "MoE: ", Rr_, " rows received, buffers hold ",
             this->d_.recv_rows());
    // Received row of (source j, expert e, i-th) -> sorted position.
    int64_t* off = reinterpret_cast<int64_t*>(index_host_.data());
    int32_t* sort_idx = reinterpret_cast<int32_t*>(off + El + 1);
    int32_t* unsort_idx = sort_idx + Rr_;
    std::vector<int64_t> src_base(ep + 1, 0);
    for (int j = 0; j < ep; ++j) src_base[j + 1] = src_base[j] + output_splits_[j];
    int64_t pos = 0;
    off[0] = 0;
    for (int e = 0; e < El; ++e) {
      for (int j = 0; j < ep; ++j) {
        int64_t start = src_base[j];
        for (int e2 = 0; e2 < e; ++e2) start += recv_counts_[size_t(j) * El + e2];
        for (int64_t i = 0; i < recv_counts_[size_t(j) * El + e]; ++i) {
          sort_idx[pos] = int32_t(start + i);
          unsort_idx[start + i] = int32_t(pos);
          ++pos;
        }
      }
      off[e + 1] = pos;
    }
    this->ops_.device().copy(index_block_, index_host_.data(), index_block_bytes(size_t(Rr_)), CopyKind::HostToDevice);
    offsets_ = reinterpret_cast<const int64_t*>(index_block_);
    sort_idx_ = reinterpret_cast<const int32_t*>(offsets_ + El + 1);
    unsort_idx_ = sort_idx_ + Rr_;
  }

  const ProcessGrid& grid_;
  // Saved for the backward (arena).
  T* expert_in_ = nullptr;               // (Rr, Dm) received tokens in (local expert, source) order
  char* index_block_ = nullptr;          // offsets_, sort_idx_, unsort_idx_ (index_block_bytes)
  const int64_t* offsets_ = nullptr;     // (El + 1) rows per local expert, in the experts' order
  const int32_t* sort_idx_ = nullptr;    // (Rr) arrival row of each expert-order row
  const int32_t* unsort_idx_ = nullptr;  // (Rr) expert-order row of each arrival row
  // Host state of the current micro-batch.
  std::vector<int64_t> plan_host_;       // (E + 1) the routing plan's offsets
  std::vector<int64_t> tokens_per_expert_;  // (E) rows kept per expert, in global expert order
  std::vector<char> index_host_;         // the index block's host side
  int64_t Rr_ = 0;                       // rows received for this rank's experts
  std::vector<int64_t> recv_counts_;     // (ep, El) rows received from each source per local expert
  std::vector<int64_t> input_splits_;    // (ep) rows sent to each ep rank
  std::vector<int64_t> output_splits_;   // (ep) rows received from each ep rank
};

template <typename T>
std::unique_ptr<Dispatcher<T>> make_dispatcher(const MoeDims& d, Ops<T>& ops, const ProcessGrid& grid,
                                               Profiler& prof, Arena& arena, DispatchScratch<T>& scratch) {
  if (d.ep == 1) return std::make_unique<LocalDispatcher<T>>(d, ops, prof, arena, scratch);
  return std::make_unique<AllToAllDispatcher<T>>(d, ops, grid, prof, arena, scratch);
}

}  // namespace mt
