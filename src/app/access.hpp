// From a Principal to what the hub needs to know about the caller: which servers and tools (the policy),
// which credential set and endpoint (tenant routing), and the identity headers for opted-in upstreams.
#pragma once
#include <memory>
#include <string>

#include "auth/directory.hpp"
#include "auth/principal.hpp"
#include "core/config.hpp"
#include "mcp/hub.hpp"

namespace gh::app {

// `principal` may be unauthenticated: then the caller is anonymous (the `anonymous` group's grants).
// The rights are read from the directory's current snapshot whenever asked, so a session kept open for hours
// never pins an old snapshot in memory.
mcp::Caller make_caller(const auth::Principal& principal, const auth::Directory& directory, const Settings& settings);

// The headers an upstream with forwardIdentity receives (X-User-*, X-Gateway-Validated, and when
// UPSTREAM_IDENTITY_SECRET is set and `token`, a signed X-Gateway-Token it can verify).
std::vector<std::pair<std::string, std::string>> identity_headers(const auth::Identity& id, bool is_admin,
                                                                  const std::string& server, const Settings& settings,
                                                                  bool token = true);

}  // namespace gh::app
