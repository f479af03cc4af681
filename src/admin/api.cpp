#include "admin/api.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <chrono>
#include <cmath>
#include <set>

#include "auth/apikeys.hpp"
#include "policy/policy.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>
#include "core/log.hpp"
#include "core/util.hpp"

namespace gh::admin {

namespace json = boost::json;
namespace bhttp = boost::beast::http;
using store::StoreError;

bool clean_text(std::string_view s, std::size_t max, bool lines) {
  if (s.size() > max || !valid_utf8(s)) return false;
  for (unsigned char c : s)
    if ((c < 0x20 && !(lines && (c == '\n' || c == '\t' || c == '\r'))) || c == 0x7f) return false;
  return true;
}

namespace {

json::value time_or_null(int64_t t) { return t ? json::value(t) : json::value(nullptr); }

json::object user_json(const store::User& u, const std::vector<std::string>& groups) {
  json::array g;
  for (auto& n : groups) g.emplace_back(n);
  return {{"email", u.email},        {"name", u.name},
          {"is_admin", u.is_admin},  {"disabled", u.disabled},
          {"source", u.source},      {"created_at", time_or_null(u.created_at)},
          {"last_seen_at", time_or_null(u.last_seen_at)}, {"groups", std::move(g)}};
}

json::object group_json(const store::Group& g) {
  return {{"name", g.name}, {"description", g.description}, {"priority", g.priority},
          {"is_tenant", g.is_tenant}, {"created_at", time_or_null(g.created_at)}, {"member_count", g.member_count}};
}

Reply ok(int status, const json::value& v) { return Reply{status, gh::to_json(v)}; }

// {"items": [...]} of rows turned into JSON by `to_json`.
template <class Rows, class ToJson>
Reply items_reply(const Rows& rows, ToJson to_json) {
  json::array items;
  for (auto& r : rows) items.push_back(to_json(r));
  return ok(200, json::object{{"items", std::move(items)}});
}

// Paging from ?page=&per_page= (1-based pages, per_page capped).
struct Paging {
  int64_t page = 1, per_page = 50;
  int64_t offset() const { return (page - 1) * per_page; }
};

bool parse_int(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 12) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

using auth::kGroupNameRule;
using auth::valid_group_name;

const json::value* field(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  return it == o.end() ? nullptr : &it->value();
}

// Runs one request's store work; all of it on the blocking pool.
struct Call {
  store::Store& st;
  std::shared_ptr<const auth::Snapshot> snap;
  const std::string& actor;
  bhttp::verb verb;
  std::vector<std::string> seg;  // decoded path segments after /mcp-admin/api
  std::map<std::string, std::string, std::less<>> query;
  json::object body;
  const Settings* settings = nullptr;
  const auth::SecretBox* box = nullptr;
  std::map<std::string, ServerView> servers;
  bool changed = false;
  int64_t caller_key_expires = 0;  // the caller's API key's expiry (or the key its session was made from)

  std::string q(std::string_view k) const {
    auto it = query.find(k);
    return it == query.end() ? std::string() : it->second;
  }
  std::optional<Paging> paging(Reply& err) const {
    Paging p;
    if (auto s = q("page"); !s.empty() && (!parse_int(s, p.page) || p.page < 1)) {
      err = error_reply(400, "invalid_request", "page must be a positive integer");
      return std::nullopt;
    }
    if (auto s = q("per_page"); !s.empty() && (!parse_int(s, p.per_page) || p.per_page < 1 || p.per_page > 500)) {
      err = error_reply(400, "invalid_request", "per_page must be between 1 and 500");
      return std::nullopt;
    }
    return p;
  }
  void audit(std::string action, std::string target, json::object details) {
    store::AuditEntry e;
    e.timestamp = unix_now();
    e.actor = actor;
    e.action = std::move(action);
    e.target = std::move(target);
    e.details = gh::to_json(details);
    st.append_audit(e);
    changed = true;
  }
  std::vector<std::string> groups_of(const std::string& email) const {
    if (auto* g = snap->groups_of(email)) return *g;
    return {};
  }
  // A change that takes `email`'s administrator rights away (or the account): refused for the caller's own
  // account, and when no other administrator would be left (only the command line could then repair it).
  std::optional<Reply> keeps_an_admin(const std::string& email, std::string_view own_message) {
    auto admins = st.admin_emails(auth::kAdminGroup);
    if (std::find(admins.begin(), admins.end(), email) == admins.end()) return std::nullopt;  // not one now
    if (email == actor) return error_reply(400, "invalid_request", own_message);
    if (admins.size() == 1)
      return error_reply(409, "last_admin", email + " is the only administrator; make someone else an administrator first");
    return std::nullopt;
  }
  // A user made on the way (adding an unknown email to a group), audited as one.
  // A person added to a group by address who has no account yet gets one, audited as user.create.
  static store::User listed_user(const std::string& email) {
    store::User u;
    u.email = email;
    u.source = "admin";
    u.created_at = unix_now();
    return u;
  }
  static json::object listed_user_created(const store::User& u) { return {{"after", user_json(u, {})}}; }
  void create_listed_user(const std::string& email) {
    if (st.get_user(email)) return;
    auto u = listed_user(email);
    if (st.create_user(u)) audit("user.create", email, listed_user_created(u));
  }

  Reply run() {
    auto n = seg.size();
    if (n >= 1 && seg[0] == "users") return n == 1 ? users() : n == 2 ? user(seg[1]) : not_found();
    if (n >= 1 && seg[0] == "groups") {
      if (n == 1) return groups();
      if (n == 2) return group(seg[1]);
      if (seg[2] == "members") return n == 3 ? members(seg[1]) : n == 4 ? member(seg[1], seg[3]) : not_found();
      if (seg[2] == "servers") return n == 3 ? grants(seg[1]) : n == 4 ? grant(seg[1], seg[3]) : not_found();
      return not_found();
    }
    if (n >= 1 && seg[0] == "servers") return n == 1 ? server_list() : n == 2 ? server_one(seg[1]) : not_found();
    if (n >= 3 && seg[0] == "tenants") {
      if (seg[2] == "keys") return n == 3 ? keys(seg[1]) : n == 5 ? key(seg[1], seg[3], seg[4]) : not_found();
      if (seg[2] == "endpoints") return n == 3 ? endpoints(seg[1]) : n == 4 ? endpoint(seg[1], seg[3]) : not_found();
      return not_found();
    }
    if (n >= 1 && seg[0] == "apikeys") return n == 1 ? apikeys() : n == 2 ? apikey(seg[1]) : not_found();
    if (n == 1 && seg[0] == "audit") return audit_list();
    if (n == 1 && seg[0] == "analytics") return analytics();
    return not_found();
  }

  static Reply not_found() { return error_reply(404, "not_found", "No such management API endpoint"); }
  static Reply bad_method() { return error_reply(405, "method_not_allowed", "Method not allowed here"); }

  Reply users() {
    if (verb == bhttp::verb::get) {
      Reply err;
      auto p = paging(err);
      if (!p) return err;
      int64_t total = 0;
      auto list = st.list_users(q("q"), p->offset(), p->per_page, &total);
      json::array items;
      for (auto& u : list) items.push_back(user_json(u, groups_of(u.email)));
      return ok(200, json::object{{"items", std::move(items)}, {"total", total}, {"page", p->page}, {"per_page", p->per_page}});
    }
    if (verb == bhttp::verb::post) {
      auto* e = field(body, "email");
      if (!e || !e->is_string()) return error_reply(400, "invalid_request", "email is required");
      store::User u;
      u.email = auth::normalize_email(e->as_string());
      if (!auth::plausible_email(u.email)) return error_reply(400, "invalid_request", "email is not a valid address");
      if (auto* nm = field(body, "name")) {
        if (!nm->is_string() || !clean_text(nm->as_string(), 200))
          return error_reply(400, "invalid_request", "name must be text of at most 200 characters");
        u.name = std::string(nm->as_string());
      }
      if (auto* a = field(body, "is_admin")) {
        if (!a->is_bool()) return error_reply(400, "invalid_request", "is_admin must be true or false");
        u.is_admin = a->as_bool();
      }
      u.source = "admin";
      u.created_at = unix_now();
      if (!st.create_user(u)) return error_reply(409, "conflict", "A user with this email already exists");
      audit("user.create", u.email, {{"after", user_json(u, {})}});
      return ok(201, user_json(u, {}));
    }
    return bad_method();
  }

  Reply user(const std::string& raw) {
    auto email = auth::normalize_email(raw);
    auto u = st.get_user(email);
    if (!u) return error_reply(404, "not_found", "No user " + email);
    if (verb == bhttp::verb::get) return ok(200, user_json(*u, st.groups_of(email)));
    if (verb == bhttp::verb::patch) {
      auto before = *u;
      if (auto* d = field(body, "disabled")) {
        if (!d->is_bool()) return error_reply(400, "invalid_request", "disabled must be true or false");
        if (d->as_bool() && email == actor) return error_reply(400, "invalid_request", "You cannot disable your own account");
        u->disabled = d->as_bool();
      }
      if (auto* a = field(body, "is_admin")) {
        if (!a->is_bool()) return error_reply(400, "invalid_request", "is_admin must be true or false");
        u->is_admin = a->as_bool();
      }
      // Still an administrator afterwards: enabled, and marked so or through MCP-Admin.
      auto groups = st.groups_of(email);
      bool stays_admin = !u->disabled && (u->is_admin || std::find(groups.begin(), groups.end(), auth::kAdminGroup) != groups.end());
      if (!stays_admin)
        if (auto refused = keeps_an_admin(email, "You cannot remove your own admin rights")) return *refused;
      if (auto* nm = field(body, "name")) {
        if (!nm->is_string() || !clean_text(nm->as_string(), 200))
          return error_reply(400, "invalid_request", "name must be text of at most 200 characters");
        u->name = std::string(nm->as_string());
      }
      st.update_user(*u);
      audit("user.update", email, {{"before", user_json(before, groups)}, {"after", user_json(*u, groups)}});
      return ok(200, user_json(*u, groups));
    }
    if (verb == bhttp::verb::delete_) {
      if (email == actor) return error_reply(400, "invalid_request", "You cannot delete your own account");
      if (auto refused = keeps_an_admin(email, "You cannot delete your own account")) return *refused;
      auto groups = st.groups_of(email);
      // What goes with the account is named too: its API keys (never their secrets).
      json::object before = user_json(*u, groups);
      json::array keys;
      for (auto& k : st.list_api_keys(email)) keys.push_back(auth::api_key_json(k));
      before["api_keys"] = std::move(keys);
      st.delete_user(email);
      audit("user.delete", email, {{"before", std::move(before)}});
      return Reply{204, ""};
    }
    return bad_method();
  }

  Reply groups() {
    if (verb == bhttp::verb::get) {
      Reply err;
      auto p = paging(err);
      if (!p) return err;
      int64_t total = 0;
      auto list = st.list_groups(q("q"), p->offset(), p->per_page, &total);
      json::array items;
      for (auto& g : list) items.push_back(group_json(g));
      return ok(200, json::object{{"items", std::move(items)}, {"total", total}, {"page", p->page}, {"per_page", p->per_page}});
    }
    if (verb == bhttp::verb::post) {
      auto* n = field(body, "name");
      if (!n || !n->is_string() || !valid_group_name(n->as_string()))
        return error_reply(400, "invalid_request", kGroupNameRule);
      store::Group g;
      g.name = std::string(n->as_string());
      if (auto other = same_name_but_case(g.name, "")) return error_reply(409, "conflict", "A group named " + *other + " already exists");
      if (auto r = apply_group_fields(g); r.status) return r;
      g.created_at = unix_now();
      if (!st.create_group(g)) return error_reply(409, "conflict", "A group named " + g.name + " already exists");
      audit("group.create", g.name, {{"after", group_json(g)}});
      return ok(201, group_json(g));
    }
    return bad_method();
  }

  // Another group whose name differs from `name` in letter case only (or is it): two such read as one.
  std::optional<std::string> same_name_but_case(const std::string& name, const std::string& except) {
    int64_t total = 0;
    for (auto& g : st.list_groups(name, 0, 500, &total))
      if (g.name != except && iequals(g.name, name)) return g.name;
    return std::nullopt;
  }

  Reply apply_group_fields(store::Group& g) {
    if (auto* d = field(body, "description")) {
      if (!d->is_string() || !clean_text(d->as_string(), 1000, true))
        return error_reply(400, "invalid_request", "description must be text of at most 1000 characters");
      g.description = std::string(d->as_string());
    }
    if (auto* p = field(body, "priority")) {
      if (!p->is_int64() || p->as_int64() < -1000000 || p->as_int64() > 1000000)
        return error_reply(400, "invalid_request", "priority must be a whole number from -1000000 to 1000000");
      g.priority = static_cast<int>(p->as_int64());
    }
    if (auto* t = field(body, "is_tenant")) {
      if (!t->is_bool()) return error_reply(400, "invalid_request", "is_tenant must be true or false");
      g.is_tenant = t->as_bool();
    }
    return Reply{0, ""};
  }

  Reply group(const std::string& name) {
    auto g = st.get_group(name);
    if (!g) return error_reply(404, "not_found", "No group " + name);
    if (verb == bhttp::verb::get) return ok(200, group_json(*g));
    if (verb == bhttp::verb::patch) {
      // Everything is checked before anything is written.
      auto before = *g;
      std::string to = name;
      if (auto* n = field(body, "name"); n && !(n->is_string() && n->as_string() == name)) {
        if (!n->is_string() || !valid_group_name(n->as_string()))
          return error_reply(400, "invalid_request", kGroupNameRule);
        if (name == auth::kAdminGroup) return admin_group_stays();
        to = std::string(n->as_string());
        if (auto other = same_name_but_case(to, name)) return error_reply(409, "conflict", "A group named " + *other + " already exists");
      }
      if (auto r = apply_group_fields(*g); r.status) return r;
      std::vector<store::TenantKey> keys;
      if (to != name) {
        keys = st.list_tenant_keys(name);
        if (!keys.empty() && !box)
          return error_reply(409, "encryption_key_missing", "The group's stored credentials are sealed with its name: set "
                                                            "ENCRYPTION_KEY to rename it");
        std::string unreadable;
        auto resealed = keys.empty() ? std::optional(std::move(keys)) : auth::reseal_for_rename(*box, std::move(keys), to, &unreadable);
        if (!resealed)
          return error_reply(409, "credential_unreadable", "The group's stored credential " + unreadable +
                                                               " cannot be decrypted with ENCRYPTION_KEY or ENCRYPTION_KEY_PREVIOUS, "
                                                               "and renamed it never could be: store it again or delete it first");
        keys = std::move(*resealed);
      }
      st.update_group(*g);
      if (to != name) {
        st.rename_group(name, to, keys);
        g->name = to;
      }
      audit(g->name != name ? "group.rename" : "group.update", name, {{"before", group_json(before)}, {"after", group_json(*g)}});
      return ok(200, group_json(*st.get_group(g->name)));
    }
    if (verb == bhttp::verb::delete_) {
      if (name == auth::kAdminGroup) return admin_group_stays();
      // What goes with the group is named too: its grants, stored credentials (server and slot, never a
      // value) and endpoints; its members are counted (member_count).
      json::object before = group_json(*g);
      json::array grants, credentials, endpoints;
      for (auto& gr : st.list_grants(name)) grants.push_back(grant_json(gr));
      for (auto& k : st.list_tenant_keys(name)) credentials.push_back(json::object{{"server", k.server}, {"slot", k.slot}});
      for (auto& e : st.list_tenant_endpoints(name)) endpoints.push_back(endpoint_json(e));
      before["grants"] = std::move(grants);
      before["credentials"] = std::move(credentials);
      before["endpoints"] = std::move(endpoints);
      st.delete_group(name);
      audit("group.delete", name, {{"before", std::move(before)}});
      return Reply{204, ""};
    }
    return bad_method();
  }

  static Reply admin_group_stays() {
    static_assert(auth::kAdminGroup == "MCP-Admin");  // (spelled out below: GCC 12 warns about the concatenation)
    return error_reply(400, "invalid_request",
                       "MCP-Admin makes its members administrators; it cannot be renamed or deleted (remove members instead)");
  }

  Reply members(const std::string& name) {
    if (!st.get_group(name)) return error_reply(404, "not_found", "No group " + name);
    if (verb == bhttp::verb::get) {
      Reply err;
      auto p = paging(err);
      if (!p) return err;
      int64_t total = 0;
      auto list = st.members(name, p->offset(), p->per_page, &total);
      json::array items;
      for (auto& u : list) items.push_back(user_json(u, groups_of(u.email)));
      return ok(200, json::object{{"items", std::move(items)}, {"total", total}, {"page", p->page}, {"per_page", p->per_page}});
    }
    if (verb == bhttp::verb::post) {
      auto* e = field(body, "emails");
      if (!e || !e->is_array()) return error_reply(400, "invalid_request", "emails must be a list of email addresses");
      if (e->as_array().size() > 20000) return error_reply(400, "invalid_request", "at most 20000 emails at once");
      json::array added, already, invalid;
      std::vector<std::string> wanted;
      std::set<std::string, std::less<>> listed;
      for (auto& v : e->as_array()) {
        if (!v.is_string()) {
          invalid.push_back(v);
          continue;
        }
        auto email = auth::normalize_email(v.as_string());
        if (!auth::plausible_email(email)) invalid.emplace_back(v.as_string());
        else if (listed.insert(email).second) wanted.push_back(std::move(email));
      }
      auto done = st.add_members_creating(name, wanted, "admin");
      // One audit entry for each user created, as when one is added alone (create_listed_user).
      std::vector<store::AuditEntry> entries;
      for (auto& email : done.created) {
        auto u = listed_user(email);
        entries.push_back({0, u.created_at, actor, "user.create", email, gh::to_json(listed_user_created(u))});
      }
      st.append_audits(entries);
      changed = changed || !entries.empty();
      std::set<std::string_view> new_members(done.added.begin(), done.added.end());
      for (auto& email : wanted) (new_members.contains(email) ? added : already).emplace_back(email);
      if (!added.empty()) audit("group.member.add", name, {{"after", json::object{{"added", added}}}});
      return ok(200, json::object{{"added", std::move(added)}, {"already", std::move(already)}, {"invalid", std::move(invalid)}});
    }
    return bad_method();
  }

  Reply member(const std::string& name, const std::string& raw) {
    if (!st.get_group(name)) return error_reply(404, "not_found", "No group " + name);
    auto email = auth::normalize_email(raw);
    if (verb == bhttp::verb::put) {
      if (!auth::plausible_email(email)) return error_reply(400, "invalid_request", "not a valid email address");
      create_listed_user(email);
      bool added = st.add_member(name, email, "manual");
      if (added) audit("group.member.add", name, {{"after", json::object{{"added", json::array{json::value(email)}}}}});
      return ok(added ? 201 : 200, json::object{{"group", name}, {"email", email}, {"added", added}});
    }
    if (verb == bhttp::verb::delete_) {
      if (name == auth::kAdminGroup) {
        auto u = st.get_user(email);
        if (u && !u->is_admin)  // an administrator through this group only
          if (auto refused = keeps_an_admin(email, "You cannot remove your own admin rights")) return *refused;
      }
      if (!st.remove_member(name, email)) return error_reply(404, "not_found", email + " is not a member of " + name);
      audit("group.member.remove", name, {{"before", json::object{{"removed", json::array{json::value(email)}}}}});
      return Reply{204, ""};
    }
    return bad_method();
  }

  Reply apikeys() {
    if (verb == bhttp::verb::get) {  // newest first, a page at a time (thousands of users have thousands of keys)
      Reply err;
      auto p = paging(err);
      if (!p) return err;
      int64_t total = 0;
      auto list = st.list_api_keys(auth::normalize_email(q("user")), p->offset(), p->per_page, &total);
      json::array items;
      for (auto& k : list) items.push_back(auth::api_key_json(k));
      return ok(200, json::object{{"items", std::move(items)}, {"total", total}, {"page", p->page}, {"per_page", p->per_page}});
    }
    if (verb == bhttp::verb::post) {
      auto* e = field(body, "user_email");
      if (!e || !e->is_string()) return error_reply(400, "invalid_request", "user_email is required");
      auto email = auth::normalize_email(e->as_string());
      if (!st.get_user(email)) return error_reply(404, "not_found", "No user " + email + "; create the user first");
      std::string name;
      if (auto* n = field(body, "name")) {
        if (!n->is_string() || !clean_text(n->as_string(), 200))
          return error_reply(400, "invalid_request", "name must be text of at most 200 characters");
        name = std::string(n->as_string());
      }
      // A key made with an expiring key (or a session made from one) expires with it at the latest: a
      // short-lived key cannot mint lasting ones.
      int64_t expires = caller_key_expires;
      if (auto* x = field(body, "expires_at"); x && !x->is_null()) {
        if (!x->is_int64() || x->as_int64() <= unix_now())
          return error_reply(400, "invalid_request", "expires_at must be a future Unix time in seconds");
        if (caller_key_expires && x->as_int64() > caller_key_expires)
          return error_reply(403, "forbidden", "A key made with an API key that expires cannot outlive it: expires_at must be at most " +
                                                   std::to_string(caller_key_expires));
        expires = x->as_int64();
      }
      auto k = auth::make_api_key(email, name, expires, unix_now());
      st.create_api_key(k.record);
      audit("apikey.create", email, {{"after", auth::api_key_json(k.record)}});
      auto out = auth::api_key_json(k.record);
      out["key"] = k.secret;
      return ok(201, out);
    }
    return bad_method();
  }

  Reply apikey(const std::string& id) {
    auto k = st.get_api_key(id);
    if (!k) return error_reply(404, "not_found", "No API key " + id);
    if (verb == bhttp::verb::get) return ok(200, auth::api_key_json(*k));
    if (verb == bhttp::verb::delete_) {
      if (k->revoked_at) return error_reply(409, "conflict", "This key is already revoked");
      st.revoke_api_key(id, unix_now());
      audit("apikey.revoke", k->user_email, {{"before", auth::api_key_json(*k)}});
      return Reply{204, ""};
    }
    return bad_method();
  }

  // ---- grants ----
  static json::value tools_json(const store::Grant& g) {
    if (g.tools_mode.empty()) return nullptr;
    json::array t;
    for (auto& n : g.tools) t.emplace_back(n);
    return json::object{{g.tools_mode, std::move(t)}};
  }
  static json::object grant_json(const store::Grant& g) {
    return {{"group", g.group}, {"server", g.server}, {"tools", tools_json(g)}, {"updated_at", time_or_null(g.updated_at)}};
  }
  Reply grants(const std::string& group) {
    if (!st.get_group(group)) return error_reply(404, "not_found", "No group " + group);
    if (verb != bhttp::verb::get) return bad_method();
    return items_reply(st.list_grants(group), grant_json);
  }
  Reply grant(const std::string& group, const std::string& server) {
    if (!st.get_group(group)) return error_reply(404, "not_found", "No group " + group);
    auto existing = st.list_grants(group);
    auto it = std::find_if(existing.begin(), existing.end(), [&](auto& g) { return g.server == server; });
    if (verb == bhttp::verb::get) {
      if (it == existing.end()) return error_reply(404, "not_found", group + " does not grant " + server);
      return ok(200, grant_json(*it));
    }
    if (verb == bhttp::verb::put) {
      if (!servers.contains(server))
        return error_reply(404, "not_found", "No server " + server + " is configured");
      store::Grant g;
      g.group = group;
      g.server = server;
      g.updated_at = unix_now();
      std::string why;
      auto* t = field(body, "tools");
      if (t && !policy::parse_tools_json(gh::to_json(*t), g.tools_mode, g.tools, &why))
        return error_reply(400, "invalid_request", why);
      st.put_grant(g);
      json::object details{{"after", grant_json(g)}};
      if (it != existing.end()) details["before"] = grant_json(*it);
      audit(it == existing.end() ? "grant.create" : "grant.update", group, std::move(details));
      return ok(it == existing.end() ? 201 : 200, grant_json(g));
    }
    if (verb == bhttp::verb::delete_) {
      if (it == existing.end() || !st.delete_grant(group, server))
        return error_reply(404, "not_found", group + " does not grant " + server);
      audit("grant.delete", group, {{"before", grant_json(*it)}});
      return Reply{204, ""};
    }
    return bad_method();
  }

  // ---- servers ----
  json::object server_json(const std::string& id, const ServerView& v) const {
    json::object o = v.info;
    json::array slots, tools;
    for (auto& x : v.slots) slots.emplace_back(x);
    for (auto& x : v.tools) tools.emplace_back(x);
    o["slots"] = std::move(slots);
    o["tool_names"] = std::move(tools);
    return o;
  }
  Reply server_list() {
    if (verb != bhttp::verb::get) return bad_method();
    json::array items;
    for (auto& [id, v] : servers) items.push_back(server_json(id, v));
    return ok(200, json::object{{"items", std::move(items)}});
  }
  Reply server_one(const std::string& id) {
    auto it = servers.find(id);
    if (it == servers.end()) return error_reply(404, "not_found", "No server " + id);
    if (verb != bhttp::verb::get) return bad_method();
    return ok(200, server_json(id, it->second));
  }

  // ---- tenant credentials (write-only values) ----
  json::object key_json(const store::TenantKey& k) const {
    std::string masked = "(cannot be decrypted: ENCRYPTION_KEY missing or changed)";
    if (box)
      if (auto v = box->open(k.ciphertext, k.key_id, auth::SecretBox::row_aad(k.group, k.server, k.slot)))
        masked = auth::SecretBox::mask(*v);
    return {{"group", k.group}, {"server", k.server}, {"slot", k.slot}, {"value", masked},
            {"key_id", k.key_id}, {"updated_at", time_or_null(k.updated_at)}};
  }
  Reply keys(const std::string& group) {
    if (!st.get_group(group)) return error_reply(404, "not_found", "No group " + group);
    if (verb != bhttp::verb::get) return bad_method();
    return items_reply(st.list_tenant_keys(group), [this](auto& k) { return key_json(k); });
  }
  Reply key(const std::string& group, const std::string& server, const std::string& slot) {
    if (!st.get_group(group)) return error_reply(404, "not_found", "No group " + group);
    auto rows = st.list_tenant_keys(group);
    auto it = std::find_if(rows.begin(), rows.end(), [&](auto& k) { return k.server == server && k.slot == slot; });
    if (verb == bhttp::verb::get) {
      if (it == rows.end()) return error_reply(404, "not_found", "No value stored for " + server + " / " + slot);
      return ok(200, key_json(*it));
    }
    if (verb == bhttp::verb::put) {
      auto sv = servers.find(server);
      if (sv == servers.end()) return error_reply(404, "not_found", "No server " + server + " is configured");
      if (std::find(sv->second.slots.begin(), sv->second.slots.end(), slot) == sv->second.slots.end())
        return error_reply(400, "invalid_request", "Server " + server + " has no credential slot " + slot +
                                                       " (its slots are the ${secret:NAME} names in its env and headers)");
      if (!box) return error_reply(409, "encryption_key_missing",
                                   "Set ENCRYPTION_KEY (32 random bytes, base64) before storing credentials");
      auto* v = field(body, "value");
      if (!v || !v->is_string() || v->as_string().empty() || v->as_string().size() > 16384)
        return error_reply(400, "invalid_request", "value must be a non-empty string (at most 16384 characters)");
      for (unsigned char c : v->as_string())
        if (c < 0x20 || c == 0x7f) return error_reply(400, "invalid_request", "value must not contain control characters");
      store::TenantKey k;
      k.group = group;
      k.server = server;
      k.slot = slot;
      k.key_id = box->key_id();
      k.ciphertext = box->seal(v->as_string(), auth::SecretBox::row_aad(group, server, slot));
      k.updated_at = unix_now();
      st.put_tenant_key(k);
      auto shown = key_json(k);
      // The audit log keeps the mask only, never the value.
      audit(it == rows.end() ? "tenant_key.create" : "tenant_key.replace", group,
            {{"after", json::object{{"server", server}, {"slot", slot}, {"value", shown["value"]}}}});
      return ok(it == rows.end() ? 201 : 200, shown);
    }
    if (verb == bhttp::verb::delete_) {
      if (!st.delete_tenant_key(group, server, slot))
        return error_reply(404, "not_found", "No value stored for " + server + " / " + slot);
      audit("tenant_key.delete", group, {{"before", json::object{{"server", server}, {"slot", slot}}}});
      return Reply{204, ""};
    }
    return bad_method();
  }

  // ---- tenant endpoints ----
  static json::object endpoint_json(const store::TenantEndpoint& e) {
    return {{"group", e.group}, {"server", e.server}, {"url", e.url}, {"updated_at", time_or_null(e.updated_at)}};
  }
  Reply endpoints(const std::string& group) {
    if (!st.get_group(group)) return error_reply(404, "not_found", "No group " + group);
    if (verb != bhttp::verb::get) return bad_method();
    return items_reply(st.list_tenant_endpoints(group), endpoint_json);
  }
  Reply endpoint(const std::string& group, const std::string& server) {
    if (!st.get_group(group)) return error_reply(404, "not_found", "No group " + group);
    auto rows = st.list_tenant_endpoints(group);
    auto it = std::find_if(rows.begin(), rows.end(), [&](auto& e) { return e.server == server; });
    if (verb == bhttp::verb::get) {
      if (it == rows.end()) return error_reply(404, "not_found", group + " has no endpoint for " + server);
      return ok(200, endpoint_json(*it));
    }
    if (verb == bhttp::verb::put) {
      auto sv = servers.find(server);
      if (sv == servers.end()) return error_reply(404, "not_found", "No server " + server + " is configured");
      auto transport = sv->second.info.contains("transport") ? std::string(sv->second.info.at("transport").as_string()) : "";
      if (transport == "stdio")
        return error_reply(400, "invalid_request", "Server " + server + " runs as a local process; only HTTP servers can be routed");
      auto* u = field(body, "url");
      if (!u || !u->is_string()) return error_reply(400, "invalid_request", "url is required");
      if (auto why = check_endpoint_url(u->as_string(), settings->allow_private_endpoints); !why.empty())
        return error_reply(400, "invalid_url", why);
      store::TenantEndpoint e{group, server, std::string(u->as_string()), unix_now()};
      st.put_tenant_endpoint(e);
      json::object details{{"after", endpoint_json(e)}};
      if (it != rows.end()) details["before"] = endpoint_json(*it);
      audit(it == rows.end() ? "endpoint.create" : "endpoint.update", group, std::move(details));
      return ok(it == rows.end() ? 201 : 200, endpoint_json(e));
    }
    if (verb == bhttp::verb::delete_) {
      if (it == rows.end() || !st.delete_tenant_endpoint(group, server))
        return error_reply(404, "not_found", group + " has no endpoint for " + server);
      audit("endpoint.delete", group, {{"before", endpoint_json(*it)}});
      return Reply{204, ""};
    }
    return bad_method();
  }

  // ---- analytics: the portal's charts ----
  static constexpr int64_t kMaxWindow = 366 * 86400;
  static constexpr int64_t kMaxBuckets = 2000;

  Reply analytics() {
    if (verb != bhttp::verb::get) return bad_method();
    store::AnalyticsQuery aq;
    int64_t v = 0;
    aq.until = unix_now();
    aq.since = aq.until - 86400;
    constexpr int64_t kLatest = int64_t(1) << 40;  // (a time far past any row's, small enough to subtract)
    if (auto s = q("since"); !s.empty()) {
      if (!parse_int(s, v) || v < 0 || v > kLatest) return error_reply(400, "invalid_request", "since must be a Unix time");
      aq.since = v;
    }
    if (auto s = q("until"); !s.empty()) {
      if (!parse_int(s, v) || v < 0 || v > kLatest) return error_reply(400, "invalid_request", "until must be a Unix time");
      aq.until = v;
    }
    if (aq.since > aq.until) return error_reply(400, "invalid_request", "since is after until");
    // A report reads every row of its window: at most a year's (the retention is 90 days by default).
    if (aq.until - aq.since > kMaxWindow) return error_reply(400, "invalid_request", "the window is at most 366 days");
    if (auto s = q("bucket"); !s.empty()) {
      if (!parse_int(s, v) || v < 60 || v > 86400 * 31) return error_reply(400, "invalid_request", "bucket must be 60..2678400 seconds");
      if ((aq.until - aq.since) / v > kMaxBuckets)
        return error_reply(400, "invalid_request", "at most " + std::to_string(kMaxBuckets) + " buckets: choose a larger bucket or a shorter window");
      aq.bucket_s = v;
    } else {
      aq.bucket_s = std::max<int64_t>(60, (aq.until - aq.since) / 48 / 60 * 60);  // about 48 points
    }
    if (auto s = q("top"); !s.empty()) {
      if (!parse_int(s, v) || v < 1 || v > 100) return error_reply(400, "invalid_request", "top must be 1..100");
      aq.top = v;
    }
    auto r = st.analytics_report(aq);
    json::array timeline, users, servers, tools;
    for (auto& b : r.timeline) timeline.push_back(json::object{{"start", b.start}, {"requests", b.requests}, {"errors", b.errors}});
    auto counts = [](const std::vector<store::AnalyticsReport::Count>& in, json::array& out, const char* k1, const char* k2) {
      for (auto& c : in) {
        json::object o{{k1, c.key}, {"requests", c.requests}, {"errors", c.errors}, {"avg_ms", std::round(c.avg_ms * 100) / 100}};
        if (k2) o[k2] = c.key2;
        out.push_back(std::move(o));
      }
    };
    counts(r.top_users, users, "user", nullptr);
    counts(r.top_servers, servers, "server", nullptr);
    counts(r.top_tools, tools, "server", "tool");
    auto round2 = [](double x) { return std::round(x * 100) / 100; };
    return ok(200, json::object{
                       {"since", aq.since}, {"until", aq.until}, {"bucket_s", aq.bucket_s},
                       {"requests", r.requests}, {"errors", r.errors},
                       {"error_rate", r.requests ? round2(double(r.errors) / double(r.requests) * 100) / 100 : 0.0},
                       {"latency_ms", json::object{{"p50", round2(r.p50_ms)}, {"p90", round2(r.p90_ms)},
                                                   {"p95", round2(r.p95_ms)}, {"p99", round2(r.p99_ms)}}},
                       {"timeline", std::move(timeline)}, {"top_users", std::move(users)},
                       {"top_servers", std::move(servers)}, {"top_tools", std::move(tools)}});
  }

  Reply audit_list() {
    if (verb != bhttp::verb::get) return bad_method();
    Reply err;
    auto p = paging(err);
    if (!p) return err;
    store::AuditFilter f;
    f.actor = q("actor");
    f.action = q("action");
    f.target = q("target");
    if (auto s = q("since"); !s.empty() && !parse_int(s, f.since)) return error_reply(400, "invalid_request", "since must be a Unix time");
    if (auto s = q("until"); !s.empty() && !parse_int(s, f.until)) return error_reply(400, "invalid_request", "until must be a Unix time");
    f.offset = p->offset();
    f.limit = p->per_page;
    int64_t total = 0;
    json::array items;
    for (auto& e : st.list_audit(f, &total)) {
      boost::system::error_code ec;
      auto details = json::parse(e.details, ec);
      items.push_back(json::object{{"id", e.id}, {"timestamp", e.timestamp}, {"actor", e.actor}, {"action", e.action},
                                   {"target", e.target}, {"details", ec ? json::value(nullptr) : details}});
    }
    return ok(200, json::object{{"items", std::move(items)}, {"total", total}, {"page", p->page}, {"per_page", p->per_page}});
  }
};

}  // namespace

Reply error_reply(int status, std::string_view code, std::string_view message) {
  return Reply{status, gh::to_json(json::object{{"error", json::object{{"code", code}, {"message", message}}}})};
}

Api::Api(store::Store& store, auth::Directory& directory, BlockingPool& pool, const Settings& settings,
         const auth::SecretBox* secrets, std::function<std::map<std::string, ServerView>()> servers)
    : store_(store), directory_(directory), pool_(pool), settings_(settings), secrets_(secrets),
      servers_(std::move(servers)) {}

std::string check_endpoint_url(std::string_view text, bool allow_private) {
  auto u = boost::urls::parse_absolute_uri(text);
  if (!u) return "Not a valid absolute URL";
  if (u->scheme() != "http" && u->scheme() != "https") return "Only http and https URLs can be used";
  if (u->host().empty()) return "The URL has no host";
  if (u->encoded_host().find('%') != boost::core::string_view::npos)
    return "Write the host without percent-encoding";
  if (u->has_userinfo()) return "Put credentials in API Keys, not in the URL";
  if (text.size() > 2048) return "The URL is too long";
  if (allow_private) return {};
  std::string host = u->host();
  for (auto& c : host) c = char(std::tolower(static_cast<unsigned char>(c)));
  while (host.size() > 1 && host.back() == '.') host.pop_back();  // "name." is the same name
  if (host == "metadata.google.internal" || host == "metadata" || host == "metadata.azure.com" ||
      host == "instance-data" || host.ends_with(".internal.metadata"))
    return "Cloud metadata addresses are refused (set ALLOW_LINK_LOCAL_ENDPOINTS=true to allow)";
  std::string literal = host;
  if (!literal.empty() && literal.front() == '[') literal = literal.substr(1, literal.size() - 2);
  // The resolver also reads 2852039166, 0xa9fea9fe, 169.254.43518 and 0251.0376.0251.0376 as IPv4 addresses
  // (inet_aton): only a.b.c.d in plain decimal is checked below, so the other forms are refused.
  auto numeric_form = [](std::string_view h) {
    std::size_t parts = 0;
    for (auto part : split(h, '.')) {
      ++parts;
      if (part.empty()) return false;
      bool hex = part.size() > 1 && part[0] == '0' && part[1] == 'x';
      for (char c : part.substr(hex ? 2 : 0))
        if (!(c >= '0' && c <= '9') && !(hex && c >= 'a' && c <= 'f')) return false;
    }
    return parts >= 1 && parts <= 4;
  };
  auto canonical_v4 = [](std::string_view h) {
    auto parts = split(h, '.');
    if (parts.size() != 4) return false;
    for (auto part : parts)
      if (part.empty() || part.size() > 3 || (part.size() > 1 && part[0] == '0')) return false;
    return true;
  };
  if (numeric_form(literal) && !canonical_v4(literal))
    return "Write an IPv4 address as four decimal numbers (a.b.c.d), without leading zeros";
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(literal, ec);
  if (!ec) {
    // An IPv6 address that carries an IPv4 one (::ffff:a.b.c.d, ::a.b.c.d, NAT64's 64:ff9b::a.b.c.d) is
    // checked as that IPv4 address.
    if (addr.is_v6()) {
      auto b = addr.to_v6().to_bytes();
      static constexpr unsigned char kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
      bool compatible = std::all_of(b.begin(), b.begin() + 12, [](unsigned char x) { return x == 0; }) &&
                        (b[12] | b[13] | b[14]) != 0;  // (not :: nor ::1)
      if (addr.to_v6().is_v4_mapped() || compatible || std::equal(b.begin(), b.begin() + 12, kNat64))
        addr = boost::asio::ip::make_address_v4(boost::asio::ip::address_v4::bytes_type{b[12], b[13], b[14], b[15]});
    }
    if (addr.is_v4()) {
      auto b = addr.to_v4().to_bytes();
      if (b[0] == 169 && b[1] == 254) return "Link-local addresses (169.254.0.0/16, cloud metadata) are refused (set ALLOW_LINK_LOCAL_ENDPOINTS=true to allow)";
      if (b[0] == 100 && b[1] == 100 && b[2] == 100 && b[3] == 200) return "Cloud metadata addresses are refused (set ALLOW_LINK_LOCAL_ENDPOINTS=true to allow)";
      if (b[0] == 0) return "0.0.0.0/8 is not a usable address";
    } else {
      auto b = addr.to_v6().to_bytes();
      if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return "Link-local addresses (fe80::/10) are refused (set ALLOW_LINK_LOCAL_ENDPOINTS=true to allow)";
      if (addr.to_v6() == boost::asio::ip::make_address_v6("fd00:ec2::254")) return "Cloud metadata addresses are refused (set ALLOW_LINK_LOCAL_ENDPOINTS=true to allow)";
      if (addr.to_v6().is_unspecified()) return ":: is not a usable address";
    }
  }
  return {};
}

boost::asio::awaitable<void> Api::handle(http::Exchange& ex, std::string_view path, const auth::Principal& caller) {
  auto target = boost::urls::parse_origin_form(ex.req.target());
  auto call = std::make_shared<Call>(Call{store_, directory_.current(), caller.email(), ex.req.method(), {}, {}, {}, nullptr, nullptr, {}, false});
  call->settings = &settings_;
  call->box = secrets_;
  call->caller_key_expires = caller.key_expires_at;
  if (servers_) call->servers = servers_();  // on the io thread, which owns the hub
  Reply reply;
  std::string extra;  // header lines of the answer
  if (!target) {
    reply = error_reply(400, "invalid_request", "Malformed request target");
  } else {
    bool bad = false;
    bool first = true;
    for (auto s : target->segments()) {
      if (first) {  // "mcp-admin", "api"
        first = false;
        continue;
      }
      if (s == "api" && call->seg.empty() && !bad) {
        bad = true;  // marks that we skipped "api"
        continue;
      }
      call->seg.push_back(std::string(s));
    }
    if (!call->seg.empty() && call->seg.back().empty()) call->seg.pop_back();
    for (auto& s : call->seg)
      if (!clean_text(s, 1024)) reply = error_reply(400, "invalid_request", "A path segment holds a control character or invalid UTF-8, or is too long");
    for (auto p : target->params()) {
      if (!valid_utf8(p.key) || !valid_utf8(p.value))
        reply = error_reply(400, "invalid_request", "A query parameter is not valid UTF-8");
      call->query[std::string(p.key)] = std::string(p.value);
    }
    auto& raw = ex.req.body();
    if (reply.status == 200 && !raw.empty() && ex.req.method() != bhttp::verb::get) {
      boost::system::error_code ec;
      auto v = json::parse(raw, ec);
      if (ec || !v.is_object()) reply = error_reply(400, "invalid_request", "The body must be a JSON object");
      else call->body = std::move(v.as_object());
    }
    // A report reads every row of its window (seconds over millions of rows), one at a time on the store's
    // report connection. The blocking pool has two threads, which sign-ins, the rest of this API, session
    // ends and the store probe share: a second report waiting there for the first would leave them none.
    bool report = call->verb == bhttp::verb::get && call->seg.size() == 1 && call->seg[0] == "analytics";
    if (report && report_running_ && (!reply.status || reply.status == 200)) {
      reply = error_reply(503, "report_busy", "Another analytics report is being prepared; try again in a few seconds");
      extra = "Retry-After: 5\r\n";
    }
    if (!reply.status || reply.status == 200) {
      reply.status = 0;
      struct Running {  // (cleared however the coroutine leaves)
        bool* flag;
        ~Running() {
          if (flag) *flag = false;
        }
      } running{report ? &report_running_ : nullptr};
      if (report) report_running_ = true;
      try {
        auto job = [call] {  // named: see BlockingPool::run
          if (call->verb == bhttp::verb::get) return call->run();
          // A change with its checks and its audit entries: all of it or, when it fails, none of it.
          Reply r;
          if (!call->st.atomically([&] { return (r = call->run()).status < 400; })) call->changed = false;
          return r;
        };
        reply = co_await pool_.run(std::move(job));
        if (call->changed) {
          // Committed: the answer says so even if this instance cannot reload now (the commit announced the
          // change; the next reload here picks it up). A 503 would invite a retry that makes it twice.
          try {
            co_await directory_.changed();
          } catch (const StoreError& e) {
            log::error("management API: change committed, reload failed", {{"request_id", ex.request_id}, {"error", e.what()}});
          }
        }
      } catch (const StoreError& e) {
        log::error("management API store error", {{"request_id", ex.request_id}, {"error", e.what()}});
        reply = error_reply(503, "store_unavailable", "The database is unavailable; try again shortly");
      }
    }
  }
  log::info("admin api", {{"request_id", ex.request_id}, {"actor", caller.email()},
                          {"method", std::string(ex.req.method_string())}, {"path", path}, {"status", reply.status}});
  if (reply.status == 204) {
    http::Response res(bhttp::status::no_content, ex.req.version());
    res.keep_alive(ex.req.keep_alive());
    co_await ex.send(std::move(res));
    co_return;
  }
  co_await ex.send_json(static_cast<bhttp::status>(reply.status), std::move(reply.body), extra);
}

}  // namespace gh::admin
