// Why: `moetrain sweep` runs every run of a sweep manifest as its own `moetrain train` process, in a
// folder it can be started again on: finished runs are skipped, interrupted ones resume. This is the
// part below the CLI: writing the run folders (manifest.json with absolute paths, sweep.json for
// --collect), the run status read back from a run folder, the scheduler (N runs at a time, a failed
// run reported and the rest continuing) over a Launcher that tests replace, and the fork/exec launcher.
// The Slurm job-array scripts are in slurm.h, the results table in results.h.
#pragma once

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "engine/run/config.h"

namespace mt {

// The absolute, normalised form of `path`.
std::string absolute_normal(const std::string& path);

// A run manifest whose relative paths (data.train, data.val, train.match_compute) are made absolute
// against `base_dir` (itself made absolute), so that the manifest works from any folder.
json absolutize_run_paths(const json& manifest, const std::string& base_dir);

struct SweepRunInfo {
  std::string name;
  std::string reuse;   // data.reuse: none, strict or loose
  json plan;           // Plan::to_json() of the written manifest
};

// DIR/sweep.json: what --collect needs besides the run folders.
struct SweepState {
  std::string name;
  std::string reference;   // "" when the sweep names none
  std::string source;      // the sweep manifest, absolute
  std::vector<SweepRunInfo> runs;

  json to_json() const;
  static SweepState from_json(const json& j, const std::string& where);
};

std::string sweep_state_path(const std::string& dir);
SweepState read_sweep_state(const std::string& dir);

// Validates every run (parse and plan), then writes DIR/RUN/manifest.json and DIR/sweep.json. A run
// folder whose run has started (a checkpoint or a summary) with a different manifest is an error
// before anything is written: its results would not be the run the sweep now describes.
SweepState prepare_sweep(const Sweep& sweep, const std::string& source, const std::string& dir);

enum class RunStatus { Pending, Incomplete, Failed, Finished };
const char* to_string(RunStatus s);
// Finished: summary.json; Failed: train.log ends with moetrain's error line ("moetrain: error: ..."; a
// restart appends a header line, so a failed run that is running again is not Failed); Incomplete: a
// complete checkpoint (checkpoints/step_*/state.json); else Pending.
RunStatus run_status(const std::string& run_dir);

struct RunTask {
  std::string name;
  std::string manifest;   // DIR/RUN/manifest.json
  std::string out_dir;    // DIR/RUN
  std::string log;        // DIR/RUN/train.log
};

std::vector<RunTask> sweep_tasks(const SweepState& state, const std::string& dir);

// The tasks named in `only` ("a,b": comma-separated), in the sweep's order; "" keeps them all. A name
// that is not a run of the sweep is an InputError listing the runs.
std::vector<RunTask> select_tasks(const std::vector<RunTask>& tasks, const std::string& only);

// Starts runs and waits for them. Tests replace it; ProcessLauncher runs `moetrain train`.
class Launcher {
 public:
  virtual ~Launcher() = default;
  virtual int start(const RunTask& task) = 0;   // a handle for wait_any / interrupt
  // A run that ended: (handle, exit code; 128 + n when killed by signal n), or nothing when none ended
  // within timeout_s.
  virtual std::optional<std::pair<int, int>> wait_any(double timeout_s) = 0;
  virtual void interrupt(int handle) = 0;       // asks the run to checkpoint and stop
};

// Runs `exe train MANIFEST --out DIR --resume auto [extra...]` per task, stdout and stderr appended to
// the task's log. Each child has its own process group (a terminal's Ctrl-C reaches the sweep, which
// forwards one SIGTERM) and gets SIGTERM if the sweep dies.
class ProcessLauncher : public Launcher {
 public:
  ProcessLauncher(std::string exe, std::vector<std::string> extra_args);
  int start(const RunTask& task) override;
  std::optional<std::pair<int, int>> wait_any(double timeout_s) override;
  void interrupt(int handle) override;

 private:
  std::string exe_;
  std::vector<std::string> extra_;
};

struct SweepOutcome {
  std::vector<std::string> finished;     // ran to the end now
  std::vector<std::string> skipped;      // had summary.json already
  std::vector<std::string> failed;       // "name (exit N)"
  std::vector<std::string> interrupted;  // stopped with a checkpoint (exit 3), or never started after a stop
  bool stopped = false;                  // stop_requested() became true
};

// Runs the tasks in order, at most `jobs` at a time; skips finished runs; a failed run is reported
// and the others go on. When stop_requested() turns true, the running runs are interrupted and no new
// one starts. One line per start and end goes to `log`.
SweepOutcome run_sweep_tasks(const std::vector<RunTask>& tasks, int jobs, Launcher& launcher, std::ostream& log,
                             const std::function<bool()>& stop_requested);

// `s` in single quotes for a POSIX shell.
std::string shell_quote(const std::string& s);

// The last non-empty line of a file ("" when there is none): a failed run's error message.
std::string last_line(const std::string& path);

}  // namespace mt
