// Why: the entry point. It builds the CLI from the registered subcommands, runs the chosen one, and
// maps failures to one line on stderr and an exit code: 2 for bad input, 1 for runtime failures. In a
// multi-rank job a failing rank aborts the whole job so that no peer waits forever.
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

#include "app/command.h"
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
  int initialized = 0, finalized = 0, size = 1, rank = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  const bool in_job = initialized && !finalized;
  if (in_job) {
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  }
  std::string line = what;
  std::replace(line.begin(), line.end(), '\n', ' ');
  if (size > 1)
    std::fprintf(stderr, "moetrain: error (rank %d): %s\n", rank, line.c_str());
  else
    std::fprintf(stderr, "moetrain: error: %s\n", line.c_str());
  std::fflush(stderr);
  if (in_job && size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  if (in_job) MPI_Finalize();
  std::exit(code);
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
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
  return 0;
}
