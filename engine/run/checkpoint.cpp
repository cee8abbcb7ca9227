// Why: see checkpoint.h.
#include "engine/run/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "engine/core/check.h"
#include "engine/core/io.h"
#include "engine/run/safetensors.h"

namespace fs = std::filesystem;

namespace mt {

namespace {

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

// Size and CRC-32 of a file, read in 4 MiB blocks.
std::pair<uint64_t, uint32_t> file_sum(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MT_INPUT(in.good(), path, ": cannot open");
  std::vector<char> buf(4 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  uint64_t total = 0;
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    std::streamsize n = in.gcount();
    if (n <= 0) break;
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), uInt(n));
    total += uint64_t(n);
  }
  return {total, uint32_t(crc)};
}

bool all_finite(const float* p, size_t n) {
  float acc = 0;  // NaN and Inf propagate through the sum of x * 0
  for (size_t i = 0; i < n; ++i) acc += p[i] * 0.f;
  return acc == 0;
}

// Adds the tensors of `table` held in `values` (named prefix + name) and their slice metadata. The
// tensors replicated over tp are added only with `replicated` (tp rank 0): one copy per checkpoint,
// so that every element of a tensor is covered exactly once when it is assembled.
void add_table(const ParamTable& table, const float* values, const std::string& prefix, bool replicated,
               std::vector<safetensors::TensorRef>* refs, json* slices) {
  for (const TensorInfo& t : table.tensors) {
    if (!t.tp_sharded && !replicated) continue;
    refs->push_back({prefix + t.name, DType::F32, t.shape, values + t.offset});
    (*slices)[prefix + t.name] = {{"global_shape", t.global_shape}, {"start", t.slice_start}};
  }
}

// An int64 array of `rank` entries, each in [lo, 2^53) (the checkpoint's own numbers are far smaller).
std::vector<int64_t> int_array(const json& v, size_t rank, int64_t lo, const std::string& where) {
  MT_INPUT(v.is_array() && v.size() == rank, where, ": must be an array of ", rank, " integers, got ",
           v.dump().substr(0, 40));
  std::vector<int64_t> out;
  for (const json& d : v) {
    MT_INPUT(d.is_number_integer() && d.get<double>() >= double(lo) && d.get<double>() < 9e15, where,
             ": must hold integers >= ", lo, ", got ", d.dump());
    out.push_back(d.get<int64_t>());
  }
  return out;
}

// Each tensor's slice metadata must name a tensor of the file with the same rank, and the tensor
// must lie inside its global shape: checked once, before any copy reads an index from it.
void check_slices(const safetensors::File& f, const json& slices) {
  MT_INPUT(slices.is_object(), f.path(), ": moetrain.slices: must be an object");
  for (auto it = slices.begin(); it != slices.end(); ++it) {
    const std::string where = f.path() + ": moetrain.slices[\"" + it.key() + "\"]";
    MT_INPUT(it.value().is_object() && it.value().contains("global_shape") && it.value().contains("start"), where,
             ": needs global_shape and start");
    const auto& e = f.entry(it.key());
    const auto global = int_array(it.value()["global_shape"], e.shape.size(), 0, where + ".global_shape");
    const auto start = int_array(it.value()["start"], e.shape.size(), 0, where + ".start");
    for (size_t d = 0; d < e.shape.size(); ++d)
      MT_INPUT(start[d] + e.shape[d] <= global[d], where, ": the slice (start ", start[d], ", size ", e.shape[d],
               ") lies outside the global shape (", global[d], ") in dimension ", d);
  }
}

// The checkpoint folders under run_dir that have a state.json, oldest first.
std::vector<std::string> complete_checkpoints(const std::string& run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::vector<std::string> all;
  if (!fs::exists(root)) return all;
  for (auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step_", 0) == 0 && fs::exists(e.path() / "state.json")) all.push_back(e.path().string());
  }
  std::sort(all.begin(), all.end());
  return all;
}

struct Shard {
  std::unique_ptr<safetensors::File> file;
  json slices;
};

std::vector<Shard> open_shards(const std::string& dir, const std::string& prefix) {
  std::vector<Shard> shards;
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (n.rfind(prefix + "-", 0) == 0 && e.path().extension() == ".safetensors") names.push_back(e.path().string());
  }
  std::sort(names.begin(), names.end());
  for (auto& n : names) {
    Shard s;
    s.file = std::make_unique<safetensors::File>(n);
    auto it = s.file->metadata().find("moetrain.slices");
    MT_INPUT(it != s.file->metadata().end(), n, ": not a moetrain checkpoint shard (no slice metadata)");
    s.slices = parse_json(it->second, n + ": moetrain.slices");
    check_slices(*s.file, s.slices);
    shards.push_back(std::move(s));
  }
  MT_INPUT(!shards.empty(), dir, ": no ", prefix, "-*.safetensors files");
  return shards;
}

// Fills out (a box of tensor `name`) from every shard that holds part of it; checks full coverage.
void assemble(const std::vector<Shard>& shards, const std::string& name, const std::vector<int64_t>& global_shape,
              const std::vector<int64_t>& start, const std::vector<int64_t>& shape, float* out,
              const std::string& dir) {
  int64_t want = 1;
  for (auto d : shape) want *= d;
  int64_t got = 0;
  for (const Shard& s : shards) {
    if (!s.slices.contains(name)) continue;
    const json& sl = s.slices[name];
    const auto& e = s.file->entry(name);
    MT_INPUT(e.shape.size() == shape.size(), s.file->path(), ": tensor ", name, " has rank ", e.shape.size(),
             " but this model expects ", shape.size());
    MT_INPUT(sl["global_shape"].get<std::vector<int64_t>>() == global_shape, s.file->path(), ": tensor ", name,
             " has shape ", sl["global_shape"].dump(), " but this model expects ", json(global_shape).dump(),
             " (a checkpoint of another architecture?)");
    MT_INPUT(e.dtype == DType::F32, s.file->path(), ": tensor ", name, " is not F32");
    std::vector<int64_t> src_start = sl["start"].get<std::vector<int64_t>>();
    int64_t overlap = 1;
    for (size_t d = 0; d < shape.size(); ++d) {
      int64_t lo = std::max(start[d], src_start[d]);
      int64_t hi = std::min(start[d] + shape[d], src_start[d] + e.shape[d]);
      overlap *= std::max<int64_t>(0, hi - lo);
    }
    if (overlap == 0) continue;
    copy_box_intersection(out, start, shape, static_cast<const float*>(s.file->data(name)), src_start, e.shape);
    got += overlap;
  }
  MT_INPUT(got == want, dir, ": tensor ", name, " is not fully covered by the checkpoint's shards (", got, " of ",
           want, " elements)");
}

void read_table(const std::vector<Shard>& shards, const ParamTable& table, const std::string& prefix, float* out,
                const std::string& dir) {
  for (const TensorInfo& t : table.tensors)
    assemble(shards, prefix + t.name, t.global_shape, t.slice_start, t.shape, out + t.offset, dir);
}

}  // namespace

void load_weights_any(const std::string& path, const ParamLayout& layout, float* dense, float* expert);

uint64_t state_crc(const json& state, const std::string& where) {
  const std::string text = with_json_errors(where, [&] { return state.dump(); });
  return crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(text.data()), uInt(text.size()));
}

std::vector<safetensors::TensorRef> table_refs(const ParamTable& table, const float* values,
                                               const std::string& prefix) {
  std::vector<safetensors::TensorRef> refs;
  for (const TensorInfo& t : table.tensors) refs.push_back({prefix + t.name, DType::F32, t.shape, values + t.offset});
  return refs;
}

void copy_box_intersection(float* dst, const std::vector<int64_t>& dst_start, const std::vector<int64_t>& dst_shape,
                           const float* src, const std::vector<int64_t>& src_start,
                           const std::vector<int64_t>& src_shape) {
  const size_t nd = dst_shape.size();
  std::vector<int64_t> lo(nd), hi(nd);
  for (size_t d = 0; d < nd; ++d) {
    lo[d] = std::max(dst_start[d], src_start[d]);
    hi[d] = std::min(dst_start[d] + dst_shape[d], src_start[d] + src_shape[d]);
    if (hi[d] <= lo[d]) return;
  }
  // Iterate over all but the last dimension; copy a contiguous run along the last.
  std::vector<int64_t> idx(lo.begin(), lo.end());
  const int64_t run = hi[nd - 1] - lo[nd - 1];
  while (true) {
    int64_t so = 0, doff = 0;
    for (size_t d = 0; d < nd; ++d) {
      so = so * src_shape[d] + (idx[d] - src_start[d]);
      doff = doff * dst_shape[d] + (idx[d] - dst_start[d]);
    }
    std::copy(src + so, src + so + run, dst + doff);
    int d = int(nd) - 2;
    while (d >= 0 && ++idx[d] == hi[d]) {
      idx[d] = lo[d];
      --d;
    }
    if (d < 0) break;
  }
}

void save_checkpoint(const std::string& run_dir, int64_t step, json state, const ProcessGrid& grid,
                     const ParamLayout& layout, const CheckpointBuffers& bufs, int keep) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path tmp = root / ("." + step_name(step) + ".tmp");
  const fs::path final_dir = root / step_name(step);
  // Only finite weights and moments are written (agreed over the world, so that every rank stops).
  double bad = 0;
  const size_t nd = layout.dense.numel, ne = layout.expert.numel;
  for (auto [p, n] : {std::pair{bufs.dense, nd}, {bufs.dense_m, nd}, {bufs.dense_v, nd}, {bufs.expert, ne},
                      {bufs.expert_m, ne}, {bufs.expert_v, ne}})
    if (p && !all_finite(p, n)) bad = 1;
  grid.world().allreduce_sum(&bad, 1, DType::F64, MemSpace::Host);
  if (bad > 0)
    throw Error(str(final_dir.string(), ": not written: the weights or Adam moments hold NaN or Inf after step ", step,
                    " (the run diverged; resume from an earlier checkpoint with a lower lr, see --override-schedule)"));
  if (grid.is_root()) {
    fs::remove_all(tmp);
    fs::create_directories(tmp);
  }
  grid.world().barrier();
  const bool write_dense = grid.dp_rank == 0;
  const bool write_expert = grid.edp_rank == 0 && layout.expert.numel > 0;
  if (write_dense || write_expert) {
    const std::string tag = "tp" + std::to_string(grid.tp_rank) + "-ep" + std::to_string(grid.ep_rank);
    for (int kind = 0; kind < 2; ++kind) {
      std::vector<safetensors::TensorRef> refs;
      json slices = json::object();
      const bool rep = grid.tp_rank == 0;
      if (kind == 0) {
        if (write_dense) add_table(layout.dense, bufs.dense, "", rep, &refs, &slices);
        if (write_expert) add_table(layout.expert, bufs.expert, "", rep, &refs, &slices);
      } else {
        if (write_dense) {
          add_table(layout.dense, bufs.dense_m, "exp_avg.", rep, &refs, &slices);
          add_table(layout.dense, bufs.dense_v, "exp_avg_sq.", rep, &refs, &slices);
        }
        if (write_expert) {
          add_table(layout.expert, bufs.expert_m, "exp_avg.", rep, &refs, &slices);
          add_table(layout.expert, bufs.expert_v, "exp_avg_sq.", rep, &refs, &slices);
        }
      }
      const std::string file = (kind == 0 ? "model-" : "optimizer-") + tag + ".safetensors";
      const std::string path = (tmp / file).string();
      safetensors::write(path, refs, {{"format", "pt"}, {"moetrain.slices", slices.dump()}});
      auto [bytes, crc] = file_sum(path);
      write_text_atomic(path + ".sum", json{{"bytes", bytes}, {"crc32", crc}}.dump());
    }
  }
  grid.world().barrier();
  if (grid.is_root()) {
    json files = json::object();
    for (auto& e : fs::directory_iterator(tmp)) {
      if (e.path().extension() != ".sum") continue;
      json s = parse_json(read_text(e.path().string()), e.path().string());
      files[e.path().stem().string()] = s;
      fs::remove(e.path());
    }
    state["step"] = step;
    state["layout"] = {{"world", grid.world_size}, {"tp", grid.tp_size}, {"ep", grid.ep_size}, {"dp", grid.dp_size}};
    state["files"] = files;
    state["crc32"] = state_crc(state, "state.json");
    write_text_atomic((tmp / "state.json").string(), state.dump(2));
    fs::remove_all(final_dir);
    fs::rename(tmp, final_dir);
    // Keep the newest `keep` complete checkpoints.
    std::vector<fs::path> all;
    for (auto& e : fs::directory_iterator(root))
      if (e.is_directory() && e.path().filename().string().rfind("step_", 0) == 0) all.push_back(e.path());
    std::sort(all.begin(), all.end());
    for (size_t i = 0; i + size_t(keep) < all.size(); ++i) fs::remove_all(all[i]);
  }
  grid.world().barrier();
}

std::string latest_checkpoint(const std::string& run_dir) {
  const auto all = complete_checkpoints(run_dir);
  return all.empty() ? "" : all.back();
}

json verify_checkpoint(const std::string& ckpt_dir) {
  const std::string state_path = (fs::path(ckpt_dir) / "state.json").string();
  MT_INPUT(fs::exists(state_path), ckpt_dir, ": not a checkpoint (no state.json)");
  json state = parse_json(read_text(state_path), state_path);
  const std::string bad = state_path + ": corrupt checkpoint state";
  MT_INPUT(state.is_object() && state.contains("crc32") && state["crc32"].is_number_unsigned(), bad,
           " (no crc32: written by an older moetrain, or edited)");
  const auto recorded = state["crc32"].get<uint64_t>();
  state.erase("crc32");
  MT_INPUT(recorded == state_crc(state, state_path), bad, " (its CRC-32 does not match: edited or damaged)");
  MT_INPUT(state.contains("files") && state["files"].is_object() && !state["files"].empty(), bad, " (no file list)");
  MT_INPUT(state.contains("step") && state["step"].is_number_unsigned(), bad, " (step must be an integer >= 0)");
  for (auto it = state["files"].begin(); it != state["files"].end(); ++it) {
    const json& f = it.value();
    MT_INPUT(f.is_object() && f.contains("bytes") && f["bytes"].is_number_unsigned() && f.contains("crc32") &&
                 f["crc32"].is_number_unsigned(),
             bad, " (files[\"", it.key(), "\"] needs unsigned bytes and crc32)");
    MT_INPUT(it.key().find('/') == std::string::npos && it.key() != ".." && it.key() != ".", bad,
             " (files[\"", it.key(), "\"] is not a file name)");
    const std::string path = (fs::path(ckpt_dir) / it.key()).string();
    MT_INPUT(fs::exists(path), ckpt_dir, ": corrupt checkpoint: ", it.key(), " is missing");
    auto [bytes, crc] = file_sum(path);
    MT_INPUT(bytes == f["bytes"].get<uint64_t>() && crc == f["crc32"].get<uint64_t>(), ckpt_dir,
             ": corrupt checkpoint: ", it.key(), " does not match its recorded size and CRC-32 (", bytes,
             " bytes; refusing to resume from it)");
  }
  return state;
}

std::string latest_intact_checkpoint(const std::string& run_dir, json* state, bool warn) {
  auto all = complete_checkpoints(run_dir);
  std::reverse(all.begin(), all.end());
  std::vector<std::string> skipped;  // why each newer one was passed over
  for (const std::string& p : all) {
    try {
      *state = verify_checkpoint(p);
      for (const std::string& why : skipped)
        if (warn)
          std::fprintf(stderr, "moetrain: warning: skipping a corrupt checkpoint (%s); resuming from %s\n", why.c_str(),
                       p.c_str());
      return p;
    } catch (const InputError& e) {
      skipped.push_back(e.what());
    }
  }
  if (!skipped.empty()) throw InputError(skipped.front());  // none verifies: the newest's reason
  return "";
}

void load_checkpoint(const std::string& ckpt_dir, const ParamLayout& layout, const CheckpointBuffersMut& bufs) {
  auto model = open_shards(ckpt_dir, "model");
  if (bufs.dense) read_table(model, layout.dense, "", bufs.dense, ckpt_dir);
  if (bufs.expert && layout.expert.numel) read_table(model, layout.expert, "", bufs.expert, ckpt_dir);
  if (!bufs.dense_m) return;
  auto opt = open_shards(ckpt_dir, "optimizer");
  read_table(opt, layout.dense, "exp_avg.", bufs.dense_m, ckpt_dir);
  read_table(opt, layout.dense, "exp_avg_sq.", bufs.dense_v, ckpt_dir);
  if (layout.expert.numel) {
    read_table(opt, layout.expert, "exp_avg.", bufs.expert_m, ckpt_dir);
    read_table(opt, layout.expert, "exp_avg_sq.", bufs.expert_v, ckpt_dir);
  }
}

void load_weights(const std::string& path, const ParamLayout& layout, float* dense, float* expert) {
  load_weights_any(path, layout, dense, expert);
  MT_INPUT(all_finite(dense, layout.dense.numel) && (!layout.expert.numel || all_finite(expert, layout.expert.numel)),
           path, ": the weights hold NaN or Inf (a diverged run); evaluate or start from an earlier checkpoint");
}

void load_weights_any(const std::string& path, const ParamLayout& layout, float* dense, float* expert) {
  if (fs::is_directory(path)) {
    verify_checkpoint(path);
    load_checkpoint(path, layout, CheckpointBuffersMut{dense, expert});
    return;
  }
  // A single file of full tensors: every tensor is its own slice starting at 0.
  std::vector<Shard> shards(1);
  shards[0].file = std::make_unique<safetensors::File>(path);
  shards[0].slices = json::object();
  for (auto& [name, e] : shards[0].file->entries())
    shards[0].slices[name] = {{"global_shape", e.shape}, {"start", std::vector<int64_t>(e.shape.size(), 0)}};
  read_table(shards, layout.dense, "", dense, path);
  if (layout.expert.numel) read_table(shards, layout.expert, "", expert, path);
}

void export_checkpoint(const std::string& ckpt_dir, const std::string& out_path) {
  verify_checkpoint(ckpt_dir);
  auto shards = open_shards(ckpt_dir, "model");
  // Every tensor name with its full shape, in the order of the first shard that has it.
  std::vector<std::pair<std::string, std::vector<int64_t>>> tensors;
  std::map<std::string, bool> seen;
  for (const Shard& s : shards)
    for (auto it = s.slices.begin(); it != s.slices.end(); ++it)
      if (!seen[it.key()]) {
        seen[it.key()] = true;
        tensors.push_back({it.key(), it.value()["global_shape"].get<std::vector<int64_t>>()});
      }
  std::vector<std::vector<float>> data(tensors.size());
  std::vector<safetensors::TensorRef> refs;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, shape] = tensors[i];
    int64_t n = 1;
    for (auto d : shape) n *= d;
    data[i].resize(size_t(n));
    assemble(shards, name, shape, std::vector<int64_t>(shape.size(), 0), shape, data[i].data(), ckpt_dir);
    refs.push_back({name, DType::F32, shape, data[i].data()});
  }
  safetensors::write(out_path, refs, {{"format", "pt"}});
}

std::vector<double> read_expert_bias(const json& state, const std::string& where, size_t n) {
  const auto it = state.find("moe_bias");
  MT_INPUT(it != state.end(), where, ": no moe_bias (the checkpoint was written without the expert bias of ",
           "model.moe.balance bias / aux+bias)");
  MT_INPUT(it->is_array() && it->size() == n, where, ": moe_bias must be an array of ", n,
           " numbers (MoE layers x experts), got ", it->is_array() ? str(it->size(), " entries") : it->type_name());
  std::vector<double> bias(n);
  for (size_t i = 0; i < n; ++i) {
    const json& v = (*it)[i];
    MT_INPUT(v.is_number() && std::isfinite(v.get<double>()), where, ": moe_bias[", i, "] is not a finite number");
    bias[i] = v.get<double>();
  }
  return bias;
}

}  // namespace mt
