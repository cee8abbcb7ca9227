// Why: see checkpoint.h.
#include "engine/run/checkpoint.h"

#include <zlib.h>

#include <algorithm>
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
    s.slices = json::parse(it->second);
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
    MT_INPUT(sl["global_shape"].get<std::vector<int64_t>>() == global_shape, s.file->path(), ": tensor ", name,
             " has shape ", sl["global_shape"].dump(), " but this model expects ", json(global_shape).dump(),
             " (a checkpoint of another architecture?)");
    const auto& e = s.file->entry(name);
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
      json s = json::parse(read_text(e.path().string()));
      files[e.path().stem().string()] = s;
      fs::remove(e.path());
    }
    state["step"] = step;
    state["layout"] = {{"world", grid.world_size}, {"tp", grid.tp_size}, {"ep", grid.ep_size}, {"dp", grid.dp_size}};
    state["files"] = files;
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
  const fs::path root = fs::path(run_dir) / "checkpoints";
  if (!fs::exists(root)) return "";
  std::vector<fs::path> all;
  for (auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step_", 0) == 0 && fs::exists(e.path() / "state.json")) all.push_back(e.path());
  }
  if (all.empty()) return "";
  std::sort(all.begin(), all.end());
  return all.back().string();
}

json verify_checkpoint(const std::string& ckpt_dir) {
  const std::string state_path = (fs::path(ckpt_dir) / "state.json").string();
  MT_INPUT(fs::exists(state_path), ckpt_dir, ": not a checkpoint (no state.json)");
  json state;
  try {
    state = json::parse(read_text(state_path));
  } catch (const json::parse_error&) {
    throw InputError(state_path + ": corrupt checkpoint state (invalid JSON)");
  }
  MT_INPUT(state.contains("files") && state["files"].is_object() && !state["files"].empty(), state_path,
           ": corrupt checkpoint state (no file list)");
  for (auto it = state["files"].begin(); it != state["files"].end(); ++it) {
    const std::string path = (fs::path(ckpt_dir) / it.key()).string();
    MT_INPUT(fs::exists(path), ckpt_dir, ": corrupt checkpoint: ", it.key(), " is missing");
    auto [bytes, crc] = file_sum(path);
    MT_INPUT(bytes == it.value()["bytes"].get<uint64_t>() && crc == it.value()["crc32"].get<uint32_t>(), ckpt_dir,
             ": corrupt checkpoint: ", it.key(), " does not match its recorded size and CRC-32 (", bytes,
             " bytes; refusing to resume from it)");
  }
  return state;
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

}  // namespace mt
