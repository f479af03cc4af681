// Process-wide bookkeeping of stdio upstream processes.
#pragma once
#include <cstddef>

namespace gh::upstream {
// Process groups of stdio upstreams not yet reaped.
std::size_t live_child_groups();
// Sends `sig` to every live process group (shutdown's last resort).
void kill_all_children(int sig);
}  // namespace gh::upstream
