#include "core/fdlimit.hpp"

#include <sys/resource.h>

#include <algorithm>

namespace gh::fdlimit {
namespace {
rlimit started{};
bool raised = false;
}  // namespace

std::size_t raise() {
  rlimit now{};
  if (::getrlimit(RLIMIT_NOFILE, &now) != 0) return 1024;
  if (!raised) started = now;
  constexpr rlim_t kMost = rlim_t(1) << 20;
  rlim_t want = now.rlim_max == RLIM_INFINITY ? kMost : std::min(now.rlim_max, kMost);
  if (now.rlim_cur != RLIM_INFINITY && now.rlim_cur < want) {
    rlimit next{want, now.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &next) == 0) {
      now.rlim_cur = want;
      raised = true;
    }
  }
  return now.rlim_cur == RLIM_INFINITY ? std::size_t(kMost) : std::size_t(now.rlim_cur);
}

void restore_in_child() noexcept {
  if (raised) ::setrlimit(RLIMIT_NOFILE, &started);
}

std::size_t default_max_connections(std::size_t limit) { return limit - std::min<std::size_t>(1024, limit / 4); }

}  // namespace gh::fdlimit
