// Why: fuzzes the manifest reader (a run or a sweep, as `moetrain plan` reads it): JSON depth and
// syntax, every getter's type and bound checks, sweeps' dotted overrides, and the plan's arithmetic.
#include "engine/run/config.h"
#include "engine/run/plan.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mt::fuzz::scratch() + "/m.json";
  mt::fuzz::write_bytes(path, data, size);
  mt::fuzz::expect_answer([&] {
    mt::Manifest m = mt::load_manifest(path, {});
    for (const auto& run : m.sweep.runs) {
      mt::RunConfig c = mt::parse_run(run.manifest, path, m.sweep.base_dir);
      mt::Plan p = mt::make_plan(c);
      (void)mt::resolved_manifest(c, p).dump();
    }
  });
  return 0;
}
