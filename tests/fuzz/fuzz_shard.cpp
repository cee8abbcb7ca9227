// Why: fuzzes the token-file readers: a native/llm.c shard (header, count, size) and the same bytes
// as a Megatron-LM .idx next to a fixed .bin (magic, dtype code, counts, lengths and offsets). Every
// token the reader accepts is read and checked.
#include <vector>

#include "data/shards.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

void read_all(const mt::data::TokenDataset& ds) {
  std::vector<int32_t> out(64);
  for (size_t s = 0; s < ds.shards.size(); ++s)
    for (int64_t b = 0; b < std::min<int64_t>(ds.shards[s].tokens, 4096); b += 64)
      ds.read(s, b, std::min<int64_t>(64, ds.shards[s].tokens - b), out.data());
  (void)ds.scan();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = mt::fuzz::scratch();
  mt::fuzz::write_bytes(dir + "/shard.bin", data, size);
  mt::fuzz::expect_answer([&] { read_all(mt::data::open_dataset(dir + "/shard.bin", mt::data::Split::Train, 50257)); });
  static const bool made = [&] {
    std::vector<uint16_t> bin(2048);
    for (size_t i = 0; i < bin.size(); ++i) bin[i] = uint16_t(i % 300);
    mt::fuzz::write_bytes(dir + "/mega.bin", bin.data(), bin.size() * 2);
    return true;
  }();
  (void)made;
  mt::fuzz::write_bytes(dir + "/mega.idx", data, size);
  mt::fuzz::expect_answer([&] { read_all(mt::data::open_dataset(dir + "/mega", mt::data::Split::Train, 0)); });
  return 0;
}
