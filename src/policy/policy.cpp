#include "policy/policy.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace gh::policy {

bool ToolRule::allows(std::string_view tool) const {
  switch (mode) {
    case Mode::all: return true;
    case Mode::allow: return tools.contains(std::string(tool));
    case Mode::deny: return !tools.contains(std::string(tool));
  }
  return false;
}

GrantIndex::GrantIndex(const std::vector<store::Grant>& grants) {
  for (auto& g : grants) {
    Entry e;
    e.group = g.group;
    e.rule.mode = g.tools_mode == "allow" ? ToolRule::Mode::allow
                  : g.tools_mode == "deny" ? ToolRule::Mode::deny
                                           : ToolRule::Mode::all;
    e.rule.tools.insert(g.tools.begin(), g.tools.end());
    by_server_[g.server].push_back(std::move(e));
    groups_with_grants_.insert(g.group);
  }
}

const std::vector<GrantIndex::Entry>* GrantIndex::for_server(std::string_view server) const {
  auto it = by_server_.find(server);
  return it == by_server_.end() ? nullptr : &it->second;
}

bool GrantIndex::group_has_grants(std::string_view group) const {
  return groups_with_grants_.contains(std::string(group));
}

bool decide(const GrantIndex& grants, const std::vector<std::string>& groups, bool is_admin, std::string_view server,
            std::optional<std::string_view> tool) {
  if (is_admin) return true;
  auto* entries = grants.for_server(server);
  if (!entries) return false;
  for (auto& e : *entries) {
    if (!std::binary_search(groups.begin(), groups.end(), e.group)) continue;
    if (!tool || e.rule.allows(*tool)) return true;
  }
  return false;
}

bool parse_tools_json(const std::string& text, std::string& mode, std::vector<std::string>& tools, std::string* error) {
  mode.clear();
  tools.clear();
  if (text.empty() || text == "null") return true;
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec || !(v.is_object() || v.is_null())) {
    *error = "tools must be null, {\"allow\": [names]} or {\"deny\": [names]}";
    return false;
  }
  if (v.is_null()) return true;
  auto& o = v.as_object();
  if (o.size() != 1 || !(o.contains("allow") || o.contains("deny"))) {
    *error = "tools must have exactly one of \"allow\" or \"deny\"";
    return false;
  }
  mode = o.contains("allow") ? "allow" : "deny";
  auto& list = o.begin()->value();
  if (!list.is_array()) {
    *error = "tools." + mode + " must be a list of tool names";
    return false;
  }
  for (auto& t : list.as_array()) {
    if (!t.is_string() || t.as_string().empty() || t.as_string().size() > 256) {
      *error = "tools." + mode + " must contain tool names (non-empty strings)";
      return false;
    }
    tools.emplace_back(t.as_string());
  }
  std::sort(tools.begin(), tools.end());
  tools.erase(std::unique(tools.begin(), tools.end()), tools.end());
  return true;
}

}  // namespace gh::policy
