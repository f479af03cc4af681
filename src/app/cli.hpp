// Administration from the command line, on the same store as the gateway (DATABASE_URL):
// migrate, apikey, users, groups. Changes are audited (actor "cli") and reach running instances.
#pragma once
#include <string>
#include <vector>

#include "core/config.hpp"

namespace gh::app {
bool is_cli_command(const std::string& cmd);
// Returns the process exit code (0 ok, 1 failed, 2 usage).
// `env`: for the servers file, which `keys set` and `endpoints set` are checked against.
int run_cli(const std::string& cmd, const std::vector<std::string>& args, const Settings& settings,
            const Environment& env);
void cli_usage();
}  // namespace gh::app
