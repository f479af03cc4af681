// Wiring: settings, the io_context, the HTTP server and its routes, signals and shutdown.
#pragma once
#include "core/config.hpp"

namespace gh::app {
// Runs the gateway until SIGTERM/SIGINT; returns the process exit code.
int serve(const Settings& settings, const Environment& env);
}  // namespace gh::app
