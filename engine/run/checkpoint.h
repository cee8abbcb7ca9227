// Why: checkpoints that survive crashes and change of layout. A checkpoint is a folder
// checkpoints/step_XXXXXXXX/ with
//   model-tp{t}-ep{e}.safetensors      fp32 weights, DESIGN.md names, this shard's slice of each tensor
//   optimizer-tp{t}-ep{e}.safetensors  Adam moments "exp_avg.NAME", "exp_avg_sq.NAME", same slices
//   state.json                         step, tokens, loader state, seed, layout, the expert bias
//                                      (moe_bias, with model.moe.balance bias / aux+bias), every file's
//                                      size and CRC-32, and its own CRC-32 (a corrupt or edited
//                                      checkpoint is refused)
// A checkpoint is written only from finite weights and moments.
// Each safetensors file records, in its metadata, where every slice lies in the full tensor, so a
// reader at any (tp, ep, dp) assembles its own slices from whichever shards hold them (resharding on
// load), and `moetrain export` assembles full tensors. Dense tensors are written by the ranks with
// dp_rank 0, expert tensors by the ranks with edp_rank 0; a tensor replicated over tp (norms, router,
// embed, lm_head) only by tp rank 0, so that each element is stored once. Everything is written into a
// temporary folder renamed into place when complete, so the latest checkpoint is always whole.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/grid.h"
#include "engine/run/config.h"
#include "engine/model/params.h"
#include "engine/run/safetensors.h"

namespace mt {

// Host copies of one rank's buffers (full local length; nullptr for an empty group).
struct CheckpointBuffers {
  const float* dense = nullptr;
  const float* expert = nullptr;
  const float* dense_m = nullptr;
  const float* dense_v = nullptr;
  const float* expert_m = nullptr;
  const float* expert_v = nullptr;
};

struct CheckpointBuffersMut {
  float* dense = nullptr;
  float* expert = nullptr;
  float* dense_m = nullptr;   // may be nullptr: moments are not read
  float* dense_v = nullptr;
  float* expert_m = nullptr;
  float* expert_v = nullptr;
};

// Collective over the world: writes checkpoints/step_<step> under run_dir with `state` (a JSON object
// to which the layout and file sums are added) and keeps the newest `keep` checkpoints.
void save_checkpoint(const std::string& run_dir, int64_t step, json state, const ProcessGrid& grid,
                     const ParamLayout& layout, const CheckpointBuffers& bufs, int keep);

// The newest complete checkpoint folder under run_dir ("" if none).
std::string latest_checkpoint(const std::string& run_dir);

// The newest checkpoint under run_dir that verifies, with its state.json in *state ("" if none). Each
// newer one that does not verify is skipped with a warning line on stderr (when `warn`); if none
// verifies, the newest one's InputError.
std::string latest_intact_checkpoint(const std::string& run_dir, json* state, bool warn);

// Verifies state.json against its own CRC-32 and the checkpoint's files against state.json (an
// InputError names the corrupt file) and returns state.json (without its crc32).
json verify_checkpoint(const std::string& ckpt_dir);

// The expert bias of aux-loss-free balancing saved in a checkpoint's state.json ("moe_bias": n numbers,
// MoE layer * E + expert), checked: bad input is an InputError naming `where` and the field.
std::vector<double> read_expert_bias(const json& state, const std::string& where, size_t n);

// CRC-32 of a state.json object (without its "crc32" key) as dumped compactly: the text is canonical,
// so the sum survives the pretty-printing of the file.
uint64_t state_crc(const json& state, const std::string& where);

// Reads this rank's slices (by `layout`) from a checkpoint written at any layout.
void load_checkpoint(const std::string& ckpt_dir, const ParamLayout& layout, const CheckpointBuffersMut& bufs);

// The tensors of `table` held in host buffer `values`, named prefix + name (for safetensors::write).
std::vector<safetensors::TensorRef> table_refs(const ParamTable& table, const float* values,
                                               const std::string& prefix = "");

// Reads this rank's slices from a checkpoint folder, or from a single-file safetensors of full
// tensors (the form of `moetrain init` and `moetrain export`). Moments are not read. Weights holding
// NaN or Inf are an InputError.
void load_weights(const std::string& path, const ParamLayout& layout, float* dense, float* expert);

// Assembles the full tensors of a checkpoint into one safetensors file with DESIGN.md names.
void export_checkpoint(const std::string& ckpt_dir, const std::string& out_path);

// Copies the intersection of two boxes of the same N-d tensor: src holds the box starting at
// src_start with shape src_shape, dst the box at dst_start with dst_shape (row-major, float).
void copy_box_intersection(float* dst, const std::vector<int64_t>& dst_start, const std::vector<int64_t>& dst_shape,
                           const float* src, const std::vector<int64_t>& src_start,
                           const std::vector<int64_t>& src_shape);

}  // namespace mt
