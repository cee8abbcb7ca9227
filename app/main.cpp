// Why: the entry point. It builds the CLI from the registered subcommands, runs the chosen one, and
// maps failures to one line on stderr and an exit code: 2 for bad input, 1 for runtime failures. In a
// multi-rank job a failing rank aborts the whole job so that no peer waits forever.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

#include "app/command.h"
#include "comm/job.h"
#include "engine/core/check.h"

namespace mt::app {
std::vector<Command>& command_registry() {
  static std::vector<Command> registry;
  return registry;
}
}  // namespace mt::app

namespace {

// Prints the error and ends the process; in an MPI job of several ranks it aborts all of them.
[[noreturn]] void fail(const std::string& what, int code) {
  const mt::JobPlace job = mt::job_place();
  std::string line = what;
  std::replace(line.begin(), line.end(), '\n', ' ');
  if (job.size > 1)
    std::fprintf(stderr, "moetrain: error (rank %d): %s\n", job.rank, line.c_str());
  else
    std::fprintf(stderr, "moetrain: error: %s\n", line.c_str());
  std::fflush(stderr);
  mt::exit_job(code);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moetrain: train dense and Mixture-of-Experts LLMs from scratch, with hand-written "
               "forward/backward, on CPU or CUDA, with data, expert and tensor parallelism over MPI.",
               "moetrain"};
  app.set_version_flag("--version", std::string("moetrain ") + MOETRAIN_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  auto& registry = mt::app::command_registry();
  std::sort(registry.begin(), registry.end(),
            [](const auto& a, const auto& b) { return a.order < b.order; });
  for (auto& cmd : registry) cmd.setup(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fail(std::string(e.what()) + " (see moetrain --help)", 2);
  } catch (const mt::InputError& e) {
    fail(e.what(), 2);
  } catch (const std::exception& e) {
    fail(e.what(), 1);
  }
  mt::finalize_job();
  return 0;
}
