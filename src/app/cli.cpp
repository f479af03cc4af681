#include "app/cli.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <map>

#include "app/bootstrap.hpp"
#include "auth/apikeys.hpp"
#include "auth/directory.hpp"
#include "admin/api.hpp"
#include "auth/principal.hpp"
#include "auth/secrets.hpp"

#include "core/util.hpp"
#include "store/db.hpp"

namespace gh::app {

namespace json = boost::json;

namespace {

// What a command prints, held until its transaction has committed and printed after it: a reader slow to
// take it (a pager) must not hold the store's lock, and nothing is shown — an API key above all — that was
// not stored.
std::string g_out;
[[gnu::format(printf, 1, 2)]] void out(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  va_list again;
  va_copy(again, args);
  int n = std::vsnprintf(nullptr, 0, fmt, args);
  va_end(args);
  if (n > 0) {
    auto at = g_out.size();
    g_out.resize(at + std::size_t(n) + 1);
    std::vsnprintf(g_out.data() + at, std::size_t(n) + 1, fmt, again);
    g_out.resize(at + std::size_t(n));
  }
  va_end(again);
}

// "--name value" options and positional arguments.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  std::vector<std::string> flags;
  std::string input;  // `keys set`: the value, read from stdin
  bool has(const std::string& f) const {
    return std::find(flags.begin(), flags.end(), f) != flags.end();
  }
  std::string opt(const std::string& k, std::string def = {}) const {
    auto it = options.find(k);
    return it == options.end() ? def : it->second;
  }
};

// Each command's options (taking a value) and flags: anything else, or an option without its value, is a
// usage error — a misspelt `--alow` or a bare `--allow` must not quietly grant every tool.
struct Usage {
  std::vector<std::string> options, flags;
};
const Usage& usage_of(const std::string& cmd) {
  static const std::map<std::string, Usage> all = {
      {"apikey", {{"user", "name", "expires-days"}, {"admin"}}},
      {"users", {{"q", "limit"}, {}}},
      {"groups", {{"q", "limit", "description", "priority"}, {"tenant"}}},
      {"grants", {{"allow", "deny"}, {}}},
      {"keys", {{}, {}}},
      {"endpoints", {{}, {}}},
  };
  static const Usage none;
  auto it = all.find(cmd);
  return it == all.end() ? none : it->second;
}

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

Args parse(const std::string& cmd, const std::vector<std::string>& in) {
  const auto& u = usage_of(cmd);
  auto known = [](const std::vector<std::string>& v, const std::string& n) { return std::ranges::find(v, n) != v.end(); };
  Args a;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (!in[i].starts_with("--")) {
      a.positional.push_back(in[i]);
      continue;
    }
    auto name = in[i].substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) value = name.substr(eq + 1), name.resize(eq);
    if (known(u.flags, name)) {
      if (value) throw UsageError("--" + name + " takes no value");
      a.flags.push_back(name);
    } else if (known(u.options, name)) {
      if (!value) {
        if (i + 1 >= in.size() || in[i + 1].starts_with("--")) throw UsageError("--" + name + " needs a value");
        value = in[++i];
      }
      if (value->empty()) throw UsageError("--" + name + " needs a value");
      if (a.options.contains(name)) throw UsageError("--" + name + " is given twice");
      a.options[name] = *value;
    } else {
      throw UsageError("unknown option --" + name + " for " + cmd);
    }
  }
  return a;
}

// A whole number from `lo` to `hi`, or a usage error naming the option.
int64_t number(const Args& a, const std::string& name, int64_t def, int64_t lo, int64_t hi) {
  auto text = a.opt(name);
  if (text.empty()) return def;
  int64_t v = 0;
  auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (err != std::errc() || end != text.data() + text.size() || v < lo || v > hi)
    throw UsageError("--" + name + " must be a whole number from " + std::to_string(lo) + " to " + std::to_string(hi));
  return v;
}

void audit(store::Store& st, std::string action, std::string target, json::object details) {
  st.append_audit({0, unix_now(), "cli", std::move(action), std::move(target), gh::to_json(details)});
  st.notify_changed();
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "gatehouse: %s\n", msg.c_str());
  return 1;
}

void print_user(const store::User& u, const std::vector<std::string>& groups) {
  std::string g;
  for (auto& n : groups) g += (g.empty() ? "" : ",") + n;
  out("%-40s %-24s %-6s %-8s %s\n", u.email.c_str(), u.name.c_str(), u.is_admin ? "admin" : "-",
              u.disabled ? "disabled" : "active", g.c_str());
}

store::User ensure_user(store::Store& st, const std::string& email) {
  if (auto u = st.get_user(email)) return *u;
  store::User u;
  u.email = email;
  u.source = "cli";
  u.created_at = unix_now();
  st.create_user(u);
  audit(st, "user.create", email, {{"after", json::object{{"email", email}, {"source", "cli"}}}});
  return *st.get_user(email);
}

int apikey(store::Store& st, const Args& a) {
  auto sub = a.positional.empty() ? "" : a.positional[0];
  if (sub == "create") {
    auto email = auth::normalize_email(a.opt("user"));
    if (!auth::plausible_email(email)) return fail("apikey create: --user EMAIL is required");
    auto u = ensure_user(st, email);
    if (a.has("admin") && !u.is_admin) {
      u.is_admin = true;
      st.update_user(u);
      audit(st, "user.update", email, {{"after", json::object{{"is_admin", true}}}});
    }
    int64_t expires = 0;
    if (auto days = number(a, "expires-days", 0, 1, 36500)) expires = unix_now() + days * 86400;
    auto k = auth::make_api_key(email, a.opt("name", "cli"), expires, unix_now());
    st.create_api_key(k.record);
    audit(st, "apikey.create", email, {{"after", auth::api_key_json(k.record)}});
    std::fprintf(stderr, "API key %s for %s%s (shown once):\n", k.record.id.c_str(), email.c_str(),
                 u.is_admin ? " (admin)" : "");
    out("%s\n", k.secret.c_str());
    return 0;
  }
  if (sub == "list") {
    for (auto& k : st.list_api_keys(auth::normalize_email(a.opt("user"))))
      out("%-18s %-12s %-36s %-16s %s\n", k.id.c_str(), k.prefix.c_str(), k.user_email.c_str(), k.name.c_str(),
                  k.revoked_at ? "revoked" : (k.expires_at && k.expires_at <= unix_now()) ? "expired" : "active");
    return 0;
  }
  if (sub == "revoke" && a.positional.size() == 2) {
    auto k = st.get_api_key(a.positional[1]);
    if (!k) return fail("no API key " + a.positional[1]);
    if (!st.revoke_api_key(k->id, unix_now())) return fail("API key " + k->id + " is already revoked");
    audit(st, "apikey.revoke", k->user_email, {{"before", auth::api_key_json(*k)}});
    out("revoked %s\n", k->id.c_str());
    return 0;
  }
  return fail("usage: gatehouse apikey create --user EMAIL [--admin] [--name N] [--expires-days N] | list [--user EMAIL] | revoke ID"), 2;
}

int users(store::Store& st, const Args& a) {
  auto sub = a.positional.empty() ? "list" : a.positional[0];
  if (sub == "list") {
    int64_t total = 0;
    auto page = st.list_users(a.opt("q"), 0, number(a, "limit", 100, 1, 1'000'000), &total);
    for (auto& u : page) print_user(u, st.groups_of(u.email));
    std::fprintf(stderr, "%zu of %lld users\n", page.size(), static_cast<long long>(total));
    return 0;
  }
  if (a.positional.size() < 2) return fail("usage: gatehouse users list [--q TEXT] | show|disable|enable|delete EMAIL | set-admin EMAIL true|false"), 2;
  auto email = auth::normalize_email(a.positional[1]);
  if (sub == "create") {
    if (!auth::plausible_email(email)) return fail("not an email address: " + email);
    if (st.get_user(email)) return fail("user exists: " + email);
    ensure_user(st, email);
    out("created %s\n", email.c_str());
    return 0;
  }
  auto u = st.get_user(email);
  if (!u) return fail("no user " + email);
  auto before = *u;
  if (sub == "show") {
    print_user(*u, st.groups_of(email));
    return 0;
  }
  if (sub == "disable" || sub == "enable") u->disabled = sub == "disable";
  else if (sub == "set-admin" && a.positional.size() == 3) {
    auto is = [&](std::initializer_list<std::string_view> words) {
      return std::ranges::any_of(words, [&](std::string_view w) { return iequals(a.positional[2], w); });
    };
    if (is({"true", "yes", "on", "1"})) u->is_admin = true;
    else if (is({"false", "no", "off", "0"})) u->is_admin = false;
    else throw UsageError("set-admin EMAIL true|false (not \"" + a.positional[2] + "\")");
  }
  else if (sub == "delete") {
    st.delete_user(email);
    audit(st, "user.delete", email, {{"before", json::object{{"email", email}}}});
    out("deleted %s\n", email.c_str());
    return 0;
  } else {
    return fail("unknown users command: " + sub), 2;
  }
  st.update_user(*u);
  audit(st, "user.update", email, {{"before", json::object{{"disabled", before.disabled}, {"is_admin", before.is_admin}}},
                                   {"after", json::object{{"disabled", u->disabled}, {"is_admin", u->is_admin}}}});
  print_user(*u, st.groups_of(email));
  return 0;
}

std::optional<auth::SecretBox> secret_box(const Settings& settings) {
  if (settings.encryption_key.empty()) return std::nullopt;
  return auth::SecretBox(settings.encryption_key, settings.encryption_key_previous);
}

int groups(store::Store& st, const Args& a, const Settings& settings) {
  auto sub = a.positional.empty() ? "list" : a.positional[0];
  if (sub == "list") {
    int64_t total = 0;
    for (auto& g : st.list_groups(a.opt("q"), 0, number(a, "limit", 500, 1, 1'000'000), &total))
      out("%-32s %6lld members  priority %-5d %s %s\n", g.name.c_str(), static_cast<long long>(g.member_count),
                  g.priority, g.is_tenant ? "tenant" : "-", g.description.c_str());
    return 0;
  }
  if (a.positional.size() < 2)
    return fail("usage: gatehouse groups list | create NAME [--description D] [--priority N] [--tenant] | rename OLD NEW | "
                "delete NAME | members NAME | add-member NAME EMAIL... | remove-member NAME EMAIL..."), 2;
  auto name = a.positional[1];
  // The admin API's rules for names (auth::valid_group_name), and no second name differing in letter case only.
  auto check_new_name = [&](const std::string& n, const std::string& except) -> std::optional<int> {
    if (!auth::valid_group_name(n)) return fail("group " + std::string(auth::kGroupNameRule)), 2;
    int64_t total = 0;
    for (auto& g : st.list_groups(n, 0, 500, &total))
      if (g.name != except && iequals(g.name, n)) return fail("a group named " + g.name + " already exists");
    return std::nullopt;
  };
  if (sub == "create") {
    if (auto rc = check_new_name(name, "")) return *rc;
    store::Group g;
    g.name = name;
    g.description = a.opt("description");
    g.priority = static_cast<int>(number(a, "priority", 0, -1'000'000, 1'000'000));
    g.is_tenant = a.has("tenant");
    g.created_at = unix_now();
    if (!st.create_group(g)) return fail("group exists: " + name);
    audit(st, "group.create", name, {{"after", json::object{{"name", name}, {"priority", g.priority}, {"is_tenant", g.is_tenant}}}});
    out("created %s\n", name.c_str());
    return 0;
  }
  if (!st.get_group(name)) return fail("no group " + name);
  bool admins = name == auth::kAdminGroup;
  if (admins && (sub == "rename" || sub == "delete"))
    return fail(std::string(auth::kAdminGroup) + " gives administrator rights: it is neither renamed nor deleted");
  if (sub == "rename" && a.positional.size() == 3) {
    const auto& to = a.positional[2];
    if (auto rc = check_new_name(to, name)) return *rc;
    auto keys = st.list_tenant_keys(name);  // sealed with the group's name: sealed again for the new one
    auto box = secret_box(settings);
    if (!keys.empty() && !box) return fail("the group's stored credentials are sealed with its name: set ENCRYPTION_KEY to rename it");
    std::string unreadable;
    auto resealed = keys.empty() ? std::optional(std::move(keys)) : auth::reseal_for_rename(*box, std::move(keys), to, &unreadable);
    if (!resealed)
      return fail("the group's stored credential " + unreadable + " cannot be decrypted with ENCRYPTION_KEY or "
                  "ENCRYPTION_KEY_PREVIOUS, and renamed it never could be: store it again or delete it first");
    st.rename_group(name, to, *resealed);
    audit(st, "group.rename", name, {{"after", json::object{{"name", a.positional[2]}}}});
    return 0;
  }
  if (sub == "delete") {
    st.delete_group(name);
    audit(st, "group.delete", name, {});
    return 0;
  }
  if (sub == "members") {
    int64_t total = 0;
    for (auto& u : st.members(name, 0, 100000, &total)) out("%s\n", u.email.c_str());
    return 0;
  }
  if ((sub == "add-member" || sub == "remove-member") && a.positional.size() >= 3) {
    json::array changed;
    for (std::size_t i = 2; i < a.positional.size(); ++i) {
      auto email = auth::normalize_email(a.positional[i]);
      if (!auth::plausible_email(email)) return fail("not an email address: " + email);
      if (sub == "add-member") {
        ensure_user(st, email);
        if (st.add_member(name, email, "manual")) changed.emplace_back(email);
      } else if (st.remove_member(name, email)) {
        changed.emplace_back(email);
      }
    }
    audit(st, sub == "add-member" ? "group.member.add" : "group.member.remove", name,
          {{sub == "add-member" ? "after" : "before", json::object{{sub == "add-member" ? "added" : "removed", changed}}}});
    out("%s: %zu changed\n", name.c_str(), changed.size());
    return 0;
  }
  return fail("unknown groups command: " + sub), 2;
}

int grants(store::Store& st, const Args& a) {
  auto sub = a.positional.empty() ? "list" : a.positional[0];
  if (sub == "list") {
    for (auto& g : st.list_grants(a.positional.size() > 1 ? a.positional[1] : "")) {
      std::string tools = g.tools_mode.empty() ? "all tools" : g.tools_mode + ":";
      for (auto& t : g.tools) tools += " " + t;
      out("%-32s %-24s %s\n", g.group.c_str(), g.server.c_str(), tools.c_str());
    }
    return 0;
  }
  if ((sub == "set" || sub == "remove") && a.positional.size() == 3) {
    const auto& group = a.positional[1];
    const auto& server = a.positional[2];
    if (!st.get_group(group)) return fail("no group " + group);
    if (sub == "remove") {
      if (!st.delete_grant(group, server)) return fail(group + " does not grant " + server);
      audit(st, "grant.delete", group, {{"before", json::object{{"server", server}}}});
      return 0;
    }
    store::Grant g;
    g.group = group;
    g.server = server;
    g.updated_at = unix_now();
    auto list = [](const std::string& csv) {
      std::vector<std::string> out;
      std::string cur;
      for (char c : csv + ",") {
        if (c == ',') {
          if (!cur.empty()) out.push_back(cur);
          cur.clear();
        } else if (c != ' ') {
          cur += c;
        }
      }
      return out;
    };
    if (!a.opt("allow").empty() && !a.opt("deny").empty()) throw UsageError("--allow and --deny: one or the other");
    if (auto allow = a.opt("allow"); !allow.empty()) g.tools_mode = "allow", g.tools = list(allow);
    else if (auto deny = a.opt("deny"); !deny.empty()) g.tools_mode = "deny", g.tools = list(deny);
    if (!g.tools_mode.empty() && g.tools.empty()) throw UsageError("--" + g.tools_mode + " names no tool");
    st.put_grant(g);
    json::array t;
    for (auto& x : g.tools) t.emplace_back(x);
    audit(st, "grant.update", group, {{"after", json::object{{"server", server}, {"tools_mode", g.tools_mode}, {"tools", t}}}});
    std::string which = g.tools_mode.empty() ? "every tool" : g.tools_mode == "allow" ? "only" : "every tool but";
    for (std::size_t i = 0; i < g.tools.size(); ++i) which += (i ? ", " : " ") + g.tools[i];
    out("%s may use %s: %s\n", group.c_str(), server.c_str(), which.c_str());
    return 0;
  }
  return fail("usage: gatehouse grants list [GROUP] | set GROUP SERVER [--allow a,b | --deny a,b] | remove GROUP SERVER"), 2;
}

// The configured server a `keys set`/`endpoints set` names, as the management API checks it; "" when it is
// fine, else why not.
std::string check_server(const Settings& settings, const Environment& env, const std::string& id,
                         const std::string* slot, bool endpoint) {
  std::vector<ServerConfig> servers;
  try {
    servers = load_servers_file(settings.servers_file, env);
  } catch (const ConfigError& e) {
    return std::string("cannot check the server against MCP_SERVERS_FILE: ") + e.what();
  }
  auto it = std::find_if(servers.begin(), servers.end(), [&](auto& s) { return s.id == id; });
  if (it == servers.end()) return "no server " + id + " is configured (" + settings.servers_file + ")";
  if (endpoint && it->transport == Transport::stdio) return "server " + id + " runs as a process: only HTTP servers have endpoints";
  if (slot) {
    auto slots = secret_slots(*it);
    if (std::find(slots.begin(), slots.end(), *slot) == slots.end())
      return "server " + id + " has no credential slot " + *slot + " (its slots are the ${secret:NAME} names in its env and headers)";
  }
  return {};
}

int keys(store::Store& st, const Args& a, const Settings& settings, const Environment& env) {
  auto sub = a.positional.empty() ? "list" : a.positional[0];
  auto box = secret_box(settings);
  if (sub == "list") {
    for (auto& k : st.list_tenant_keys(a.positional.size() > 1 ? a.positional[1] : "")) {
      std::string shown = "(cannot be decrypted)";
      if (box)
        if (auto v = box->open(k.ciphertext, k.key_id, auth::SecretBox::row_aad(k.group, k.server, k.slot)))
          shown = auth::SecretBox::mask(*v);
      out("%-28s %-20s %-24s %-12s key %s\n", k.group.c_str(), k.server.c_str(), k.slot.c_str(), shown.c_str(),
                  k.key_id.c_str());
    }
    return 0;
  }
  if (sub == "set" && a.positional.size() == 4) {
    if (!box) return fail("ENCRYPTION_KEY is not set (32 random bytes, base64: head -c32 /dev/urandom | base64)");
    const std::string& value = a.input;
    if (value.empty()) return fail("keys set: give the value on stdin");
    store::TenantKey k;
    k.group = a.positional[1];
    k.server = a.positional[2];
    k.slot = a.positional[3];
    if (!st.get_group(k.group)) return fail("no group " + k.group);
    if (auto why = check_server(settings, env, k.server, &k.slot, false); !why.empty()) return fail(why);
    k.key_id = box->key_id();
    k.ciphertext = box->seal(value, auth::SecretBox::row_aad(k.group, k.server, k.slot));
    k.updated_at = unix_now();
    st.put_tenant_key(k);
    audit(st, "tenant_key.replace", k.group,
          {{"after", json::object{{"server", k.server}, {"slot", k.slot}, {"value", auth::SecretBox::mask(value)}}}});
    out("stored %s / %s for %s (%s)\n", k.server.c_str(), k.slot.c_str(), k.group.c_str(),
                auth::SecretBox::mask(value).c_str());
    return 0;
  }
  if (sub == "delete" && a.positional.size() == 4) {
    if (!st.delete_tenant_key(a.positional[1], a.positional[2], a.positional[3])) return fail("no such value");
    audit(st, "tenant_key.delete", a.positional[1],
          {{"before", json::object{{"server", a.positional[2]}, {"slot", a.positional[3]}}}});
    return 0;
  }
  if (sub == "rotate") {
    if (!box) return fail("keys rotate: set ENCRYPTION_KEY to the new key and ENCRYPTION_KEY_PREVIOUS to the old one(s)");
    std::vector<store::TenantKey> rows;
    std::size_t unreadable = 0;
    for (auto& k : st.list_tenant_keys("")) {
      if (k.key_id == box->key_id()) continue;
      auto aad = auth::SecretBox::row_aad(k.group, k.server, k.slot);
      auto v = box->open(k.ciphertext, k.key_id, aad);
      if (!v) {
        ++unreadable;
        std::fprintf(stderr, "cannot decrypt %s / %s / %s (key %s): add that key to ENCRYPTION_KEY_PREVIOUS\n",
                     k.group.c_str(), k.server.c_str(), k.slot.c_str(), k.key_id.c_str());
        continue;
      }
      k.ciphertext = box->seal(*v, aad);
      k.key_id = box->key_id();
      rows.push_back(std::move(k));
    }
    if (unreadable) return fail("nothing changed: " + std::to_string(unreadable) + " value(s) cannot be decrypted");
    st.reencrypt_tenant_keys(rows);
    audit(st, "tenant_key.rotate", "*", {{"after", json::object{{"key_id", box->key_id()}, {"values", rows.size()}}}});
    out("re-encrypted %zu value(s) under key %s\n", rows.size(), box->key_id().c_str());
    return 0;
  }
  return fail("usage: gatehouse keys list [GROUP] | set GROUP SERVER SLOT (value on stdin) | delete GROUP SERVER SLOT | rotate"), 2;
}

int endpoints(store::Store& st, const Args& a, const Settings& settings, const Environment& env) {
  auto sub = a.positional.empty() ? "list" : a.positional[0];
  if (sub == "list") {
    for (auto& e : st.list_tenant_endpoints(a.positional.size() > 1 ? a.positional[1] : ""))
      out("%-28s %-20s %s\n", e.group.c_str(), e.server.c_str(), e.url.c_str());
    return 0;
  }
  if (sub == "set" && a.positional.size() == 4) {
    if (auto why = admin::check_endpoint_url(a.positional[3], settings.allow_private_endpoints); !why.empty())
      return fail(why);
    if (!st.get_group(a.positional[1])) return fail("no group " + a.positional[1]);
    if (auto why = check_server(settings, env, a.positional[2], nullptr, true); !why.empty()) return fail(why);
    st.put_tenant_endpoint({a.positional[1], a.positional[2], a.positional[3], unix_now()});
    audit(st, "endpoint.update", a.positional[1],
          {{"after", json::object{{"server", a.positional[2]}, {"url", a.positional[3]}}}});
    return 0;
  }
  if (sub == "delete" && a.positional.size() == 3) {
    if (!st.delete_tenant_endpoint(a.positional[1], a.positional[2])) return fail("no such endpoint");
    audit(st, "endpoint.delete", a.positional[1], {{"before", json::object{{"server", a.positional[2]}}}});
    return 0;
  }
  return fail("usage: gatehouse endpoints list [GROUP] | set GROUP SERVER URL | delete GROUP SERVER"), 2;
}

}  // namespace

bool is_cli_command(const std::string& cmd) {
  return cmd == "migrate" || cmd == "apikey" || cmd == "users" || cmd == "groups" || cmd == "grants" ||
         cmd == "keys" || cmd == "endpoints";
}

void cli_usage() {
  std::fprintf(stderr,
               "  migrate       apply pending database migrations\n"
               "  apikey        create --user EMAIL [--admin] [--name N] [--expires-days N] | list [--user EMAIL] | revoke ID\n"
               "  users         list [--q TEXT] | create|show|disable|enable|delete EMAIL | set-admin EMAIL true|false\n"
               "  groups        list | create NAME [--description D] [--priority N] [--tenant] | rename OLD NEW | delete NAME\n"
               "                | members NAME | add-member NAME EMAIL... | remove-member NAME EMAIL...\n"
               "  grants        list [GROUP] | set GROUP SERVER [--allow a,b | --deny a,b] | remove GROUP SERVER\n"
               "  keys          list [GROUP] | set GROUP SERVER SLOT (value on stdin) | delete GROUP SERVER SLOT | rotate\n"
               "  endpoints     list [GROUP] | set GROUP SERVER URL | delete GROUP SERVER\n");
}

int run_cli(const std::string& cmd, const std::vector<std::string>& argv, const Settings& settings,
            const Environment& env) {
  try {
    // Management commands work on a gateway's store: one that does not exist is not made here (a command run
    // with another DATABASE_URL than the gateway's would print a key for a database no gateway reads).
    auto where = store::sql::redact_url(settings.database_url);
    auto file = sqlite_file(settings.database_url);
    bool sqlite = file.has_value();
    if (cmd != "migrate" && sqlite && *file != ":memory:" && !std::filesystem::exists(*file))
      return fail("no database at " + std::string(*file) + " (DATABASE_URL): set it as the gateway has it, or start the gateway once");
    if (cmd != "migrate" && !sqlite) {
      // PostgreSQL: a database without Gatehouse's tables is not made one here either.
      auto probe = store::Store::open(settings.database_url);
      if (probe->schema_version() == 0)
        return fail("no Gatehouse tables in " + where + " (DATABASE_URL): set it as the gateway has it, or run `gatehouse migrate` first");
    }
    auto st = open_store(settings);
    if (cmd == "migrate") {
      std::printf("schema version %d (%s)\n", st->schema_version(), std::string(st->backend()).c_str());
      return 0;
    }
    auto a = parse(cmd, argv);
    if (cmd == "keys" && !a.positional.empty() && a.positional[0] == "set") {
      // The value comes from stdin, never from the command line (it would sit in shell history and ps); read
      // before the transaction below, which must not wait on a person typing.
      int c;
      while ((c = std::getchar()) != EOF) a.input.push_back(static_cast<char>(c));
      while (!a.input.empty() && (a.input.back() == '\n' || a.input.back() == '\r')) a.input.pop_back();
    }
    int rc = 2;
    // A command's changes with their audit entries: all of them, or none when it fails.
    st->atomically([&] {
      rc = cmd == "apikey"    ? apikey(*st, a)
           : cmd == "users"   ? users(*st, a)
           : cmd == "groups"  ? groups(*st, a, settings)
           : cmd == "grants"  ? grants(*st, a)
           : cmd == "keys"    ? keys(*st, a, settings, env)
           : cmd == "endpoints" ? endpoints(*st, a, settings, env)
                              : 2;
      return rc == 0;
    });
    if (rc == 0 && (std::fputs(g_out.c_str(), stdout) < 0 || std::fflush(stdout) != 0))
      return fail("the change was stored, but its output could not be written" +
                  std::string(cmd == "apikey" ? " (the new key was not shown: revoke it, `gatehouse apikey list`)" : ""));
    return rc;
  } catch (const UsageError& e) {
    return fail(e.what()), 2;
  } catch (const store::StoreError& e) {
    return fail(std::string("store: ") + e.what());
  } catch (const std::invalid_argument&) {
    return fail("a number was expected");
  } catch (const std::out_of_range&) {
    return fail("a number is out of range");
  }
}

}  // namespace gh::app
