// Why: fuzzes the two checkpoint documents a resume or an export trusts. The input's first byte picks
// the document: state.json (as given, and again with its CRC-32 made to match, so that the fuzzer gets
// past the checksum to the file list, the step, the saved manifest and the expert bias), or the
// moetrain.slices metadata of a shard holding tensors "a" [2, 3] and "b" [4], which `export` then
// assembles.
#include <zlib.h>

#include <vector>

#include "engine/run/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

void write_state(const std::string& dir, mt::json state) {
  state["crc32"] = mt::state_crc(state, "state.json");
  const std::string text = state.dump(2);
  mt::fuzz::write_bytes(dir + "/state.json", text.data(), text.size());
}

mt::json file_entry(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  std::vector<char> buf(1 << 16);
  uLong crc = crc32(0L, Z_NULL, 0);
  uint64_t bytes = 0;
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), f)) > 0; bytes += n)
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), uInt(n));
  std::fclose(f);
  return {{"bytes", bytes}, {"crc32", uint32_t(crc)}};
}

bool is_utf8(const std::string& text) {
  try {
    (void)mt::json(text).dump();
    return true;
  } catch (const mt::json::exception&) {
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string dir = mt::fuzz::scratch() + "/ckpt";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string text = mt::fuzz::text_of(data + 1, size - 1);
  const std::string shard = dir + "/model-tp0-ep0.safetensors";
  const float a[6] = {1, 2, 3, 4, 5, 6}, b[4] = {7, 8, 9, 10};
  if (data[0] & 1) {  // slices
    if (!is_utf8(text)) return 0;  // a header holds JSON strings: such text cannot be in a shard
    mt::safetensors::write(shard, {{"a", mt::DType::F32, {2, 3}, a}, {"b", mt::DType::F32, {4}, b}},
                           {{"format", "pt"}, {"moetrain.slices", text}});
    write_state(dir, {{"step", 1}, {"files", {{"model-tp0-ep0.safetensors", file_entry(shard)}}}});
    mt::fuzz::expect_answer([&] { mt::export_checkpoint(dir, dir + "/out.safetensors"); });
    return 0;
  }
  const std::string slices = R"({"a": {"global_shape": [2, 3], "start": [0, 0]}, "b": {"global_shape": [4], "start": [0]}})";
  mt::safetensors::write(shard, {{"a", mt::DType::F32, {2, 3}, a}, {"b", mt::DType::F32, {4}, b}},
                         {{"format", "pt"}, {"moetrain.slices", slices}});
  mt::fuzz::write_bytes(dir + "/state.json", text.data(), text.size());
  auto use = [&] {
    mt::json st = mt::verify_checkpoint(dir);
    if (st.contains("config")) (void)mt::parse_run(st["config"], "state.json config", "");
    if (st.contains("moe_bias")) (void)mt::read_expert_bias(st, "state.json", 8);
    mt::export_checkpoint(dir, dir + "/out.safetensors");
  };
  mt::fuzz::expect_answer(use);
  mt::fuzz::expect_answer([&] {
    mt::json st = mt::parse_json(text, "state.json");
    if (!st.is_object()) return;
    st.erase("crc32");
    if (st.contains("files") && st["files"].is_object() && st["files"].contains("model-tp0-ep0.safetensors"))
      st["files"]["model-tp0-ep0.safetensors"] = file_entry(shard);
    write_state(dir, st);
    use();
  });
  return 0;
}
