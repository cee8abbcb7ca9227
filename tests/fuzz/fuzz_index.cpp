// Why: fuzzes a dataset folder's index.json (types, counts, shard names, tokenizer entry) next to a
// valid native shard of 8 tokens, and reads the tokens it lets through.
#include <cstring>
#include <vector>

#include "data/shards.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = mt::fuzz::scratch() + "/ds";
  static const bool made = [&] {
    std::filesystem::create_directories(dir);
    std::vector<int32_t> header(256, 0);
    header[0] = 20240520;  // native v1 magic
    header[1] = 1;
    header[2] = 8;
    std::vector<uint16_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
    std::string bytes(reinterpret_cast<const char*>(header.data()), 1024);
    bytes.append(reinterpret_cast<const char*>(tokens.data()), 16);
    mt::fuzz::write_bytes(dir + "/train_0.bin", bytes.data(), bytes.size());
    return true;
  }();
  (void)made;
  mt::fuzz::write_bytes(dir + "/index.json", data, size);
  for (auto split : {mt::data::Split::Train, mt::data::Split::Val})
    mt::fuzz::expect_answer([&] {
      mt::data::TokenDataset ds = mt::data::open_dataset(dir, split, 0);
      std::vector<int32_t> out(8);
      for (size_t s = 0; s < ds.shards.size(); ++s)
        if (ds.shards[s].tokens > 0) ds.read(s, 0, std::min<int64_t>(8, ds.shards[s].tokens), out.data());
      (void)ds.characters();
      if (auto tok = mt::data::load_tokenizer(ds.tokenizer)) (void)tok->decode(out.data(), 1);
    });
  return 0;
}
