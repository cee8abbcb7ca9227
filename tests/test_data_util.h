// Why: the data tests write token files in the documented byte layouts themselves (llm.c shards,
// Megatron-LM indexed datasets, index.json), never with the code under test, so that a reader and a
// writer cannot share a mistake.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "data/build.h"
#include "data/shards.h"
#include "engine/core/check.h"

namespace mt::test {

// Little-endian bytes of v appended to out (the test hosts are little-endian, as the readers require).
template <typename T>
void put(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out->append(b, sizeof(T));
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  MT_CHECK(f.good(), "cannot write ", path);
}

// An llm.c shard: 256 int32 header [magic, version, count, 0...], then uint16 (v1) or uint32 (v7)
// tokens. `magic`/`count` override the header fields (for corrupt files); -1 keeps the right value.
inline std::string native_shard(const std::vector<uint32_t>& tokens, int version, int64_t magic = -1,
                                int64_t count = -1) {
  std::string s;
  put<int32_t>(&s, int32_t(magic != -1 ? magic : version == 1 ? 20240520 : 20240801));
  put<int32_t>(&s, version);
  put<int32_t>(&s, int32_t(count != -1 ? count : int64_t(tokens.size())));
  s.resize(1024, '\0');
  for (uint32_t t : tokens) {
    if (version == 1) put<uint16_t>(&s, uint16_t(t));
    else put<uint32_t>(&s, t);
  }
  return s;
}

// A Megatron-LM indexed dataset PREFIX.idx / PREFIX.bin: one sequence per entry of `seqs`, one
// document per sequence; `code` is the dtype code (4 = int32, 8 = uint16).
inline void write_megatron(const std::string& prefix, const std::vector<std::vector<int64_t>>& seqs, int code) {
  MT_CHECK(code == 8 || code == 4, "write_megatron writes uint16 (8) or int32 (4) tokens");
  const int width = code == 8 ? 2 : 4;
  std::string idx("MMIDIDX\0\0", 9), bin;
  put<uint64_t>(&idx, 1);
  put<uint8_t>(&idx, uint8_t(code));
  put<uint64_t>(&idx, seqs.size());
  put<uint64_t>(&idx, seqs.size() + 1);
  for (const auto& q : seqs) put<int32_t>(&idx, int32_t(q.size()));
  int64_t offset = 0;
  for (const auto& q : seqs) {
    put<int64_t>(&idx, offset);
    offset += int64_t(q.size()) * width;
  }
  for (size_t d = 0; d <= seqs.size(); ++d) put<int64_t>(&idx, int64_t(d));
  for (const auto& q : seqs)
    for (int64_t t : q) {
      if (width == 2) put<uint16_t>(&bin, uint16_t(t));
      else put<int32_t>(&bin, int32_t(t));
    }
  write_bytes(prefix + ".idx", idx);
  write_bytes(prefix + ".bin", bin);
}

// `moetrain data build` of `inputs` into `out` with `val_tokens` validation tokens and the options that
// `set` changes, without progress reports.
template <typename F>
mt::data::BuildSummary build_with(const std::vector<std::string>& inputs, const std::string& out, int64_t val_tokens,
                                  F&& set) {
  mt::data::BuildOptions o;
  o.inputs = inputs;
  o.out_dir = out;
  o.val_tokens = val_tokens;
  set(o);
  return mt::data::build_dataset(o, nullptr);
}

// Every token of a dataset's shards, in order (read through the reader under test).
inline std::vector<int32_t> all_tokens(const mt::data::TokenDataset& ds) {
  std::vector<int32_t> out;
  for (size_t s = 0; s < ds.shards.size(); ++s) {
    std::vector<int32_t> t(size_t(ds.shards[s].tokens));
    ds.read(s, 0, ds.shards[s].tokens, t.data());
    out.insert(out.end(), t.begin(), t.end());
  }
  return out;
}

}  // namespace mt::test
