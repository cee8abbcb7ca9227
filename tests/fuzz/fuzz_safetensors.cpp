// Why: fuzzes the safetensors reader (header length, header JSON, dtypes, shapes, offsets) and reads
// every tensor it accepts.
#include "engine/run/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mt::fuzz::scratch() + "/t.safetensors";
  mt::fuzz::write_bytes(path, data, size);
  mt::fuzz::expect_answer([&] {
    mt::safetensors::File f(path);
    volatile uint8_t sink = 0;
    for (const auto& [name, e] : f.entries()) {
      const auto* p = static_cast<const uint8_t*>(f.data(name));
      const size_t bytes = e.end - e.begin;
      for (size_t i = 0; i < bytes; i += 97) sink = sink + p[i];
    }
  });
  return 0;
}
