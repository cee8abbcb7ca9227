// Why: each subcommand lives in its own file (app/cmd_*.cpp) and registers itself here, so adding a
// subcommand never touches main.cpp. A command's setup adds its CLI11 subcommand and a callback; the
// callback throws mt::InputError (exit 2) or mt::Error (exit 1) on failure.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace mt::app {

struct Command {
  std::string name;
  int order;                               // position in --help
  std::function<void(CLI::App&)> setup;    // adds the subcommand to the top-level app
};

std::vector<Command>& command_registry();

struct RegisterCommand {
  RegisterCommand(std::string name, int order, std::function<void(CLI::App&)> setup) {
    command_registry().push_back({std::move(name), order, std::move(setup)});
  }
};

}  // namespace mt::app
