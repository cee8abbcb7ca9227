// Why: builds the tp x ep x dp process grid of DESIGN.md "Parallelism" from MPI_COMM_WORLD, and keeps
// single-process runs free of MPI: without a launcher's environment MPI is never initialised and every
// group is a SelfComm.
#include "comm/grid.h"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "comm/mpi_comm.h"
#include "engine/core/check.h"

namespace mt {

std::string rank_list(const std::vector<int>& ranks) {
  bool consecutive = true;
  for (size_t i = 1; i < ranks.size(); ++i) consecutive = consecutive && ranks[i] == ranks[i - 1] + 1;
  if (ranks.size() == 1) return str("rank ", ranks[0]);
  if (consecutive && ranks.size() > 1) return str("ranks ", ranks.front(), "-", ranks.back());
  std::string s = "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? "," : "") + std::to_string(ranks[i]);
  return s;
}

std::vector<HostRanks> ranks_by_host(const std::vector<std::string>& hosts) {
  std::vector<HostRanks> n;
  for (int w = 0; w < int(hosts.size()); ++w) {
    const auto it = std::find_if(n.begin(), n.end(), [&](const HostRanks& h) { return h.host == hosts[w]; });
    if (it == n.end())
      n.push_back({hosts[w], {w}});
    else
      it->ranks.push_back(w);
  }
  return n;
}

namespace {

// This host's name (gethostname, cut at the first dot).
std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "?";
  std::string s(name);
  return s.substr(0, s.find('.'));
}

// Every rank's `mine`, gathered over `world` as fixed-size fields (longer texts are cut).
std::vector<std::string> gather_text(Comm& world, const std::string& mine) {
  constexpr size_t kLen = 256;
  std::vector<char> send(kLen, '\0'), recv(kLen * size_t(world.size()));
  std::memcpy(send.data(), mine.data(), std::min(mine.size(), kLen - 1));
  world.allgather(send.data(), recv.data(), kLen, DType::U8, MemSpace::Host);
  std::vector<std::string> all;
  for (int r = 0; r < world.size(); ++r) all.emplace_back(recv.data() + size_t(r) * kLen);
  return all;
}

}  // namespace

std::string placement_note(const std::vector<std::string>& hosts, int tp, int ep) {
  const std::vector<HostRanks> n = ranks_by_host(hosts);
  if (n.size() < 2) return "";
  const int world = int(hosts.size());
  std::string s = str("on ", n.size(), " nodes (");
  const size_t shown = n.size() <= 4 ? n.size() : 2;
  for (size_t i = 0; i < shown; ++i) s += str(i ? ", " : "", n[i].host, ": ", rank_list(n[i].ranks));
  if (shown < n.size()) s += str(", ... ", n.size() - shown, " more");
  s += ")";
  // The members of each tp group (tp consecutive ranks) and each ep group (ranks w = dp * tp + t with
  // the same t and dp in one block of ep): the first group found on several hosts, if any.
  auto first_spanning = [&](int size, auto members_of) -> std::vector<int> {
    if (size == 1) return {};
    for (int w = 0; w < world; ++w) {
      const std::vector<int> m = members_of(w);
      for (int r : m)
        if (hosts[r] != hosts[m[0]]) return m;
    }
    return {};
  };
  const auto tp_span = first_spanning(tp, [&](int w) {
    std::vector<int> m;
    for (int t = 0; t < tp; ++t) m.push_back(w / tp * tp + t);
    return m;
  });
  const auto ep_span = first_spanning(ep, [&](int w) {
    std::vector<int> m;
    const int dp = w / tp, block = dp / ep * ep;
    for (int e = 0; e < ep; ++e) m.push_back((block + e) * tp + w % tp);
    return m;
  });
  auto where = [&](const std::vector<int>& m) {
    std::vector<std::string> hs;
    for (int r : m)
      if (std::find(hs.begin(), hs.end(), hosts[r]) == hs.end()) hs.push_back(hosts[r]);
    std::string h;
    for (const auto& x : hs) h += (h.empty() ? "" : ", ") + x;
    return str(rank_list(m), " on ", h);
  };
  std::vector<std::string> inside;
  if (tp > 1 && tp_span.empty()) inside.push_back("tp");
  if (ep > 1 && ep_span.empty()) inside.push_back("ep");
  if (inside.size() == 2) s += "; tp and ep groups inside a node";
  if (inside.size() == 1) s += str("; ", inside[0], " groups inside a node");
  if (!tp_span.empty())
    s += str("; tp groups span nodes (", where(tp_span), "): every layer's all-reduce crosses the network");
  if (!ep_span.empty())
    s += str("; ep groups span nodes (", where(ep_span), "): their all-to-all crosses the network");
  return s;
}

std::string ProcessGrid::describe() const {
  const std::string where = placement_note(hosts, tp_size, ep_size);
  return str("world ", world_size, " = tp ", tp_size, " x dp ", dp_size, " (ep ", ep_size, ")",
             where.empty() ? "" : " ", where);
}

std::string ProcessGrid::per_host(const std::string& mine) const {
  if (world_size == 1) return mine;
  const std::vector<std::string> all = gather_text(world(), mine);
  const std::vector<HostRanks> n = ranks_by_host(hosts);
  if (n.size() < 2) return mine;
  // Each host's text (its ranks' distinct texts joined by " / "), then hosts with the same text together
  // (the first three named, the others counted).
  std::vector<std::string> groups_text;
  std::vector<std::vector<std::string>> groups_hosts;
  for (const HostRanks& h : n) {
    std::vector<std::string> seen;
    for (int r : h.ranks)
      if (std::find(seen.begin(), seen.end(), all[r]) == seen.end()) seen.push_back(all[r]);
    std::string text;
    for (const auto& t : seen) text += (text.empty() ? "" : " / ") + t;
    const size_t g = std::find(groups_text.begin(), groups_text.end(), text) - groups_text.begin();
    if (g == groups_text.size()) {
      groups_text.push_back(text);
      groups_hosts.emplace_back();
    }
    groups_hosts[g].push_back(h.host);
  }
  std::string s;
  for (size_t g = 0; g < groups_text.size(); ++g) {
    const auto& hs = groups_hosts[g];
    s += g ? "; " : "";
    for (size_t i = 0; i < std::min<size_t>(hs.size(), 3); ++i) s += str(i ? ", " : "", hs[i]);
    if (hs.size() > 3) s += str(" and ", hs.size() - 3, " more");
    s += ": " + groups_text[g];
  }
  return s;
}

bool launched_by_mpi() {
  // Open MPI's mpirun, PMI (MPICH hydra, Intel MPI, srun --mpi=pmi2), PMIx (srun --mpi=pmix, prterun).
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(var)) return true;
  // A Slurm job step of several tasks (set by srun, not in the batch script itself).
  const char* tasks = std::getenv("SLURM_STEP_NUM_TASKS");
  return tasks && std::atoi(tasks) > 1;
}

int init_distributed() {
  if (!launched_by_mpi()) return 1;
  // srun without an MPI plugin starts N copies that each think they are alone (or, with Open MPI, abort
  // with a page of text): none of the PMI / PMIx / mpirun variables is set.
  const bool pmi = std::getenv("PMIX_RANK") || std::getenv("PMI_RANK") || std::getenv("OMPI_COMM_WORLD_RANK");
  MT_INPUT(pmi, "srun started ", std::getenv("SLURM_STEP_NUM_TASKS"),
           " tasks without PMI (no PMIX_RANK / PMI_RANK in the environment), so they cannot form one MPI job: "
           "run them with `srun --mpi=pmix` (Debian's and most Open MPI builds; see `srun --mpi=list`), or set "
           "MpiDefault=pmix in slurm.conf");
  int initialized = 0, finalized = 0;
  MT_MPI_CHECK(MPI_Initialized(&initialized));
  MT_MPI_CHECK(MPI_Finalized(&finalized));
  MT_CHECK(!finalized, "init_distributed after MPI_Finalize");
  if (!initialized) {
    // FUNNELED: OpenMP threads compute, only the main thread calls MPI.
    int provided = 0;
    MT_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    MT_CHECK(provided >= MPI_THREAD_FUNNELED, "the MPI library gives thread level ", provided,
             "; moetrain needs MPI_THREAD_FUNNELED");
  }
  int size = 1;
  MT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  return size;
}

namespace {

// The group of this rank among the ranks of `parent` with the same color, ordered by key. Groups of
// one rank need no MPI (and every rank agrees on the size, so either all ranks split or none does).
std::unique_ptr<Comm> group(MPI_Comm parent, int size, int color, int key, const char* label,
                            Device& device) {
  if (size == 1) return make_self_comm(device);
  MPI_Comm comm = MPI_COMM_NULL;
  MT_MPI_CHECK(MPI_Comm_split(parent, color, key, &comm));
  auto c = make_mpi_comm(comm, device, label);
  MT_CHECK(c->rank() == key && c->size() == size, c->describe(), ": expected rank ", key, " of ", size);
  return c;
}

}  // namespace

std::unique_ptr<ProcessGrid> make_grid(int tp, int ep, Device& device) {
  MT_INPUT(tp >= 1, "parallel.tp = ", tp, " must be at least 1");
  MT_INPUT(ep >= 1, "parallel.ep = ", ep, " must be at least 1");
  const int world = init_distributed();
  MT_INPUT(world % tp == 0, "parallel.tp = ", tp, " does not divide the world size ", world,
           " (world = tp x dp)");
  const int dp = world / tp;
  MT_INPUT(dp % ep == 0, "parallel.ep = ", ep, " does not divide dp = ", dp, " (world size ", world,
           " / parallel.tp ", tp, ")");

  auto g = std::make_unique<ProcessGrid>();
  g->world_size = world;
  g->tp_size = tp;
  g->dp_size = dp;
  g->ep_size = ep;
  g->edp_size = dp / ep;
  if (world == 1) {
    for (auto* c : {&g->world_, &g->tp_, &g->dp_, &g->ep_, &g->edp_}) *c = make_self_comm(device);
    g->hosts = {this_host()};
    return g;
  }

  int w = 0;
  MT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w));
  g->world_rank = w;
  g->tp_rank = w % tp;
  g->dp_rank = w / tp;
  g->ep_rank = g->dp_rank % ep;
  g->edp_rank = g->dp_rank / ep;

  // The job's own duplicate of the world, returning errors; the groups are split from it.
  MPI_Comm world_comm = MPI_COMM_NULL;
  MT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world_comm));
  g->world_ = make_mpi_comm(world_comm, device, "world");
  g->hosts = gather_text(*g->world_, this_host());
  g->local_rank = int(std::count(g->hosts.begin(), g->hosts.begin() + w, g->hosts[w]));
  g->local_size = int(std::count(g->hosts.begin(), g->hosts.end(), g->hosts[w]));
  g->tp_ = group(world_comm, tp, g->dp_rank, g->tp_rank, "tp group", device);
  g->dp_ = group(world_comm, dp, g->tp_rank, g->dp_rank, "dp group", device);
  g->ep_ = group(world_comm, ep, (g->dp_rank / ep) * tp + g->tp_rank, g->ep_rank, "ep group", device);
  g->edp_ = group(world_comm, dp / ep, g->ep_rank * tp + g->tp_rank, g->edp_rank, "edp group", device);
  return g;
}

}  // namespace mt
