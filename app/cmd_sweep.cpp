// Why: `moetrain sweep SWEEP.json --out DIR`: every run of a sweep, each as its own `moetrain train`
// process (N at a time with --jobs), resumable by running the same command again; or, with --slurm,
// a job array and a collect job for a cluster. At the end, and with --collect DIR, the results table
// of the paper's shape (results.csv, results.md) with the Efficiency Leverage of each MoE run.
#include <CLI/CLI.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <thread>

#include "app/command.h"
#include "app/common.h"
#include "app/format.h"
#include "engine/core/check.h"
#include "engine/core/io.h"
#include "engine/core/stop.h"
#include "sweep/results.h"
#include "sweep/slurm.h"
#include "sweep/sweep.h"

namespace fs = std::filesystem;

namespace mt::app {
namespace {

struct SweepArgs {
  RunArgs run;             // run.config is the sweep manifest
  std::string out;
  std::string collect;
  std::string only;        // --only a,b: just these runs
  int jobs = 1;
  bool slurm = false;
  bool dry_run = false;
  SlurmOptions cluster;  // --tasks-per-run, --cpus-per-task, --gpus-per-run, --srun-mpi, --signal-lead
  std::vector<std::string> slurm_opts;
  bool jobs_given = false;
};

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

std::string opt_number(double v, const std::string& text) { return std::isfinite(v) ? text : "-"; }

Table results_table(const SweepResults& r) {
  Table t;
  t.header = {"run", "status", "reuse", "N", "Na", "ra", "M", "C", "D", "D^", "epochs", "M/M_ref",
              "val BPC", "dBPC", "wall", "EL", "restarts"};
  t.left = {true, true, true};
  for (const ResultRow& row : r.rows) {
    char delta[32];
    std::snprintf(delta, sizeof delta, "%+.4f", row.delta_bpc);
    t.rows.push_back({row.name, row.status, row.reuse, fmt_sci(row.n_params), fmt_sci(row.n_active),
                      fmt_pct(row.activation_rate), fmt_sci(row.flops_per_token), fmt_sci(row.compute),
                      fmt_sci(row.tokens), fmt_sci(row.unique_tokens), fmt_fixed(row.epochs, 2),
                      opt_number(row.m_rel, fmt_pct(row.m_rel, 1)), opt_number(row.val_bpc, fmt_fixed(row.val_bpc, 4)),
                      opt_number(row.delta_bpc, delta), opt_number(row.wall_seconds, fmt_duration(row.wall_seconds)),
                      opt_number(row.el, fmt_fixed(row.el, 2)), opt_number(row.restarts, fmt_fixed(row.restarts, 0))});
  }
  return t;
}

std::string fit_line(const SweepResults& r) {
  const PowerLawFit& f = r.el_fit;
  if (!f.ok) return "EL: not available: " + f.why;
  return str("EL: dense fit on ", f.points, " runs at ", f.budgets, " budgets: val BPC = ", fmt_sci(f.law.a, 4),
             " * C^", fmt_fixed(f.law.b, 4), " + ", fmt_fixed(f.law.c, 4), " (rms residual ", fmt_sci(f.rms, 2),
             "); EL = C_dense(BPC_moe) / C_moe");
}

// Writes DIR/results.csv and DIR/results.md and prints the table.
void write_results(const std::string& dir) {
  SweepResults r = collect_sweep(dir);
  Table t = results_table(r);
  write_text_atomic((fs::path(dir) / "results.csv").string(), results_csv(r));
  std::string ref = r.reference.empty() ? "none (the sweep manifest names no \"reference\")" : r.reference;
  std::string md = "# Sweep " + r.name + "\n\nReference run: " + ref + ".\n\n" + t.markdown() + "\n" + fit_line(r) +
                   ".\n\nN, Na: non-embedding parameters (total, active); ra = Na / N; M: training FLOPs per token "
                   "(6 Na + 12 L Dm S); C = M D; D: consumed tokens; D^: unique tokens; M/M_ref: FLOPs per token "
                   "against the reference; dBPC = val BPC - val BPC of the reference (lower is better); EL: "
                   "Efficiency Leverage, the compute a dense run of this sweep would need for the same val BPC, "
                   "over this run's compute; wall: wall time over all segments of a run stopped and resumed; restarts: how often it was resumed.\n";
  write_text_atomic((fs::path(dir) / "results.md").string(), md);
  std::cout << "\nsweep " << r.name << " (reference: " << (r.reference.empty() ? "none" : r.reference) << ")\n"
            << t.text() << fit_line(r) << "\nwrote " << (fs::path(dir) / "results.csv").string() << " and results.md\n";
}

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (!path) return "";
  std::string p = path;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    std::string d = p.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!d.empty()) {
      fs::path f = fs::path(d) / name;
      if (::access(f.c_str(), X_OK) == 0 && fs::is_regular_file(f)) return f.string();
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return "";
}

// Runs `command` and returns its stdout and stderr; an exit code other than 0 is an Error with that text.
std::string run_capture(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) throw Error(str("cannot run: ", command));
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  int status = ::pclose(pipe);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (status != 0) {
    const std::string how = WIFEXITED(status) ? str("exit ", WEXITSTATUS(status))
                            : WIFSIGNALED(status) ? str("signal ", WTERMSIG(status))
                                                  : str("status ", status);
    std::replace(out.begin(), out.end(), '\n', ' ');  // one line
    throw Error(str("`", command, "` failed (", how, "): ", out.empty() ? "no output" : out));
  }
  return out;
}

void write_slurm(const SweepArgs& a, const SweepState& state, const std::string& dir) {
  SlurmOptions opts = a.cluster;
  opts.moetrain = self_exe();
  opts.max_parallel = a.jobs_given ? a.jobs : 0;
  opts.device = a.run.device;
  opts.precision = a.run.precision;
  opts.sbatch_lines = a.slurm_opts;
  fs::create_directories(fs::path(dir) / "slurm");
  const std::string array = (fs::path(dir) / "sweep.sbatch").string();
  const std::string collect = (fs::path(dir) / "collect.sbatch").string();
  write_text_atomic(array, slurm_array_script(state, dir, opts));
  const std::string train = (fs::path(dir) / "slurm" / "train.sbatch").string();
  write_text_atomic(train, slurm_train_script());
  write_text_atomic(collect, slurm_collect_script(state, dir, opts));
  fs::permissions(array, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
  fs::permissions(collect, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
  std::cout << "wrote " << array << " (array of " << state.runs.size() << " tasks) and " << collect << "\n";
  const std::string sbatch = find_on_path("sbatch");
  if (a.dry_run || sbatch.empty()) {
    std::cout << (a.dry_run ? "dry run: " : "sbatch is not on PATH: ") << "submit with\n"
              << "  jobid=$(sbatch --parsable " << shell_quote(array) << ")\n"
              << "  sbatch --dependency=afterany:${jobid%%;*} " << shell_quote(collect) << "\n";
    return;
  }
  std::string id = run_capture(shell_quote(sbatch) + " --parsable " + shell_quote(array));
  id = id.substr(0, id.find(';'));
  MT_CHECK(!id.empty(), "sbatch printed no job id for ", array);
  std::string cid = run_capture(shell_quote(sbatch) + " --parsable --dependency=afterany:" + id + " " + shell_quote(collect));
  std::cout << "submitted array job " << id << " and collect job " << cid.substr(0, cid.find(';'))
            << " (afterany:" << id << ")\n";
}

void run_sweep(const SweepArgs& a) {
  if (!a.collect.empty()) {
    MT_INPUT(a.run.config.empty() && a.out.empty(), "--collect DIR takes no sweep manifest and no --out");
    write_results(a.collect);
    return;
  }
  MT_INPUT(!a.run.config.empty(), "sweep: give a sweep manifest (or --collect DIR)");
  MT_INPUT(!a.out.empty(), "sweep: --out DIR is required");
  MT_INPUT(a.jobs >= 1, "--jobs ", a.jobs, ": must be at least 1");
  Manifest m = load_manifest(a.run.config, a.run.overrides);
  MT_INPUT(m.is_sweep, a.run.config, ": not a sweep manifest (no \"runs\"); train one run with `moetrain train ",
           a.run.config, " --out DIR`");
  fs::create_directories(a.out);
  SweepState state = prepare_sweep(m.sweep, a.run.config, a.out);
  MT_INPUT(a.only.empty() || !a.slurm, "--only runs the named runs here; it does not combine with --slurm");
  std::vector<RunTask> tasks = select_tasks(sweep_tasks(state, a.out), a.only);
  int n_done = 0, n_resume = 0, n_failed = 0;
  for (auto& t : tasks) {
    RunStatus s = run_status(t.out_dir);
    n_done += s == RunStatus::Finished;
    n_resume += s == RunStatus::Incomplete;
    n_failed += s == RunStatus::Failed;
  }
  std::cout << "sweep " << state.name << ": " << tasks.size() << " runs in " << a.out << " (" << n_done
            << " finished, " << n_resume << " to resume, " << tasks.size() - n_done - n_resume - n_failed
            << " to start, " << n_failed << " failed before: run again)\n";
  if (a.slurm) {
    write_slurm(a, state, a.out);
    return;
  }
  std::vector<std::string> extra = {"--device", a.run.device, "--precision", a.run.precision};
  if (a.dry_run) {
    for (auto& t : tasks) {
      RunStatus s = run_status(t.out_dir);
      std::cout << "  " << t.name << ": " << to_string(s);
      if (s != RunStatus::Finished) {
        std::cout << ": moetrain train " << t.manifest << " --out " << t.out_dir << " --resume auto";
        for (auto& e : extra) std::cout << " " << e;
        std::cout << " >> " << t.log;
      }
      std::cout << "\n";
    }
    std::cout << "dry run: nothing started\n";
    return;
  }
  // Runs side by side share the cores: unless the user chose, each gets cores / jobs OpenMP threads
  // (OpenMP threads that outnumber the cores spin against each other and run many times slower).
  if (a.jobs > 1 && !std::getenv("OMP_NUM_THREADS")) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const std::string threads = std::to_string(std::max(1u, cores / unsigned(a.jobs)));
    ::setenv("OMP_NUM_THREADS", threads.c_str(), 1);
    std::cout << "sweep: " << a.jobs << " runs at a time on " << cores << " cores: OMP_NUM_THREADS=" << threads
              << " for each (set OMP_NUM_THREADS to choose)\n";
  }
  install_stop_signals();
  ProcessLauncher launcher(self_exe(), extra);
  SweepOutcome o = run_sweep_tasks(tasks, a.jobs, launcher, std::cout, stop_requested);
  write_results(a.out);
  if (o.stopped) {
    std::cout << "sweep stopped: " << o.interrupted.size()
              << " run(s) not finished; run the same command again to resume\n";
    std::exit(3);
  }
  if (!o.failed.empty()) {
    std::string names;
    for (auto& f : o.failed) names += (names.empty() ? "" : ", ") + f;
    throw Error(str(o.failed.size(), " of ", tasks.size(), " runs failed: ", names, " (see each run's train.log)"));
  }
  if (!o.interrupted.empty())
    std::cout << o.interrupted.size() << " run(s) stopped with a checkpoint; run the same command again to resume\n";
}

RegisterCommand reg("sweep", 30, [](CLI::App& app) {
  auto args = std::make_shared<SweepArgs>();
  auto* sub = app.add_subcommand("sweep", "Run every run of a sweep (resumable; N at a time or as a Slurm job "
                                          "array) and write the results table with Efficiency Leverage");
  sub->add_option("sweep", args->run.config, "sweep manifest (JSON)")->check(CLI::ExistingFile);
  sub->add_option("--out", args->out, "sweep folder: one run folder per run, sweep.json, results.csv/.md");
  sub->add_option("--collect", args->collect, "only collect the results of a sweep folder")
      ->check(CLI::ExistingDirectory);
  auto* jobs = sub->add_option("--jobs", args->jobs, "runs at a time (locally; with --slurm: the array's limit)");
  sub->add_flag("--slurm", args->slurm, "write DIR/sweep.sbatch (job array) and DIR/collect.sbatch; submit them "
                                        "when sbatch is on PATH");
  SlurmOptions& so = args->cluster;
  sub->add_option("--tasks-per-run", so.tasks_per_run, "with --slurm: ranks per run (default: one per GPU, or 1)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--cpus-per-task", so.cpus_per_task, "with --slurm: CPUs (OpenMP threads) per rank (default: "
                                                       "the site's)")->check(CLI::NonNegativeNumber);
  sub->add_option("--gpus-per-run", so.gpus_per_run, "with --slurm: GPUs per run, on one node (default 0: a CPU job)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--srun-mpi", so.srun_mpi, "with --slurm: srun's MPI plugin (default pmix, as Debian's Open MPI "
                                             "needs; \"\" for the site's MpiDefault)");
  sub->add_option("--signal-lead", so.signal_lead_s, "with --slurm: seconds before the time limit at which a run "
                                                     "checkpoints and requeues (default 120)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--slurm-opt", args->slurm_opts,
                  "with --slurm: an extra #SBATCH option for both scripts, e.g. --slurm-opt=--partition=gpu "
                  "(repeatable)");
  sub->add_option("--only", args->only, "run (or dry-run) just these runs: NAME[,NAME...]");
  sub->add_flag("--dry-run", args->dry_run, "write the run folders (and Slurm scripts) but start nothing");
  add_run_options(sub, &args->run);
  sub->callback([args, jobs] {
    args->jobs_given = jobs->count() > 0;
    run_sweep(*args);
  });
});

}  // namespace
}  // namespace mt::app
