// Who may use what: one pure decision used by every listing and every call. A group grants a server with
// all its tools, or with a tool allow-list, or with a tool deny-list; a user with several granting groups
// gets the union. Admins (MCP-Admin and the other admin paths) may use everything.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "store/store.hpp"

namespace gh::policy {

inline constexpr std::string_view kAnonymousGroup = "anonymous";

// How one caller reaches one server: values for its credential slots and the tenant's own endpoint.
struct Route {
  std::string key;  // "" = the server's defaults; else names the credential set (no secret in it)
  std::map<std::string, std::string> secrets;  // slot → tenant value (other slots: the gateway environment, unless url)
  std::string url;    // a tenant endpoint, "" = the configured URL
  std::string error;  // set when a slot has no value at all (names the slot, never a value)
};

struct ToolRule {
  enum class Mode { all, allow, deny } mode = Mode::all;
  std::unordered_set<std::string> tools;
  bool allows(std::string_view tool) const;
};

// Grants by server, built once per snapshot.
class GrantIndex {
 public:
  GrantIndex() = default;
  explicit GrantIndex(const std::vector<store::Grant>& grants);
  struct Entry {
    std::string group;
    ToolRule rule;
  };
  const std::vector<Entry>* for_server(std::string_view server) const;
  bool empty() const { return by_server_.empty(); }
  // Servers granted to this group (for the anonymous group's quick check).
  bool group_has_grants(std::string_view group) const;

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::vector<Entry>, Hash, std::equal_to<>> by_server_;
  std::unordered_set<std::string> groups_with_grants_;
};

// The decision. `groups` sorted. Without `tool`: may the caller use the server at all (list it, its prompts
// and resources)? With `tool`: may the caller see and call that tool?
bool decide(const GrantIndex& grants, const std::vector<std::string>& groups, bool is_admin, std::string_view server,
            std::optional<std::string_view> tool = std::nullopt);

// "" for every tool, else "allow"/"deny"; parses the management API's {"allow":[…]} / {"deny":[…]} / null.
bool parse_tools_json(const std::string& json_text, std::string& mode, std::vector<std::string>& tools,
                      std::string* error);

}  // namespace gh::policy
