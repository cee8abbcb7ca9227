// Why: an op without a case in tests/op_cases.h is an op that no backend is tested on. The table of
// engine/ops/ops.h generates here an Ops<double> that only records which ops are called; every case of
// op_cases() runs on it, and every op of the table must have been called by at least one case. A new
// table line without a case fails this test, naming the op.
#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

#include "tests/op_cases.h"

namespace mt::optest {
namespace {

// The name of every op of the table.
#define MT_OP_NAME(ret, name, params, args, sync) #name,
const std::vector<std::string> kTableOps = {MT_OPS(MT_OP_NAME, void, void)};
#undef MT_OP_NAME

// Every op records its name and returns a zero value, writing nothing: the cases' outputs are not looked
// at, only which ops they call (on host memory, so that they can allocate and copy as usual).
class RecordingOps final : public Ops<double> {
 public:
  using T = double;
  using P = double;
  std::set<std::string> called;
  Device& device() override { return cpu_device(); }

#define MT_OP_RECORD(ret, name, params, args, sync) \
  ret name params override {            \
    called.insert(#name);               \
    return ret();                       \
  }
  MT_OPS(MT_OP_RECORD, T, P)
#undef MT_OP_RECORD
};

}  // namespace
}  // namespace mt::optest

TEST_CASE("every op of the table (engine/ops/ops.h) has a case in tests/op_cases.h", "[ops]") {
  mt::optest::RecordingOps rec;
  for (const mt::optest::OpCase& c : mt::optest::op_cases()) c.run_f64(rec, false);
  std::string missing;
  for (const std::string& op : mt::optest::kTableOps)
    if (!rec.called.count(op)) missing += " " + op;
  INFO("ops of the table that no case of tests/op_cases.h calls:" << missing);
  CHECK(missing.empty());
}
