// Why: a single-process run uses SelfComm and a single-rank grid without MPI: every collective must be
// the identity or a copy (through the Device for device buffers), the layout checks must hold on one
// rank too, and MPI must never be initialised without a launcher.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "comm/grid.h"
#include "comm/job.h"
#include "engine/core/check.h"
#include "tests/mpi/counting_device.h"

using namespace mt;
using mt::test::CountingDevice;

namespace {

// Sets (or unsets, for nullopt) environment variables for one scope and restores them after.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, std::optional<std::string>>> vars) {
    for (const auto& [name, value] : vars) {
      const char* old = std::getenv(name);
      saved_.push_back({name, old ? std::optional<std::string>(old) : std::nullopt});
      set(name, value);
    }
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) set(name, value);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  static void set(const char* name, const std::optional<std::string>& value) {
    if (value)
      setenv(name, value->c_str(), 1);
    else
      unsetenv(name);
  }
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

// No launcher in sight, whatever started this test.
ScopedEnv no_launcher() {
  return ScopedEnv{{"OMPI_COMM_WORLD_SIZE", std::nullopt},
                   {"PMI_SIZE", std::nullopt},
                   {"PMIX_RANK", std::nullopt},
                   {"SLURM_STEP_NUM_TASKS", std::nullopt}};
}

}  // namespace

TEST_CASE("SelfComm: sums are the identity, gathers and exchanges copy", "[comm]") {
  CountingDevice dev;
  auto comm = make_self_comm(dev);
  CHECK(comm->rank() == 0);
  CHECK(comm->size() == 1);
  CHECK(comm->describe() == "self (1 rank)");
  const MemSpace space = GENERATE(MemSpace::Host, MemSpace::Device);
  INFO((space == MemSpace::Host ? "host" : "device"));
  const int device_copy = space == MemSpace::Device ? 1 : 0;

  std::vector<float> buf = {1.5f, -2.f, 3.f};
  comm->allreduce_sum(buf.data(), buf.size(), DType::F32, space);
  comm->iallreduce_sum(buf.data(), buf.size(), DType::F32, space)->wait();
  comm->broadcast(buf.data(), buf.size(), DType::F32, 0, space);
  CHECK(buf == std::vector<float>{1.5f, -2.f, 3.f});
  CHECK(dev.total_copies() == 0);

  std::vector<double> out(3, -1.0);
  const std::vector<double> in = {4.0, 5.0, 6.0};
  comm->allgather(in.data(), out.data(), 3, DType::F64, space);
  CHECK(out == in);
  std::vector<int64_t> rs(2, 0);
  const std::vector<int64_t> rs_in = {7, 8};
  comm->reduce_scatter_sum(rs_in.data(), rs.data(), 2, DType::I64, space);
  CHECK(rs == rs_in);
  CHECK(dev.copies_of(CopyKind::DeviceToDevice) == 2 * device_copy);
  CHECK(dev.copies_of(CopyKind::DeviceToHost) + dev.copies_of(CopyKind::HostToDevice) == 0);

  // alltoallv honours the displacements on both sides and leaves the rest alone.
  const std::vector<int32_t> send = {0, 0, 10, 11, 12};
  std::vector<int32_t> recv(6, -1);
  const size_t send_count = 3, send_displ = 2, recv_count = 3, recv_displ = 1;
  comm->alltoallv(send.data(), &send_count, &send_displ, recv.data(), &recv_count, &recv_displ,
                  DType::I32, space);
  CHECK(recv == std::vector<int32_t>{-1, 10, 11, 12, -1, -1});
  CHECK(dev.copies_of(CopyKind::DeviceToDevice) == 3 * device_copy);

  std::vector<uint8_t> a2a(4, 0);
  const std::vector<uint8_t> a2a_in = {1, 2, 3, 4};
  comm->alltoall_host(a2a_in.data(), a2a.data(), 4, DType::U8);
  CHECK(a2a == a2a_in);
  comm->barrier();
}

TEST_CASE("SelfComm: wrong roots and mismatched self counts are errors", "[comm]") {
  CountingDevice dev;
  auto comm = make_self_comm(dev);
  float x = 1.f;
  CHECK_THROWS_WITH(comm->broadcast(&x, 1, DType::F32, 1, MemSpace::Host),
                    Catch::Contains("broadcast root 1"));
  const size_t two = 2, three = 3, zero = 0;
  std::vector<float> a(3), b(3);
  CHECK_THROWS_AS(comm->alltoallv(a.data(), &two, &zero, b.data(), &three, &zero, DType::F32,
                                  MemSpace::Host),
                  Error);
}

TEST_CASE("launched_by_mpi recognises the launchers' environments", "[comm]") {
  {
    auto env = no_launcher();
    CHECK_FALSE(launched_by_mpi());
  }
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    INFO(var);
    auto env = no_launcher();
    ScopedEnv set{{var, std::string("2")}};
    CHECK(launched_by_mpi());
  }
  auto env = no_launcher();
  {
    ScopedEnv one_task{{"SLURM_STEP_NUM_TASKS", std::string("1")}};
    CHECK_FALSE(launched_by_mpi());
  }
  ScopedEnv tasks{{"SLURM_STEP_NUM_TASKS", std::string("4")}};
  CHECK(launched_by_mpi());
}

TEST_CASE("make_grid without a launcher: one rank of SelfComms, no MPI", "[comm]") {
  auto env = no_launcher();
  CountingDevice dev;
  CHECK(init_distributed() == 1);
  auto g = make_grid(1, 1, dev);
  CHECK(g->world_size == 1);
  CHECK(g->is_root());
  CHECK(g->describe() == "world 1 = tp 1 x dp 1 (ep 1)");
  for (Comm* c : {&g->world(), &g->tp(), &g->dp(), &g->ep(), &g->edp()}) {
    CHECK(c->size() == 1);
    CHECK(c->describe() == "self (1 rank)");
  }
  float grad = 2.f;
  g->dp().allreduce_sum(&grad, 1, DType::F32, MemSpace::Host);
  CHECK(grad == 2.f);
  CHECK(!job_place().in_job);

  CHECK_THROWS_WITH(make_grid(2, 1, dev),
                    Catch::Contains("parallel.tp = 2") && Catch::Contains("world size 1"));
  CHECK_THROWS_WITH(make_grid(1, 2, dev), Catch::Contains("parallel.ep = 2"));
  CHECK_THROWS_AS(make_grid(0, 1, dev), InputError);
}
