#include "core/budget.hpp"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

namespace gh::budget {

namespace {
// The memory cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes), 0 when there is none.
std::size_t cgroup_memory_limit() {
  for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream f(path);
    std::string v;
    if (!(f >> v) || v == "max") continue;
    try {
      auto n = std::stoull(v);
      if (n > 0 && n < (std::size_t(1) << 60)) return n;  // v1 says "no limit" with a huge number
    } catch (...) {
    }
  }
  return 0;
}
}  // namespace

std::size_t default_limit(std::size_t memory_bytes) {
  return std::min<std::size_t>(std::size_t(1) << 30, memory_bytes / 4);
}

std::size_t available_memory() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  std::size_t physical = pages > 0 && page > 0 ? std::size_t(pages) * std::size_t(page) : 0;
  std::size_t cg = cgroup_memory_limit();
  return cg && (!physical || cg < physical) ? cg : physical;
}

}  // namespace gh::budget
