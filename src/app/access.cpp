#include "app/access.hpp"

#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <chrono>

#include "auth/jwt.hpp"
#include "policy/policy.hpp"

namespace gh::app {

namespace {
const std::vector<std::string>& anonymous_groups() {
  static const std::vector<std::string> g{std::string(policy::kAnonymousGroup)};
  return g;
}
}  // namespace

std::vector<std::pair<std::string, std::string>> identity_headers(const auth::Identity& id, bool is_admin,
                                                                  const std::string& server, const Settings& settings) {
  std::string groups;
  for (auto& g : id.groups) groups += (groups.empty() ? "" : ",") + g;
  std::vector<std::pair<std::string, std::string>> h;
  h.emplace_back("X-User-Email", id.email);
  h.emplace_back("X-User-Groups", groups);
  h.emplace_back("X-User-Admin", is_admin ? "true" : "false");
  // Names may hold any Unicode: URL-quoted, as Open WebUI sends X-OpenWebUI-User-Name.
  h.emplace_back("X-User-Name", boost::urls::encode(id.name, boost::urls::unreserved_chars));
  h.emplace_back("X-Gateway-Validated", "true");
  if (!settings.upstream_identity_secret.empty()) {
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    boost::json::array g;
    for (auto& n : id.groups) g.emplace_back(n);
    h.emplace_back("X-Gateway-Token",
                   auth::sign_hs256({{"iss", "gatehouse"}, {"aud", server}, {"sub", id.email}, {"email", id.email},
                                     {"name", id.name}, {"groups", std::move(g)}, {"admin", is_admin},
                                     {"iat", now}, {"exp", now + 60}},
                                    settings.upstream_identity_secret));
  }
  return h;
}

mcp::Caller make_caller(const auth::Principal& principal, const auth::Directory& directory, const Settings& settings) {
  const auth::Directory* dir = &directory;
  mcp::Caller c;
  auto id = principal.identity;
  bool admin = principal.is_admin();
  c.owner = id ? id->email : std::string();
  // The groups that decide: the user's, or for an anonymous caller the built-in `anonymous` group.
  const std::vector<std::string>* groups = id ? &id->groups : &anonymous_groups();
  c.may_use = [dir, id, groups, admin](const ServerConfig& s) {
    return policy::decide(dir->current()->grants(), *groups, admin, s.id);
  };
  c.may_call = [dir, id, groups, admin](const ServerConfig& s, std::string_view tool) {
    return policy::decide(dir->current()->grants(), *groups, admin, s.id, tool);
  };
  c.route = [dir, id, groups](const ServerConfig& s) { return dir->current()->route(*groups, s); };
  if (id)
    c.identity_headers = [id, admin, &settings](const ServerConfig& s) { return identity_headers(*id, admin, s.id, settings); };
  c.no_access_hint = id ? "You (" + id->email + ") have no MCP servers yet. Ask a Gatehouse administrator to add you to "
                          "a group that grants the servers you need."
                        : "No MCP servers are open to anonymous callers; sign in or send an API key.";
  return c;
}

}  // namespace gh::app
