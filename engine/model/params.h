// Why: parameters live in two contiguous buffers (dense, and experts: their gradients reduce over a
// different group), each described by a table of named tensors with the names of DESIGN.md. A table
// is built for one rank of a (tp, ep) layout: it holds that rank's slice of every tensor and knows
// where the slice sits in the full tensor, so that checkpoints can be written by shard and read back
// at any other layout. Gradients and Adam state mirror the same tables.
//
// Buffer order is the forward order (embed, layer 0 .. L-1, final_norm, lm_head), so that during the
// backward the finished gradients form a growing suffix of the buffer (bucketed all-reduce).
// Initialisation is counter-based: element i of tensor "name" is a function of (seed, name, i) in the
// FULL tensor, so every layout starts from the same weights.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/model_config.h"

namespace mt {

enum class Decay { No, Yes };
// Normal(0, 0.02); Normal(0, 0.02 / sqrt(2 L)) for output projections (wo, w2); ones (norms).
enum class Init { Normal, NormalScaledOut, Ones };

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;         // local (this rank's slice)
  std::vector<int64_t> global_shape;  // the full tensor
  std::vector<int64_t> slice_start;   // where the slice starts in the full tensor, per dimension
  size_t offset = 0;                  // in elements, in the buffer
  size_t numel = 0;                   // local
  Decay decay = Decay::Yes;
  Init init = Init::Normal;
  bool tp_sharded = false;            // false: identical on every tp rank (norms, router, embed, lm_head)
};

struct ParamTable {
  std::vector<TensorInfo> tensors;
  size_t numel = 0;
  const TensorInfo& at(const std::string& name) const;  // throws mt::Error if absent
  const TensorInfo* find(const std::string& name) const;
};

// A rank's position in the tensor- and expert-parallel split.
struct ShardSpec {
  int tp_rank = 0, tp_size = 1;
  int ep_rank = 0, ep_size = 1;
};

struct ParamLayout {
  ParamTable dense;   // everything but the routed experts
  ParamTable expert;  // layers.{i}.moe.experts.{w1,w3,w2}
};

ParamLayout build_param_layout(const ModelConfig& model, const ShardSpec& shard);

// Fills a host buffer laid out by `table` with the documented initial values.
template <typename P>
void init_params(P* buffer, const ParamTable& table, uint64_t seed, int n_layers);

// The flat index in the full tensor of local element `local_index` of tensor `t`.
int64_t global_flat_index(const TensorInfo& t, int64_t local_index);

}  // namespace mt
