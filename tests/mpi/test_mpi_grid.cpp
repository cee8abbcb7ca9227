// Why: make_grid must split the world exactly as grid.h documents (tp fastest; ep groups of consecutive
// dp ranks; edp the replicas of the same experts), since every gradient reduction and token exchange
// relies on it. For every layout the world size allows, each group's members are gathered through the
// group itself and compared with the formulas; layouts that do not fit are InputErrors.
#include <mpi.h>

#include <catch2/catch.hpp>
#include <functional>
#include <vector>

#include "comm/grid.h"
#include "engine/core/check.h"
#include "tests/mpi/counting_device.h"

using namespace mt;
using mt::test::CountingDevice;

namespace {

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// The world ranks of `comm`'s members, in the order of their ranks in it.
std::vector<int> gathered_members(Comm& comm, int world_rank) {
  std::vector<int> members(comm.size(), -1);
  comm.allgather(&world_rank, members.data(), 1, DType::I32, MemSpace::Host);
  return members;
}

// The world ranks w with same(w), in increasing order.
std::vector<int> expected_members(int world, const std::function<bool(int)>& same) {
  std::vector<int> m;
  for (int w = 0; w < world; ++w)
    if (same(w)) m.push_back(w);
  return m;
}

}  // namespace

TEST_CASE("make_grid builds the tp, dp, ep and edp groups of every layout", "[mpi]") {
  CountingDevice dev;
  const int world = world_size();
  int me = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  int layouts = 0;
  for (int tp = 1; tp <= world; ++tp) {
    if (world % tp != 0) continue;
    const int dp = world / tp;
    for (int ep = 1; ep <= dp; ++ep) {
      if (dp % ep != 0) continue;
      INFO("world " << world << ", tp " << tp << ", ep " << ep << ", rank " << me);
      ++layouts;
      auto g = make_grid(tp, ep, dev);
      auto tp_of = [&](int w) { return w % tp; };
      auto dp_of = [&](int w) { return w / tp; };
      auto ep_of = [&](int w) { return dp_of(w) % ep; };
      auto block_of = [&](int w) { return dp_of(w) / ep; };  // which ep group along dp

      CHECK(g->world_rank == me);
      CHECK(g->world_size == world);
      CHECK(g->tp_rank == tp_of(me));
      CHECK(g->tp_size == tp);
      CHECK(g->dp_rank == dp_of(me));
      CHECK(g->dp_size == dp);
      CHECK(g->ep_rank == ep_of(me));
      CHECK(g->ep_size == ep);
      CHECK(g->edp_rank == block_of(me));
      CHECK(g->edp_size == dp / ep);
      CHECK(g->is_root() == (me == 0));
      CHECK(g->describe() == str("world ", world, " = tp ", tp, " x dp ", dp, " (ep ", ep, ")"));

      struct Group {
        const char* name;
        Comm& comm;
        int rank, size;
        std::function<bool(int)> same;
      };
      const Group groups[] = {
          {"world", g->world(), g->world_rank, world, [](int) { return true; }},
          {"tp", g->tp(), g->tp_rank, tp, [&](int w) { return dp_of(w) == dp_of(me); }},
          {"dp", g->dp(), g->dp_rank, dp, [&](int w) { return tp_of(w) == tp_of(me); }},
          {"ep", g->ep(), g->ep_rank, ep,
           [&](int w) { return tp_of(w) == tp_of(me) && block_of(w) == block_of(me); }},
          {"edp", g->edp(), g->edp_rank, dp / ep,
           [&](int w) { return tp_of(w) == tp_of(me) && ep_of(w) == ep_of(me); }},
      };
      for (const auto& grp : groups) {
        INFO(grp.name << " group: " << grp.comm.describe());
        CHECK(grp.comm.rank() == grp.rank);
        CHECK(grp.comm.size() == grp.size);
        CHECK(gathered_members(grp.comm, me) == expected_members(world, grp.same));
        // A group of one rank is a SelfComm; larger groups go through MPI.
        CHECK(grp.comm.describe().rfind(grp.size == 1 ? "self" : "mpi ", 0) == 0);
      }
    }
  }
  CHECK(layouts >= 1);
}

TEST_CASE("make_grid rejects layouts that do not fit the world size", "[mpi]") {
  CountingDevice dev;
  const int world = world_size();
  CHECK_THROWS_AS(make_grid(world + 1, 1, dev), InputError);
  CHECK_THROWS_WITH(make_grid(world + 1, 1, dev),
                    Catch::Contains("parallel.tp") && Catch::Contains(str("world size ", world)));
  CHECK_THROWS_WITH(make_grid(1, world + 1, dev),
                    Catch::Contains("parallel.ep") && Catch::Contains(str("dp = ", world)));
  CHECK_THROWS_WITH(make_grid(0, 1, dev), Catch::Contains("parallel.tp"));
  CHECK_THROWS_WITH(make_grid(1, 0, dev), Catch::Contains("parallel.ep"));
  if (world % 2 == 0 && world > 2)
    CHECK_THROWS_WITH(make_grid(2, world, dev),
                      Catch::Contains("parallel.ep") && Catch::Contains(str("dp = ", world / 2)));
}
