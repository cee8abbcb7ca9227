// Why: a sweep must run exactly the runs its manifest describes, wherever it is started from, survive
// being started again (finished runs skipped, stopped ones resumed), keep going past a failed run, and
// report the paper's table with an Efficiency Leverage that comes from a correct fit; the micro
// manifests must compare models of equal N at equal compute.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <deque>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "engine/core/check.h"
#include "engine/run/config.h"
#include "engine/run/plan.h"
#include "sweep/results.h"
#include "sweep/slurm.h"
#include "sweep/sweep.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using mt::json;

namespace {

const char* kDense = R"({
  "name": "dense",
  "model": {"vocab_size": 256, "d_model": 64, "n_layers": 2, "n_heads": 4, "d_ffn": 192, "seq_len": 32},
  "train": {"tokens": 65536, "batch_size": 8, "lr": 1e-3},
  "data": {"train": "../data/tiny", "val": "../data/tiny"}
})";

// A sweep of a dense run and an MoE run that takes its compute from dense.json, in `dir`/cfg.
std::string write_sweep(const std::string& dir) {
  mt::test::write_file(dir + "/cfg/dense.json", kDense);
  json base = json::parse(kDense);
  base["train"].erase("tokens");
  json moe = {{"layout", "1dense"}, {"n_experts", 8}, {"top_k", 2}, {"d_expert", 48}, {"d_shared", 48}};
  json sweep = {{"name", "tiny"},
                {"reference", "dense"},
                {"base", base},
                {"runs", json::array({{{"name", "dense"}, {"train.tokens", 65536}},
                                      {{"name", "moe"}, {"model.moe", moe}, {"train.match_compute", "dense.json"}}})}};
  mt::test::write_file(dir + "/cfg/sweep.json", sweep.dump(2));
  return dir + "/cfg/sweep.json";
}

std::string abs_normal(const std::string& p) { return fs::absolute(p).lexically_normal().string(); }

// Runs tasks in memory: each start is recorded, runs end first-in first-out with the exit code given
// for their name (0 by default; a finished run gets a summary.json, as `moetrain train` writes one).
class FakeLauncher : public mt::Launcher {
 public:
  std::map<std::string, int> exit_codes;
  std::vector<std::string> started;
  std::set<int> interrupted;
  int busy_polls = 0;  // wait_any answers "nothing yet" this many times first
  size_t max_running = 0;

  int start(const mt::RunTask& t) override {
    started.push_back(t.name);
    int h = next_++;
    running_.push_back({h, t});
    max_running = std::max(max_running, running_.size());
    return h;
  }
  std::optional<std::pair<int, int>> wait_any(double) override {
    for (auto it = running_.begin(); it != running_.end(); ++it)
      if (interrupted.count(it->first)) {
        int h = it->first;
        running_.erase(it);
        return std::make_pair(h, 3);
      }
    if (busy_polls > 0) {
      --busy_polls;
      return std::nullopt;
    }
    REQUIRE(!running_.empty());
    auto [h, t] = running_.front();
    running_.pop_front();
    int code = exit_codes.count(t.name) ? exit_codes[t.name] : 0;
    if (code == 0) mt::test::write_file(t.out_dir + "/summary.json", R"({"status": "finished", "val_bpc": 2.5})");
    if (code != 0) mt::test::write_file(t.log, "step 1\nmoetrain: error: boom in " + t.name + "\n\n");
    return std::make_pair(h, code);
  }
  void interrupt(int handle) override { interrupted.insert(handle); }

 private:
  int next_ = 100;
  std::deque<std::pair<int, mt::RunTask>> running_;
};

std::vector<mt::RunTask> make_tasks(const std::string& dir, const std::vector<std::string>& names) {
  std::vector<mt::RunTask> tasks;
  for (auto& n : names) tasks.push_back({n, dir + "/" + n + "/manifest.json", dir + "/" + n, dir + "/" + n + "/train.log"});
  return tasks;
}

double rel(double a, double b) { return std::fabs(a - b) / std::fabs(b); }

}  // namespace

TEST_CASE("sweep run manifests get absolute data and match_compute paths", "[sweep]") {
  json m = json::parse(kDense);
  m["train"]["match_compute"] = "other.json";
  m["data"]["val"] = "/abs/val";
  json out = mt::absolutize_run_paths(m, "some/dir");
  CHECK(out["data"]["train"] == abs_normal("some/data/tiny"));
  CHECK(out["data"]["val"] == "/abs/val");
  CHECK(out["train"]["match_compute"] == abs_normal("some/dir/other.json"));
  CHECK(out["model"] == m["model"]);
  json no_data = json::parse(kDense);
  no_data.erase("data");
  CHECK(mt::absolutize_run_paths(no_data, ".") == no_data);
}

TEST_CASE("prepare_sweep writes each run's manifest and sweep.json, and match_compute takes the reference's C",
          "[sweep]") {
  std::string dir = mt::test::scratch_dir("sweep_prepare");
  std::string path = write_sweep(dir);
  mt::Manifest m = mt::load_manifest(path, {});
  REQUIRE(m.is_sweep);
  mt::SweepState st = mt::prepare_sweep(m.sweep, path, dir + "/out");
  REQUIRE(st.runs.size() == 2);
  CHECK(st.reference == "dense");
  CHECK(st.source == abs_normal(path));
  json moe = mt::read_json_file(dir + "/out/moe/manifest.json");
  CHECK(moe["train"]["match_compute"] == abs_normal(dir + "/cfg/dense.json"));
  CHECK(moe["data"]["train"] == abs_normal(dir + "/data/tiny"));
  CHECK(moe["name"] == "moe");
  // Read back, as --collect does: plans are there, and the MoE's compute is the dense run's.
  mt::SweepState back = mt::read_sweep_state(dir + "/out");
  REQUIRE(back.runs.size() == 2);
  CHECK(back.runs[1].name == "moe");
  CHECK(back.runs[1].reuse == "none");
  double c_dense = back.runs[0].plan["compute"].get<double>();
  double c_moe = back.runs[1].plan["compute"].get<double>();
  CHECK(rel(c_moe, c_dense) < 0.02);
  CHECK(back.runs[1].plan["activation_rate"].get<double>() < 1.0);
  // The planned MoE run consumes more tokens than the dense run for the same compute.
  CHECK(back.runs[1].plan["tokens"].get<double>() > back.runs[0].plan["tokens"].get<double>());

  // Preparing again with the same manifests is fine, even once a run has finished...
  mt::test::write_file(dir + "/out/dense/summary.json", "{}");
  CHECK_NOTHROW(mt::prepare_sweep(m.sweep, path, dir + "/out"));
  // ...but a started run whose manifest changed is refused before anything is written.
  mt::Manifest changed = mt::load_manifest(path, {"train.lr=3e-3"});
  CHECK_THROWS_WITH(mt::prepare_sweep(changed.sweep, path, dir + "/out"),
                    Catch::Contains("dense") && Catch::Contains("different manifest"));
  CHECK(mt::read_json_file(dir + "/out/moe/manifest.json")["train"]["lr"] == 1e-3);
  // A run folder may not shadow the sweep's own files.
  mt::Sweep bad = m.sweep;
  bad.runs[0].name = "results.csv";
  CHECK_THROWS_WITH(mt::prepare_sweep(bad, path, dir + "/out2"), Catch::Contains("results.csv"));
}

TEST_CASE("run_status reads a run folder", "[sweep]") {
  std::string dir = mt::test::scratch_dir("sweep_status");
  CHECK(mt::run_status(dir) == mt::RunStatus::Pending);
  fs::create_directories(dir + "/checkpoints/step_00000005.tmp");
  CHECK(mt::run_status(dir) == mt::RunStatus::Pending);  // no state.json: not a complete checkpoint
  mt::test::write_file(dir + "/checkpoints/step_00000005/state.json", "{}");
  CHECK(mt::run_status(dir) == mt::RunStatus::Incomplete);
  mt::test::write_file(dir + "/train.log", "step 5\nmoetrain: error: loss is nan at step 6\n");
  CHECK(mt::run_status(dir) == mt::RunStatus::Failed);
  mt::test::write_file(dir + "/train.log", "step 5\nmoetrain: error: loss is nan\n==== restarted\n");
  CHECK(mt::run_status(dir) == mt::RunStatus::Incomplete);  // running again
  mt::test::write_file(dir + "/summary.json", "{}");
  CHECK(mt::run_status(dir) == mt::RunStatus::Finished);
}

TEST_CASE("the scheduler runs N at a time, skips finished runs and goes on after a failure", "[sweep]") {
  std::string dir = mt::test::scratch_dir("sweep_sched");
  auto tasks = make_tasks(dir, {"a", "b", "c", "d", "e", "f"});
  mt::test::write_file(dir + "/b/summary.json", "{}");
  mt::test::write_file(dir + "/d/checkpoints/step_00000007/state.json", "{}");
  FakeLauncher fake;
  fake.exit_codes = {{"c", 1}};
  fake.busy_polls = 3;
  std::ostringstream log;
  mt::SweepOutcome o = mt::run_sweep_tasks(tasks, 2, fake, log, [] { return false; });
  CHECK(fake.started == std::vector<std::string>{"a", "c", "d", "e", "f"});
  CHECK(fake.max_running == 2);
  CHECK(o.skipped == std::vector<std::string>{"b"});
  CHECK(o.finished == std::vector<std::string>{"a", "d", "e", "f"});
  CHECK(o.failed == std::vector<std::string>{"c (exit 1)"});
  CHECK(o.interrupted.empty());
  CHECK_FALSE(o.stopped);
  std::string text = log.str();
  CHECK_THAT(text, Catch::Contains("[2/6] skip b: finished"));
  CHECK_THAT(text, Catch::Contains("[4/6] start d (resuming from step_00000007)"));
  CHECK_THAT(text, Catch::Contains("[3/6] FAILED c (exit 1)") && Catch::Contains("moetrain: error: boom in c"));
  CHECK_THAT(text, Catch::Contains("[6/6] done f in") && Catch::Contains("val bpc 2.5"));

  // Started again: every finished run is skipped and only the failed one runs.
  FakeLauncher again;
  std::ostringstream log2;
  mt::SweepOutcome o2 = mt::run_sweep_tasks(tasks, 3, again, log2, [] { return false; });
  CHECK(again.started == std::vector<std::string>{"c"});
  CHECK(o2.skipped.size() == 5);
  CHECK(o2.finished == std::vector<std::string>{"c"});
  CHECK(o2.failed.empty());
}

TEST_CASE("the scheduler reports a run that exits 0 without a summary as failed", "[sweep]") {
  std::string dir = mt::test::scratch_dir("sweep_nosummary");
  auto tasks = make_tasks(dir, {"x"});
  struct Silent : mt::Launcher {
    int start(const mt::RunTask&) override { return 7; }
    std::optional<std::pair<int, int>> wait_any(double) override { return std::make_pair(7, 0); }
    void interrupt(int) override {}
  } silent;
  std::ostringstream log;
  mt::SweepOutcome o = mt::run_sweep_tasks(tasks, 1, silent, log, [] { return false; });
  CHECK(o.failed == std::vector<std::string>{"x (exit 0 without summary.json)"});
  CHECK(o.finished.empty());
}

TEST_CASE("a run killed by a signal is failed, also for run_status (its log gets the error line)", "[sweep]") {
  std::string dir = mt::test::scratch_dir("sweep_killed");
  auto tasks = make_tasks(dir, {"k"});
  mt::test::write_file(tasks[0].log, "step 10/100 | loss 2.0\n");
  REQUIRE(mt::run_status(tasks[0].out_dir) == mt::RunStatus::Pending);
  struct Killed : mt::Launcher {
    int start(const mt::RunTask&) override { return 9; }
    std::optional<std::pair<int, int>> wait_any(double) override { return std::make_pair(9, 128 + 9); }
    void interrupt(int) override {}
  } killed;
  std::ostringstream log;
  mt::SweepOutcome o = mt::run_sweep_tasks(tasks, 1, killed, log, [] { return false; });
  CHECK(o.failed == std::vector<std::string>{"k (exit 137)"});
  CHECK_THAT(log.str(), Catch::Contains("FAILED k (exit 137)") && Catch::Contains("signal 9"));
  CHECK(mt::run_status(tasks[0].out_dir) == mt::RunStatus::Failed);
}

TEST_CASE("a stop request interrupts the running runs and starts no new one", "[sweep]") {
  std::string dir = mt::test::scratch_dir("sweep_stop");
  auto tasks = make_tasks(dir, {"a", "b", "c", "d"});
  FakeLauncher fake;
  fake.busy_polls = 1000;
  int checks = 0;
  std::ostringstream log;
  // The stop arrives after the first two runs have started.
  mt::SweepOutcome o = mt::run_sweep_tasks(tasks, 2, fake, log, [&] { return ++checks > 2; });
  CHECK(fake.started == std::vector<std::string>{"a", "b"});
  CHECK(fake.interrupted.size() == 2);
  CHECK(o.stopped);
  CHECK(o.interrupted == std::vector<std::string>{"a", "b", "c", "d"});
  CHECK(o.finished.empty());
  CHECK_THAT(log.str(), Catch::Contains("stopped a after") && Catch::Contains("stop requested"));
  CHECK_THROWS_AS(mt::run_sweep_tasks(tasks, 0, fake, log, [] { return false; }), mt::InputError);
}

TEST_CASE("the power-law fit recovers known constants from noiseless points", "[sweep][el]") {
  struct Law {
    double a, b, c;
  };
  for (Law truth : {Law{14450, -0.3, 1.3}, Law{3.2, -0.08, 0.4}, Law{900, -0.2, 0.0}}) {
    INFO("a " << truth.a << " b " << truth.b << " c " << truth.c);
    for (int n : {3, 6}) {
      std::vector<double> cs, ls;
      for (int i = 0; i < n; ++i) {
        double c = 1e13 * std::pow(100.0, double(i) / (n - 1));  // two decades
        cs.push_back(c);
        ls.push_back(truth.a * std::pow(c, truth.b) + truth.c);
      }
      mt::PowerLawFit f = mt::fit_power_law(cs, ls);
      REQUIRE(f.ok);
      CHECK(f.budgets == n);
      CHECK(rel(f.law.a, truth.a) < 1e-5);
      CHECK(rel(f.law.b, truth.b) < 1e-6);
      CHECK(std::fabs(f.law.c - truth.c) < 1e-6);
      CHECK(f.rms < 1e-8);
      // EL of a point on the law at 3x the compute is 3.
      CHECK(rel(mt::efficiency_leverage(f.law, f.law.loss(3 * 2e13), 2e13), 3.0) < 1e-6);
    }
  }
}

TEST_CASE("the power-law fit recovers known constants from slightly noisy points", "[sweep][el]") {
  const double a = 14450, b = -0.3, c = 1.3;
  std::vector<double> cs, ls;
  const double noise[] = {+1, -1, -1, +1, +1, -1, +1, -1};
  for (int i = 0; i < 8; ++i) {
    double C = 1e13 * std::pow(10.0, 3.0 * i / 7);  // three decades
    cs.push_back(C);
    ls.push_back((a * std::pow(C, b) + c) * (1 + 0.001 * noise[i]));  // +-0.1%
  }
  mt::PowerLawFit f = mt::fit_power_law(cs, ls);
  REQUIRE(f.ok);
  CHECK(std::fabs(f.law.b - b) < 0.03);
  CHECK(std::fabs(f.law.c - c) < 0.06);
  CHECK(f.rms < 0.003);
  CHECK(f.rms > 0);
  // The leverage of a run that reaches the law's loss at 2x its compute, read off the noisy fit.
  const double moe_c = 1e14;
  CHECK(rel(mt::efficiency_leverage(f.law, a * std::pow(2 * moe_c, b) + c, moe_c), 2.0) < 0.05);
}

TEST_CASE("EL needs dense runs at 3 budgets and a loss above the fitted floor", "[sweep][el]") {
  mt::PowerLawFit two = mt::fit_power_law({1e13, 1e13, 2e13, 2.01e13}, {3, 3.01, 2.8, 2.79});
  CHECK_FALSE(two.ok);
  CHECK_THAT(two.why, Catch::Contains("3 or more compute budgets (has 2)"));
  mt::PowerLawFit rising = mt::fit_power_law({1e13, 2e13, 4e13}, {2.5, 2.6, 2.7});
  CHECK_FALSE(rising.ok);
  CHECK_THAT(rising.why, Catch::Contains("does not fall"));
  mt::PowerLawFit bad = mt::fit_power_law({1e13, 2e13, -4e13}, {2.5, 2.4, 2.3});
  CHECK_FALSE(bad.ok);
  mt::PowerLaw law{100, -0.1, 1.5};
  CHECK(std::isnan(mt::efficiency_leverage(law, 1.5, 1e13)));
  CHECK(std::isnan(mt::efficiency_leverage(law, 1.2, 1e13)));
  CHECK(rel(mt::efficiency_leverage(law, law.loss(4e13), 1e13), 4.0) < 1e-9);
}

TEST_CASE("collect builds the paper's table from a sweep folder", "[sweep]") {
  const std::string dir = mt::test::source_path("tests/fixtures/sweep");
  mt::SweepResults r = mt::collect_sweep(dir);
  CHECK(r.name == "micro_cpu");
  CHECK(r.reference == "dense_1c");
  REQUIRE(r.rows.size() == 11);
  std::map<std::string, mt::ResultRow> by;
  for (auto& row : r.rows) by[row.name] = row;
  // The fixture's dense runs lie on 14450 C^-0.3 + 1.3 and its MoE runs at known EL (README.md there).
  REQUIRE(r.el_fit.ok);
  CHECK(r.el_fit.budgets == 3);
  CHECK(rel(r.el_fit.law.a, 14450) < 1e-3);
  CHECK(std::fabs(r.el_fit.law.b + 0.3) < 1e-4);
  CHECK(std::fabs(r.el_fit.law.c - 1.3) < 1e-4);
  const std::map<std::string, double> el = {{"moe_ra10", 1.10},        {"moe_ra19", 1.60},
                                            {"moe_ra33", 1.45},        {"moe_ra54", 1.15},
                                            {"moe_ra19_strict", 1.35}, {"moe_ra54_strict", 1.10},
                                            {"moe_ra19_loose", 1.55}};
  for (auto& [name, want] : el) {
    INFO(name);
    CHECK(std::fabs(by[name].el - want) < 1e-4);
  }
  const mt::ResultRow& ref = by["dense_1c"];
  CHECK(ref.val_bpc == Approx(2.551157));
  CHECK(ref.delta_bpc == 0);
  CHECK(std::isnan(ref.el));  // dense rows carry no EL
  const mt::ResultRow& m19 = by["moe_ra19_strict"];
  CHECK(m19.status == "finished");
  CHECK(m19.reuse == "strict");
  CHECK_FALSE(m19.dense);
  CHECK(m19.n_params == 1570240);
  CHECK(m19.activation_rate == Approx(0.190055).epsilon(1e-4));
  CHECK(m19.m_rel == Approx(m19.flops_per_token / ref.flops_per_token));
  CHECK(m19.m_rel == Approx(0.2055).epsilon(1e-3));
  CHECK(m19.epochs == Approx(4.87).epsilon(1e-3));
  CHECK(m19.unique_tokens == 3276800);
  CHECK(m19.delta_bpc == Approx(m19.val_bpc - ref.val_bpc));
  CHECK(m19.wall_seconds > 0);
  // A run that has not finished keeps its planned resources and has no result.
  const mt::ResultRow& pending = by["moe_ra54_loose"];
  CHECK(pending.status == "pending");
  CHECK(pending.epochs == 2);
  CHECK(std::isnan(pending.val_bpc));
  CHECK(std::isnan(pending.delta_bpc));
  CHECK(std::isnan(pending.el));

  std::string csv = mt::results_csv(r);
  std::istringstream lines(csv);
  std::string header, line;
  std::getline(lines, header);
  CHECK(header == "name,status,reuse,N,Na,ra,M,C,D,D_hat,epochs,M_over_M_ref,val_loss,val_bpc,delta_bpc,"
                  "wall_seconds,EL,restarts");
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    if (line.rfind("moe_ra19,", 0) == 0) CHECK_THAT(line, Catch::StartsWith("moe_ra19,finished,none,1570240,"));
    if (line.rfind("moe_ra54_loose,", 0) == 0) CHECK_THAT(line, Catch::EndsWith(",,,,,"));
  }
  CHECK(n == 11);
  CHECK_THROWS_WITH(mt::collect_sweep(mt::test::scratch_dir("sweep_not")), Catch::Contains("no sweep.json"));
}

// The runs of manifests/micro/NAME.json, parsed and planned as `moetrain plan` does.
struct MicroSweep {
  mt::Manifest m;
  std::map<std::string, mt::Plan> plans;
  std::map<std::string, mt::RunConfig> cfgs;
};

MicroSweep plan_micro_sweep(const std::string& name) {
  MicroSweep s;
  s.m = mt::load_manifest(mt::test::source_path("manifests/micro/" + name + ".json"), {});
  REQUIRE(s.m.is_sweep);
  REQUIRE(s.m.sweep.reference == "dense_1c");
  // The run the MoEs match in compute is the sweep's own dense_1c run (order of keys aside).
  const std::string target = mt::test::source_path("manifests/micro/" + name + "_dense_1c.json");
  for (auto& run : s.m.sweep.runs) {
    mt::RunConfig cfg = mt::parse_run(mt::absolutize_run_paths(run.manifest, s.m.sweep.base_dir), run.name,
                                      s.m.sweep.base_dir);
    s.cfgs[run.name] = cfg;
    s.plans[run.name] = mt::make_plan(cfg);
    if (run.name == "dense_1c")
      CHECK(nlohmann::json::parse(run.manifest.dump()) == nlohmann::json::parse(mt::read_json_file(target).dump()));
    if (cfg.model.moe.enabled) CHECK(fs::equivalent(cfg.train.match_compute, target));
  }
  return s;
}

TEST_CASE("the micro sweeps compare near-equal N at equal compute across ra 10% to 60%", "[sweep][manifests]") {
  // N may differ by 8% on CPU (experts come in whole units at such small widths) and 2% on H100.
  for (auto [kind, n_tol] : {std::pair<std::string, double>{"cpu", 0.08}, {"h100", 0.02}}) {
    INFO(kind);
    MicroSweep s = plan_micro_sweep(kind);
    const auto& plans = s.plans;
    auto& cfgs = s.cfgs;
    const mt::Plan& ref = plans.at("dense_1c");
    double ra_min = 1, ra_max = 0;
    std::set<std::string> reuse;
    for (auto& [name, p] : plans) {
      INFO(name);
      CHECK(rel(double(p.n_params), double(ref.n_params)) < n_tol);
      const mt::RunConfig& cfg = cfgs[name];
      if (!cfg.model.moe.enabled) continue;
      CHECK(cfg.model.moe.layout == mt::MoeLayout::OneDense);
      CHECK(cfg.model.moe.d_shared > 0);
      CHECK(cfg.train.budget == mt::Budget::MatchCompute);
      CHECK(rel(p.compute, ref.compute) < 0.01);
      if (cfg.data.reuse == mt::Reuse::Strict) CHECK(rel(p.unique_tokens, ref.tokens) < 0.01);  // D-hat = D of dense_1c, up to a batch
      reuse.insert(mt::to_string(cfg.data.reuse));
      ra_min = std::min(ra_min, p.activation_rate);
      ra_max = std::max(ra_max, p.activation_rate);
      CHECK(p.unique_tokens < 39.7e6);  // gcide's training split
    }
    CHECK(ra_min < 0.11);
    CHECK(ra_max > 0.50);
    CHECK(ra_max < 0.60);
    CHECK(reuse == std::set<std::string>{"none", "strict", "loose"});
    std::vector<double> dense_c;
    for (auto& [name, p] : plans)
      if (!cfgs[name].model.moe.enabled) dense_c.push_back(p.compute);
    CHECK(dense_c.size() >= 3);  // the EL fit's budgets
  }
}

TEST_CASE("cpu_d20: the paper's regime (D/N >= 20) at one N and one C, seven ra, seeds, strict reuse",
          "[sweep][manifests]") {
  MicroSweep s = plan_micro_sweep("cpu_d20");
  const mt::Plan& ref = s.plans.at("dense_1c");
  CHECK(double(ref.tokens) / double(ref.n_params) >= 20);
  CHECK(6.0 * double(ref.n_active) / ref.flops_per_token > 0.85);  // 6 Na is most of M
  std::set<double> dense_c;
  std::map<std::string, std::set<double>> ra_by_reuse;
  std::map<long, std::set<uint64_t>> seeds_by_ra;  // ra in 0.1% -> seeds (MoE, no reuse)
  for (auto& [name, p] : s.plans) {
    INFO(name);
    const mt::RunConfig& cfg = s.cfgs.at(name);
    CHECK(rel(double(p.n_params), double(ref.n_params)) < 0.02);
    if (!cfg.model.moe.enabled) {
      dense_c.insert(std::round(p.compute / ref.compute * 100) / 100);
      if (p.compute == ref.compute) seeds_by_ra[1000].insert(cfg.train.seed);
      continue;
    }
    const mt::MoeConfig& moe = cfg.model.moe;
    CHECK(moe.layout == mt::MoeLayout::OneDense);
    CHECK(moe.d_shared == moe.top_k * moe.d_expert);  // D_se = K D_e
    CHECK(cfg.train.budget == mt::Budget::MatchCompute);
    CHECK(rel(p.compute, ref.compute) < 0.01);
    CHECK(p.unique_tokens < 39.7e6);  // gcide's training split
    ra_by_reuse[mt::to_string(cfg.data.reuse)].insert(p.activation_rate);
    if (cfg.data.reuse == mt::Reuse::Strict) CHECK(rel(p.unique_tokens, ref.tokens) < 0.01);
    if (cfg.data.reuse == mt::Reuse::None) seeds_by_ra[std::lround(p.activation_rate * 1000)].insert(cfg.train.seed);
  }
  CHECK(dense_c == std::set<double>{0.5, 1, 2, 4});
  const std::set<double>& ra = ra_by_reuse["none"];
  REQUIRE(ra.size() >= 7);
  CHECK(*ra.begin() < 0.15);
  CHECK(*ra.rbegin() > 0.55);
  CHECK(ra_by_reuse["strict"].size() >= 3);
  // Two seeds for Dense-1C and for the three ra nearest 20%.
  CHECK(seeds_by_ra[1000].size() >= 2);
  std::vector<std::pair<double, long>> near;
  for (auto& [r, seeds] : seeds_by_ra)
    if (r != 1000) near.push_back({std::fabs(r / 1000.0 - 0.20), r});
  std::sort(near.begin(), near.end());
  REQUIRE(near.size() >= 3);
  for (int i = 0; i < 3; ++i) CHECK(seeds_by_ra[near[i].second].size() >= 2);
}
