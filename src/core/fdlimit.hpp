// Open-file limits. A gateway holds a descriptor for every client connection (Streamable HTTP clients keep a
// GET stream open), every pooled upstream connection, every stdio child's pipes and the database; the soft
// limit systemd and most shells start a process with is 1,024, far below what 15,000 users need. Like nginx's
// worker_rlimit_nofile (and Go's runtime, which does the same at start), Gatehouse raises its soft limit to the
// hard one, and gives its children the limit it started with: programs that use select() expect 1,024 at most.
#pragma once
#include <cstddef>

namespace gh::fdlimit {

// Raises this process's soft RLIMIT_NOFILE to its hard limit (at most 1,048,576); returns the soft limit now.
std::size_t raise();
// In a child after fork(), before exec: puts back the soft limit the process started with.
void restore_in_child() noexcept;
// What a default connection cap leaves for everything else (upstreams, stdio pipes, the database, files):
// a quarter of `limit`, at most 1,024.
std::size_t default_max_connections(std::size_t limit);

}  // namespace gh::fdlimit
