// Why: the run header tells users where their tp and ep groups lie on the nodes (placement_note), and
// the watchdog names lost hosts by their ranks (rank_list); both come from the host of each world rank
// and the grid's formulas (world rank = dp_rank * tp + tp_rank, ep groups of consecutive dp ranks), which
// these cases check against placements worked out by hand: Slurm's block distribution and mpirun's
// round robin.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "comm/grid.h"

using namespace mt;

namespace {

// `nodes` hosts named node1.., each with `per_node` consecutive ranks (Slurm's default block layout).
std::vector<std::string> block(int nodes, int per_node) {
  std::vector<std::string> h;
  for (int n = 1; n <= nodes; ++n)
    for (int r = 0; r < per_node; ++r) h.push_back("node" + std::to_string(n));
  return h;
}

// `world` ranks dealt round robin over `nodes` hosts (mpirun --map-by node).
std::vector<std::string> round_robin(int nodes, int world) {
  std::vector<std::string> h;
  for (int r = 0; r < world; ++r) h.push_back("node" + std::to_string(r % nodes + 1));
  return h;
}

}  // namespace

TEST_CASE("rank_list writes one rank, a run and scattered ranks", "[grid]") {
  CHECK(rank_list({3}) == "rank 3");
  CHECK(rank_list({0, 1, 2, 3}) == "ranks 0-3");
  CHECK(rank_list({0, 2, 4}) == "ranks 0,2,4");
}

TEST_CASE("ranks_by_host keeps the hosts in order of their first rank", "[grid]") {
  const auto n = ranks_by_host({"b", "a", "b", "a"});
  REQUIRE(n.size() == 2);
  CHECK(n[0].host == "b");
  CHECK(n[0].ranks == std::vector<int>{0, 2});
  CHECK(n[1].host == "a");
  CHECK(n[1].ranks == std::vector<int>{1, 3});
}

TEST_CASE("placement_note says where the tp and ep groups lie on the nodes", "[grid]") {
  // One host: nothing to say.
  CHECK(placement_note(block(1, 4), 2, 2).empty());
  // Slurm's block layout, 2 ranks per node, dp 4 x ep 2: the ep groups {0,1} and {2,3} fit in a node.
  CHECK(placement_note(block(2, 2), 1, 2) == "on 2 nodes (node1: ranks 0-1, node2: ranks 2-3); ep groups inside a node");
  // mpirun's round robin: ranks 0 and 1, one ep group, are on two nodes.
  CHECK(placement_note(round_robin(2, 4), 1, 2) ==
        "on 2 nodes (node1: ranks 0,2, node2: ranks 1,3); ep groups span nodes (ranks 0-1 on node1, node2): their "
        "all-to-all crosses the network");
  // tp 2 x dp 4 (ep 2) on 2 nodes of 4: a tp group is 2 consecutive ranks, an ep group 4 (tp x ep).
  CHECK(placement_note(block(2, 4), 2, 2) ==
        "on 2 nodes (node1: ranks 0-3, node2: ranks 4-7); tp and ep groups inside a node");
  // The same grid on 4 nodes of 2: the tp groups fit, the ep groups (ranks 0,2 and 1,3, ...) do not.
  CHECK(placement_note(block(4, 2), 2, 2) ==
        "on 4 nodes (node1: ranks 0-1, node2: ranks 2-3, node3: ranks 4-5, node4: ranks 6-7); tp groups inside a "
        "node; ep groups span nodes (ranks 0,2 on node1, node2): their all-to-all crosses the network");
  // tp 2 over 2 nodes of 1 rank: the tp all-reduces cross the network.
  CHECK(placement_note(block(2, 1), 2, 1) ==
        "on 2 nodes (node1: rank 0, node2: rank 1); tp groups span nodes (ranks 0-1 on node1, node2): every "
        "layer's all-reduce crosses the network");
  // Pure dp says only where the ranks are; many nodes are summed up.
  CHECK(placement_note(block(8, 2), 1, 1) == "on 8 nodes (node1: ranks 0-1, node2: ranks 2-3, ... 6 more)");
}
