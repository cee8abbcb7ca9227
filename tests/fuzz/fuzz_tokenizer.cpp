// Why: fuzzes the tokenizer.json reader (vocab, merges, added tokens, pre-tokenizer) and, when it
// accepts the file, encodes and decodes a fixed text with it.
#include <vector>

#include "data/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mt::fuzz::scratch() + "/tokenizer.json";
  mt::fuzz::write_bytes(path, data, size);
  mt::fuzz::expect_answer([&] {
    mt::data::Tokenizer t = mt::data::Tokenizer::from_file(path);
    std::vector<int32_t> ids;
    t.encode("Hello world! 123 <|endoftext|> \xc3\xa9t\xc3\xa9", &ids);
    (void)t.decode(ids.data(), ids.size());
  });
  return 0;
}
