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
                                                                  const std::string& server, const Settings& settings,
                                                                  bool token) {
  std::string groups;
  for (auto& g : id.groups) groups += (groups.empty() ? "" : ",") + g;
  std::vector<std::pair<std::string, std::string>> h;
  h.emplace_back("X-User-Email", id.email);
  h.emplace_back("X-User-Groups", groups);
  h.emplace_back("X-User-Admin", is_admin ? "true" : "false");
  // Names may hold any Unicode: URL-quoted, as Open WebUI sends X-OpenWebUI-User-Name.
  h.emplace_back("X-User-Name", boost::urls::encode(id.name, boost::urls::unreserved_chars));
  h.emplace_back("X-Gateway-Validated", "true");
  if (token && !settings.upstream_identity_secret.empty()) {
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

namespace {
// The rights of one request's caller. The grants and routes are read from the directory's current snapshot
// whenever asked (a session open for hours pins no old snapshot); the identity is the request's.
class PrincipalRights final : public mcp::Rights {
 public:
  PrincipalRights(std::shared_ptr<const auth::Identity> id, bool admin, const auth::Directory& dir, const Settings& settings)
      : id_(std::move(id)), admin_(admin), dir_(dir), settings_(settings),
        groups_(id_ ? &id_->groups : &anonymous_groups()) {}
  bool may_use(const ServerConfig& s) const override {
    return policy::decide(dir_.current()->grants(), *groups_, admin_, s.id);
  }
  bool may_call(const ServerConfig& s, std::string_view tool) const override {
    return policy::decide(dir_.current()->grants(), *groups_, admin_, s.id, tool);
  }
  policy::Route route(const ServerConfig& s) const override { return dir_.current()->route(*groups_, s); }
  std::vector<std::pair<std::string, std::string>> identity_headers(const ServerConfig& s) const override {
    if (!id_) return {};
    // A tenant's own endpoint gets no X-Gateway-Token: it is signed with the secret the gateway's upstreams
    // verify, so one sent there could be replayed to them as this user for its minute.
    bool own_endpoint = !dir_.current()->route(*groups_, s).url.empty();
    return app::identity_headers(*id_, admin_, s.id, settings_, !own_endpoint);
  }
  std::string no_access_hint() const override {
    return id_ ? "You (" + id_->email + ") have no MCP servers yet. Ask a Gatehouse administrator to add you to "
                 "a group that grants the servers you need."
               : "No MCP servers are open to anonymous callers; sign in or send an API key.";
  }

 private:
  std::shared_ptr<const auth::Identity> id_;
  bool admin_;
  const auth::Directory& dir_;
  const Settings& settings_;
  // The groups that decide: the user's, or for an anonymous caller the built-in `anonymous` group.
  const std::vector<std::string>* groups_;
};
}  // namespace

mcp::Caller make_caller(const auth::Principal& principal, const auth::Directory& directory, const Settings& settings) {
  mcp::Caller c;
  if (principal.identity) c.owner = principal.identity->email;
  c.rights = std::make_shared<PrincipalRights>(principal.identity, principal.is_admin(), directory, settings);
  return c;
}

}  // namespace gh::app
