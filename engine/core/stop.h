// Why: one stop flag for SIGTERM / SIGINT, shared by `moetrain train` (checkpoint and stop at the next
// step boundary) and `moetrain sweep` (interrupt the running runs, start no new one). The handler only
// sets the flag; each loop reads it where stopping is safe.
#pragma once

namespace mt {

// Installs the SIGTERM / SIGINT handlers that set the flag (interrupted system calls restart).
void install_stop_signals();

// True once SIGTERM or SIGINT arrived after install_stop_signals().
bool stop_requested();

}  // namespace mt
