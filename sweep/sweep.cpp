// Why: see sweep.h. Each run is a separate `moetrain train` process so that a run's failure, its
// signals and its log stay its own, and a sweep started again needs nothing but the folder.
#include "sweep/sweep.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "engine/core/check.h"
#include "engine/run/checkpoint.h"
#include "engine/core/io.h"
#include "engine/run/plan.h"

namespace fs = std::filesystem;

namespace mt {

namespace {

// Files of the sweep folder itself, which no run folder may shadow.
const std::set<std::string> kSweepFiles = {"sweep.json", "results.csv", "results.md", "sweep.sbatch",
                                           "collect.sbatch", "slurm"};

std::string now_text() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

}  // namespace

std::string absolute_normal(const std::string& path) {
  return fs::absolute(fs::path(path)).lexically_normal().string();
}

json absolutize_run_paths(const json& manifest, const std::string& base_dir) {
  json m = manifest;
  const fs::path base = fs::absolute(fs::path(base_dir.empty() ? "." : base_dir));
  auto fix = [&](const char* section, const char* key) {
    if (!m.is_object() || !m.contains(section) || !m[section].is_object()) return;
    json& obj = m[section];
    if (!obj.contains(key) || !obj[key].is_string()) return;
    fs::path p(obj[key].get<std::string>());
    if (p.empty() || p.is_absolute()) return;
    obj[key] = (base / p).lexically_normal().string();
  };
  fix("data", "train");
  fix("data", "val");
  fix("train", "match_compute");
  return m;
}

json SweepState::to_json() const {
  json j;
  j["name"] = name;
  j["reference"] = reference;
  j["source"] = source;
  j["runs"] = json::array();
  for (auto& r : runs) j["runs"].push_back({{"name", r.name}, {"reuse", r.reuse}, {"plan", r.plan}});
  return j;
}

SweepState SweepState::from_json(const json& j, const std::string& where) {
  SweepState s;
  MT_INPUT(j.is_object() && j.contains("name") && j["name"].is_string() && j.contains("runs") &&
               j["runs"].is_array(),
           where, ": not a sweep state (expected {\"name\", \"reference\", \"runs\": [...]}, as `moetrain sweep` "
                  "writes it)");
  s.name = j["name"].get<std::string>();
  if (j.contains("reference") && j["reference"].is_string()) s.reference = j["reference"].get<std::string>();
  if (j.contains("source") && j["source"].is_string()) s.source = j["source"].get<std::string>();
  for (size_t i = 0; i < j["runs"].size(); ++i) {
    const json& r = j["runs"][i];
    MT_INPUT(r.is_object() && r.contains("name") && r["name"].is_string() && r.contains("plan") &&
                 r["plan"].is_object(),
             where, ": runs[", i, "]: expected {\"name\", \"reuse\", \"plan\": {...}}");
    SweepRunInfo info;
    info.name = r["name"].get<std::string>();
    info.reuse = r.contains("reuse") && r["reuse"].is_string() ? r["reuse"].get<std::string>() : "none";
    info.plan = r["plan"];
    s.runs.push_back(std::move(info));
  }
  return s;
}

std::string sweep_state_path(const std::string& dir) { return (fs::path(dir) / "sweep.json").string(); }

SweepState read_sweep_state(const std::string& dir) {
  std::string path = sweep_state_path(dir);
  MT_INPUT(fs::exists(path), dir, ": not a sweep folder (no sweep.json; `moetrain sweep SWEEP.json --out ", dir,
           "` writes it)");
  return SweepState::from_json(read_json_file(path), path);
}

SweepState prepare_sweep(const Sweep& sweep, const std::string& source, const std::string& dir) {
  SweepState state;
  state.name = sweep.name;
  state.reference = sweep.reference;
  state.source = absolute_normal(source);
  const std::string base = absolute_normal(sweep.base_dir.empty() ? "." : sweep.base_dir);
  std::vector<json> manifests;
  for (const SweepRun& run : sweep.runs) {
    std::string where = str(source, ": run \"", run.name, "\"");
    MT_INPUT(!kSweepFiles.count(run.name), where, ": the name is taken by the sweep folder's own file ",
             run.name, "; rename the run");
    json m = absolutize_run_paths(run.manifest, base);
    RunConfig cfg = parse_run(m, where, base);
    if (cfg.name.empty()) cfg.name = run.name;
    Plan plan = make_plan(cfg);
    fs::path run_dir = fs::path(dir) / run.name;
    fs::path old_path = run_dir / "manifest.json";
    const bool started = run_status(run_dir.string()) == RunStatus::Finished ||
                         !latest_checkpoint(run_dir.string()).empty();
    if (fs::exists(old_path) && started) {
      json old = read_json_file(old_path.string());
      MT_INPUT(old == m, where, ": ", run_dir.string(),
               " holds a started run of a different manifest; use another --out folder, or delete that run "
               "folder to run it again");
    }
    manifests.push_back(std::move(m));
    state.runs.push_back({run.name, to_string(cfg.data.reuse), plan.to_json()});
  }
  for (size_t i = 0; i < sweep.runs.size(); ++i) {
    fs::path run_dir = fs::path(dir) / sweep.runs[i].name;
    fs::create_directories(run_dir);
    write_text_atomic((run_dir / "manifest.json").string(), manifests[i].dump(2) + "\n");
  }
  write_text_atomic(sweep_state_path(dir), state.to_json().dump(2) + "\n");
  return state;
}

const char* to_string(RunStatus s) {
  switch (s) {
    case RunStatus::Pending: return "pending";
    case RunStatus::Incomplete: return "incomplete";
    case RunStatus::Failed: return "failed";
    case RunStatus::Finished: return "finished";
  }
  return "?";
}

RunStatus run_status(const std::string& run_dir) {
  if (fs::exists(fs::path(run_dir) / "summary.json")) return RunStatus::Finished;
  if (last_line((fs::path(run_dir) / "train.log").string()).rfind("moetrain: error:", 0) == 0) return RunStatus::Failed;
  if (!latest_checkpoint(run_dir).empty()) return RunStatus::Incomplete;
  return RunStatus::Pending;
}

std::vector<RunTask> sweep_tasks(const SweepState& state, const std::string& dir) {
  std::vector<RunTask> tasks;
  for (auto& r : state.runs) {
    fs::path run_dir = fs::path(absolute_normal(dir)) / r.name;
    tasks.push_back({r.name, (run_dir / "manifest.json").string(), run_dir.string(), (run_dir / "train.log").string()});
  }
  return tasks;
}

std::vector<RunTask> select_tasks(const std::vector<RunTask>& tasks, const std::string& only) {
  if (only.empty()) return tasks;
  std::set<std::string> wanted;
  for (size_t start = 0; start <= only.size();) {
    const size_t end = std::min(only.find(',', start), only.size());
    if (end > start) wanted.insert(only.substr(start, end - start));
    start = end + 1;
  }
  std::vector<RunTask> out;
  for (const RunTask& t : tasks)
    if (wanted.erase(t.name)) out.push_back(t);
  if (!wanted.empty()) {
    std::string valid;
    for (const RunTask& t : tasks) valid += (valid.empty() ? "" : ", ") + t.name;
    throw InputError(str("--only: no run named '", *wanted.begin(), "' in this sweep; its runs: ", valid));
  }
  MT_INPUT(!out.empty(), "--only '", only, "' names no run");
  return out;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

std::string last_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  return last;
}

// ---- the process launcher ------------------------------------------------------------------------

ProcessLauncher::ProcessLauncher(std::string exe, std::vector<std::string> extra_args)
    : exe_(std::move(exe)), extra_(std::move(extra_args)) {}

int ProcessLauncher::start(const RunTask& task) {
  std::vector<std::string> args = {exe_, "train", task.manifest, "--out", task.out_dir, "--resume", "auto"};
  args.insert(args.end(), extra_.begin(), extra_.end());
  fs::create_directories(task.out_dir);
  int fd = ::open(task.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(str(task.log, ": cannot open for writing: ", std::strerror(errno)));
  std::string header = "==== " + now_text() + " moetrain sweep:";
  for (auto& a : args) header += " " + a;
  header += "\n";
  if (::write(fd, header.data(), header.size()) < 0) {
    ::close(fd);
    throw Error(str(task.log, ": cannot write: ", std::strerror(errno)));
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // The child: its own process group, SIGTERM when the sweep dies, output to the log.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(3);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(exe_.c_str(), argv.data());
    ::dprintf(2, "moetrain sweep: cannot run %s: %s\n", exe_.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(fd);
  if (pid < 0) throw Error(str("cannot start ", task.name, ": fork failed: ", std::strerror(fork_errno)));
  return int(pid);
}

std::optional<std::pair<int, int>> ProcessLauncher::wait_any(double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (true) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
      return std::make_pair(int(pid), code);
    }
    if (pid < 0 && errno != EINTR) throw Error(str("waitpid failed: ", std::strerror(errno)));
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void ProcessLauncher::interrupt(int handle) { ::kill(pid_t(handle), SIGTERM); }

// ---- the scheduler ----------------------------------------------------------------------------------

SweepOutcome run_sweep_tasks(const std::vector<RunTask>& tasks, int jobs, Launcher& launcher, std::ostream& log,
                             const std::function<bool()>& stop_requested) {
  MT_INPUT(jobs >= 1, "--jobs ", jobs, ": must be at least 1");
  using Clock = std::chrono::steady_clock;
  struct Running {
    size_t index;
    Clock::time_point started;
  };
  SweepOutcome out;
  std::map<int, Running> running;
  const size_t n = tasks.size();
  size_t next = 0;
  auto tag = [&](size_t i) { return str("[", i + 1, "/", n, "] "); };
  auto seconds = [](Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  while (true) {
    if (!out.stopped && stop_requested()) {
      out.stopped = true;
      log << "sweep: stop requested: asking " << running.size()
          << " running run(s) to checkpoint and stop; no new run starts" << std::endl;
      for (auto& kv : running) launcher.interrupt(kv.first);
    }
    while (!out.stopped && running.size() < size_t(jobs) && next < n) {
      const size_t i = next++;
      const RunTask& t = tasks[i];
      RunStatus s = run_status(t.out_dir);
      if (s == RunStatus::Finished) {
        log << tag(i) << "skip " << t.name << ": finished (summary.json)" << std::endl;
        out.skipped.push_back(t.name);
        continue;
      }
      std::string how = !latest_checkpoint(t.out_dir).empty()
                            ? " (resuming from " + fs::path(latest_checkpoint(t.out_dir)).filename().string() + ")"
                            : "";
      int handle = launcher.start(t);
      running[handle] = {i, Clock::now()};
      log << tag(i) << "start " << t.name << how << " -> " << t.log << std::endl;
    }
    if (running.empty()) break;
    auto done = launcher.wait_any(0.2);
    if (!done) continue;
    auto it = running.find(done->first);
    MT_CHECK(it != running.end(), "the launcher reported an unknown run (handle ", done->first, ")");
    const size_t i = it->second.index;
    const RunTask& t = tasks[i];
    const int code = done->second;
    const double secs = seconds(it->second.started);
    running.erase(it);
    char took[32];
    std::snprintf(took, sizeof took, "%.1f s", secs);
    if (code == 0 && run_status(t.out_dir) == RunStatus::Finished) {
      json summary = json::parse(read_text((fs::path(t.out_dir) / "summary.json").string()), nullptr, false);
      std::string bpc;
      if (summary.is_object() && summary.contains("val_bpc") && summary["val_bpc"].is_number())
        bpc = str(", val bpc ", summary["val_bpc"].get<double>());
      log << tag(i) << "done " << t.name << " in " << took << bpc << std::endl;
      out.finished.push_back(t.name);
    } else if (code == 3) {
      log << tag(i) << "stopped " << t.name << " after " << took
          << " with a checkpoint (start the sweep again to resume it)" << std::endl;
      out.interrupted.push_back(t.name);
    } else {
      std::string why = code == 0 ? "exit 0 without summary.json" : str("exit ", code);
      std::string last = last_line(t.log);
      // A killed run says nothing: the log's last line makes it failed for run_status (and --collect).
      if (last.rfind("moetrain: error:", 0) != 0) {
        last = str("moetrain: error: the run ended with ", code > 128 ? str("signal ", code - 128) : why,
                   " and no error message");
        std::ofstream(t.log, std::ios::app) << last << "\n";
      }
      log << tag(i) << "FAILED " << t.name << " (" << why << ") after " << took << ": "
          << (last.empty() ? "no output" : last) << " (log: " << t.log << ")" << std::endl;
      out.failed.push_back(str(t.name, " (", why, ")"));
    }
  }
  for (; next < n; ++next) out.interrupted.push_back(tasks[next].name);
  return out;
}

}  // namespace mt
