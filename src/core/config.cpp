#include "core/config.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/cgroup.hpp"
#include "core/log.hpp"
#include "core/util.hpp"

#include <unistd.h>

extern char** environ;

namespace gh {
namespace json = boost::json;

Environment parse_dotenv(std::string_view text) {
  Environment out;
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // a byte-order mark (some editors write one)
  int line_no = 0;
  for (auto raw : split(text, '\n')) {
    ++line_no;
    auto line = trim(raw);
    if (line.empty() || line.front() == '#') continue;
    if (line.starts_with("export ")) line = trim(line.substr(7));
    auto eq = line.find('=');
    auto where = "line " + std::to_string(line_no);
    if (eq == std::string_view::npos || eq == 0) throw ConfigError(".env", where + " is not KEY=VALUE");
    auto key = trim(line.substr(0, eq));
    auto value = trim(line.substr(eq + 1));
    // A comment: '#' at the start of the value or after white space (a '#' inside a value, "ops#1", is text).
    auto comment_at = [](std::string_view v) {
      for (std::size_t i = 0; i < v.size(); ++i)
        if (v[i] == '#' && (i == 0 || v[i - 1] == ' ' || v[i - 1] == '\t')) return i;
      return std::string_view::npos;
    };
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);  // quoted whole (the quotes inside stay as they are)
    } else if (!value.empty() && (value.front() == '"' || value.front() == '\'')) {
      // Quoted, then a comment: the last quote followed by nothing but white space and a comment closes it.
      std::size_t close = std::string_view::npos;
      for (auto q = value.rfind(value.front()); q > 0 && q != std::string_view::npos; q = value.rfind(value.front(), q - 1)) {
        auto rest = trim(value.substr(q + 1));
        if (!rest.empty() && rest.front() == '#' && q + 1 < value.size() && (value[q + 1] == ' ' || value[q + 1] == '\t')) {
          close = q;
          break;
        }
      }
      if (close == std::string_view::npos) throw ConfigError(".env", where + ": the quote is not closed");
      value = value.substr(1, close - 1);
    } else if (auto hash = comment_at(value); hash != std::string_view::npos) {
      value = trim(value.substr(0, hash));  // `KEY=   # what it is`: empty, the comment is not the value
    }
    out.insert_or_assign(std::string(key), std::string(value));
  }
  return out;
}

Environment read_environment(const std::string& dotenv_path) {
  Environment env;
  if (auto text = read_file(dotenv_path)) {
    env = parse_dotenv(*text);
  } else if (std::error_code ec; std::filesystem::exists(dotenv_path, ec)) {
    // There but unreadable (another owner, mode 600): starting on the defaults would be a different gateway.
    std::string why = ::access(dotenv_path.c_str(), R_OK) != 0 ? std::strerror(errno) : "not a readable file";
    throw ConfigError(".env", dotenv_path + " exists but cannot be read: " + why);
  }
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env.insert_or_assign(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

std::string_view to_string(Transport t) {
  switch (t) {
    case Transport::stdio: return "stdio";
    case Transport::streamable_http: return "streamable-http";
    case Transport::sse: return "sse";
  }
  return "stdio";
}

bool valid_server_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  if (!std::isalnum(static_cast<unsigned char>(id[0]))) return false;
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  // No "__" and no '_' at the end: the first "__" of a prefixed name `<server>__<tool>` must be the separator
  // (an id "a_" would list its tool "b" as "a___b", read back as server "a", tool "_b").
  return id.find("__") == std::string_view::npos && id.back() != '_';
}

namespace {

constexpr std::string_view kSecretOpen = "${secret:";

// Calls each(at, end) for every ${secret:NAME} in `text` (at: its '$', end: its '}'); false, and nothing after
// visited, at one without its name or closing brace.
template <typename F>
bool scan_secrets(std::string_view text, F&& each) {
  for (auto at = text.find(kSecretOpen); at != std::string_view::npos; at = text.find(kSecretOpen, at)) {
    auto end = text.find('}', at);
    if (end == std::string_view::npos || end == at + kSecretOpen.size()) return false;
    each(at, end);
    at = end + 1;
  }
  return true;
}

// Expands ${env:NAME}; other placeholders are kept for later stages.
std::string expand_env(std::string_view text, const Environment& env, const std::string& where) {
  std::string out;
  std::size_t pos = 0;
  while (true) {
    auto start = text.find("${env:", pos);
    if (start == std::string_view::npos) break;
    auto end = text.find('}', start);
    if (end == std::string_view::npos) throw ConfigError(where, "unterminated ${env:…} placeholder");
    out.append(text.substr(pos, start - pos));
    auto name = text.substr(start + 6, end - start - 6);
    auto it = env.find(name);
    if (it == env.end()) throw ConfigError(where, "environment variable " + std::string(name) + " is not set");
    out += it->second;
    pos = end + 1;
  }
  out.append(text.substr(pos));
  return out;
}

std::string get_string(const json::object& o, std::string_view key, const std::string& where, bool required,
                       const Environment& env) {
  auto* v = o.if_contains(key);
  if (!v) {
    if (required) throw ConfigError(where + "." + std::string(key), "is required");
    return {};
  }
  if (!v->is_string()) throw ConfigError(where + "." + std::string(key), "must be a string");
  return expand_env(v->as_string(), env, where + "." + std::string(key));
}

std::map<std::string, std::string> get_string_map(const json::object& o, std::string_view key, const std::string& where,
                                                  const Environment& env) {
  std::map<std::string, std::string> out;
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) return out;
  if (!v->is_object()) throw ConfigError(where + "." + std::string(key), "must be an object of strings");
  for (const auto& kv : v->as_object()) {
    auto path = where + "." + std::string(key) + "." + std::string(kv.key());
    if (!kv.value().is_string()) throw ConfigError(path, "must be a string");
    out.emplace(std::string(kv.key()), expand_env(kv.value().as_string(), env, path));
  }
  return out;
}

}  // namespace

std::vector<ServerConfig> parse_servers(std::string_view json_text, const Environment& env) {
  json::error_code ec;
  auto doc = json::parse(json_text, ec);
  if (ec) throw ConfigError("MCP_SERVERS_FILE", "not valid JSON: " + ec.message());
  if (!doc.is_object()) throw ConfigError("MCP_SERVERS_FILE", "must be a JSON object with \"mcpServers\"");
  auto* servers = doc.as_object().if_contains("mcpServers");
  if (!servers || !servers->is_object()) throw ConfigError("mcpServers", "must be an object of server entries");
  static const std::set<std::string_view> kKnown = {"command", "args", "env", "cwd", "type", "transport", "url",
                                                    "headers", "description", "timeoutMs", "maxConnections", "enabled",
                                                    "forwardIdentity", "disabled", "name"};
  std::vector<ServerConfig> out;
  for (const auto& kv : servers->as_object()) {
    std::string id(kv.key());
    std::string where = "mcpServers." + id;
    if (!valid_server_id(id))
      throw ConfigError(where, "server id must be 1-64 of A-Za-z0-9_- , start with a letter or digit, no \"__\", not end with \"_\"");
    if (!kv.value().is_object()) throw ConfigError(where, "must be an object");
    const auto& o = kv.value().as_object();
    for (const auto& f : o)
      if (!kKnown.count(f.key())) throw ConfigError(where + "." + std::string(f.key()), "unknown field");
    ServerConfig s;
    s.id = id;
    std::string type = get_string(o, "type", where, false, env);
    if (type.empty()) type = get_string(o, "transport", where, false, env);
    if (type.empty()) type = o.contains("url") ? "streamable-http" : "stdio";
    if (type == "stdio") s.transport = Transport::stdio;
    else if (type == "streamable-http" || type == "streamableHttp" || type == "http") s.transport = Transport::streamable_http;
    else if (type == "sse") s.transport = Transport::sse;
    else throw ConfigError(where + ".type", "must be stdio, streamable-http or sse (got \"" + type + "\")");

    if (s.transport == Transport::stdio) {
      s.command = get_string(o, "command", where, true, env);
      if (s.command.empty()) throw ConfigError(where + ".command", "must not be empty");
      if (auto* a = o.if_contains("args")) {
        if (!a->is_array()) throw ConfigError(where + ".args", "must be an array of strings");
        for (const auto& x : a->as_array()) {
          if (!x.is_string()) throw ConfigError(where + ".args", "must be an array of strings");
          s.args.push_back(expand_env(x.as_string(), env, where + ".args"));
        }
      }
      s.env = get_string_map(o, "env", where, env);
      s.cwd = get_string(o, "cwd", where, false, env);
      if (o.contains("url")) throw ConfigError(where + ".url", "a stdio server has no url");
    } else {
      s.url = get_string(o, "url", where, true, env);
      boost::system::result<boost::urls::url_view> u = boost::urls::parse_uri(s.url);
      if (!u || (u->scheme() != "http" && u->scheme() != "https") || u->host().empty())
        throw ConfigError(where + ".url", "must be an absolute http:// or https:// URL");
      if (u->has_port()) {
        unsigned port = 0;
        auto text = u->port();
        auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), port);
        if (text.empty() || err != std::errc() || end != text.data() + text.size() || port == 0 || port > 65535)
          throw ConfigError(where + ".url", "port must be from 1 to 65535");
      }
      s.headers = get_string_map(o, "headers", where, env);
      if (auto* h = o.if_contains("headers"); h && h->is_object())
        for (const auto& [name, raw] : h->as_object())
          if (raw.is_string() && raw.as_string().find("${secret:") != std::string_view::npos &&
              raw.as_string().find("${env:") == std::string_view::npos)
            s.tenant_headers.insert(std::string(name));
      // Fields the gateway writes itself (the host, the framing, the MCP session): a second one would make the
      // request ambiguous to the upstream (two Host fields, two lengths).
      static constexpr std::string_view kOwn[] = {"host", "content-length", "transfer-encoding", "mcp-session-id",
                                                  "mcp-protocol-version"};
      for (const auto& [name, value] : s.headers)
        if (std::ranges::any_of(kOwn, [&](std::string_view own) { return iequals(name, own); }))
          throw ConfigError(where + ".headers." + name, "is set by the gateway itself");
      if (o.contains("command")) throw ConfigError(where + ".command", "a remote server has no command");
    }
    auto unterminated = [](std::string_view text) { return !scan_secrets(text, [](std::size_t, std::size_t) {}); };
    static constexpr const char* kUnterminated = "${secret:NAME} without its name or closing brace";
    for (const auto& [k, v] : s.env)
      if (unterminated(v)) throw ConfigError(where + ".env." + k, kUnterminated);
    for (const auto& [k, v] : s.headers)
      if (unterminated(v)) throw ConfigError(where + ".headers." + k, kUnterminated);
    for (const auto& a : s.args)
      if (unterminated(a)) throw ConfigError(where + ".args", kUnterminated);
    s.description = get_string(o, "description", where, false, env);
    if (auto* t = o.if_contains("timeoutMs")) {
      if (!t->is_int64() || t->as_int64() <= 0 || t->as_int64() > 86'400'000)
        throw ConfigError(where + ".timeoutMs", "must be a positive integer of milliseconds");
      s.timeout_ms = static_cast<int>(t->as_int64());
    }
    if (auto* m = o.if_contains("maxConnections")) {
      if (s.transport == Transport::stdio) throw ConfigError(where + ".maxConnections", "only for a remote server");
      if (!m->is_int64() || m->as_int64() < 1 || m->as_int64() > 65536)
        throw ConfigError(where + ".maxConnections", "must be an integer from 1 to 65536");
      s.max_connections = static_cast<int>(m->as_int64());
    }
    if (auto* e = o.if_contains("enabled")) {
      if (!e->is_bool()) throw ConfigError(where + ".enabled", "must be true or false");
      s.enabled = e->as_bool();
    }
    if (auto* d = o.if_contains("disabled")) {  // Claude Desktop / mcpo spelling
      if (!d->is_bool()) throw ConfigError(where + ".disabled", "must be true or false");
      s.enabled = s.enabled && !d->as_bool();
    }
    if (auto* f = o.if_contains("forwardIdentity")) {
      if (!f->is_bool()) throw ConfigError(where + ".forwardIdentity", "must be true or false");
      s.forward_identity = f->as_bool();
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<ServerConfig> load_servers_file(const std::string& path, const Environment& env) {
  auto text = read_file(path);
  if (!text) throw ConfigError("MCP_SERVERS_FILE", "cannot read " + path);
  return parse_servers(*text, env);
}

std::optional<std::string> expand_secrets(std::string_view text,
                                          const std::function<std::optional<std::string>(std::string_view)>& lookup,
                                          std::string* missing) {
  std::string out;
  std::size_t pos = 0;
  bool found = true;
  scan_secrets(text, [&](std::size_t at, std::size_t end) {
    if (!found) return;
    auto name = text.substr(at + kSecretOpen.size(), end - at - kSecretOpen.size());
    auto value = lookup(name);
    if (!value) {
      if (missing) *missing = std::string(name);
      found = false;
      return;
    }
    out.append(text.substr(pos, at - pos)).append(*value);
    pos = end + 1;
  });
  if (!found) return std::nullopt;
  out.append(text.substr(pos));
  return out;
}

std::vector<std::string> secret_slots(const ServerConfig& server) {
  std::set<std::string> slots;
  auto scan = [&](std::string_view text) {
    scan_secrets(text, [&](std::size_t at, std::size_t end) {
      slots.emplace(text.substr(at + kSecretOpen.size(), end - at - kSecretOpen.size()));
    });
  };
  for (const auto& [k, v] : server.env) scan(v);
  for (const auto& [k, v] : server.headers) scan(v);
  for (const auto& a : server.args) scan(a);
  return {slots.begin(), slots.end()};
}

std::optional<std::string_view> sqlite_file(std::string_view url) {
  if (!url.starts_with("sqlite:")) return std::nullopt;
  url.remove_prefix(7);
  if (url.starts_with("//")) url.remove_prefix(2);
  return url;
}

namespace {

template <typename T>
T parse_int(const Environment& env, const char* name, T def, T min, T max) {
  auto it = env.find(name);
  if (it == env.end() || it->second.empty()) return def;
  long long v = 0;
  auto s = trim(it->second);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < static_cast<long long>(min) || v > static_cast<long long>(max))
    throw ConfigError(name, "must be an integer between " + std::to_string(min) + " and " + std::to_string(max) +
                                " (got \"" + it->second + "\")");
  return static_cast<T>(v);
}

bool parse_bool(const Environment& env, const char* name, bool def) {
  auto it = env.find(name);
  if (it == env.end() || it->second.empty()) return def;
  auto v = trim(it->second);
  if (iequals(v, "true") || v == "1" || iequals(v, "yes") || iequals(v, "on")) return true;
  if (iequals(v, "false") || v == "0" || iequals(v, "no") || iequals(v, "off")) return false;
  throw ConfigError(name, "must be true or false (got \"" + it->second + "\")");
}

std::string get(const Environment& env, const char* name, std::string def) {
  auto it = env.find(name);
  return it == env.end() || it->second.empty() ? def : it->second;
}

std::vector<std::string> get_list(const Environment& env, const char* name) {
  std::vector<std::string> out;
  std::string value = get(env, name, "");  // split() returns views into it
  for (auto part : split(value, ',')) {
    auto t = trim(part);
    if (!t.empty()) out.emplace_back(t);
  }
  return out;
}

}  // namespace

namespace {
void require_url(const std::string& name, const std::string& value) {
  auto u = boost::urls::parse_uri(value);
  if (!u || (u->scheme() != "http" && u->scheme() != "https") || u->host().empty())
    throw ConfigError(name, "must be an absolute http(s) URL (got \"" + value + "\")");
}

void load_identity_settings(const Environment& env, Settings& s) {
  s.database_url = get(env, "DATABASE_URL", s.database_url);
  if (!(s.database_url.starts_with("sqlite:") || s.database_url.starts_with("postgresql://") ||
        s.database_url.starts_with("postgres://")))
    throw ConfigError("DATABASE_URL", "must start with sqlite://, postgresql:// or postgres://");
  if (auto file = sqlite_file(s.database_url); file && file->empty())
    throw ConfigError("DATABASE_URL", "names no file (sqlite:///path/to/gatehouse.db)");
  s.admin_email = get(env, "ADMIN_EMAIL", s.admin_email);
  if (s.admin_email.find('@') == std::string::npos) throw ConfigError("ADMIN_EMAIL", "must be an email address");
  s.webui_secret_key = get(env, "WEBUI_SECRET_KEY", get(env, "WEBUI_JWT_SECRET_KEY", ""));
  s.openwebui_database_url = get(env, "OPENWEBUI_DATABASE_URL", "");
  if (!s.webui_secret_key.empty() && s.openwebui_database_url.empty())
    throw ConfigError("OPENWEBUI_DATABASE_URL",
                      "is needed with WEBUI_SECRET_KEY: Open WebUI tokens carry only a user id, resolved there");
  s.openwebui_cache_s = parse_int<int>(env, "OPENWEBUI_CACHE_S", s.openwebui_cache_s, 0, 86400);
  s.openwebui_url = get(env, "OPENWEBUI_URL", "");
  if (!s.openwebui_url.empty()) {
    require_url("OPENWEBUI_URL", s.openwebui_url);
    while (!s.openwebui_url.empty() && s.openwebui_url.back() == '/') s.openwebui_url.pop_back();
  }
  s.proxy_connect_timeout_s = parse_int<int>(env, "PROXY_CONNECT_TIMEOUT_S", s.proxy_connect_timeout_s, 1, 3600);
  s.proxy_read_timeout_s = parse_int<int>(env, "PROXY_READ_TIMEOUT_S", s.proxy_read_timeout_s, 1, 86400);
  s.proxy_max_body_bytes = parse_int<std::size_t>(env, "PROXY_MAX_BODY_BYTES", s.proxy_max_body_bytes, 1024,
                                                  std::size_t(1) << 40);

  s.oidc_issuer = get(env, "OIDC_ISSUER", "");
  s.oidc_client_id = get(env, "OIDC_CLIENT_ID", "");
  s.oidc_client_secret = get(env, "OIDC_CLIENT_SECRET", "");
  s.oidc_provider_name = get(env, "OIDC_PROVIDER_NAME", s.oidc_provider_name);
  auto ms_client = get(env, "MICROSOFT_CLIENT_ID", "");
  if (!ms_client.empty()) {
    if (!s.oidc_issuer.empty()) throw ConfigError("MICROSOFT_CLIENT_ID", "set either OIDC_ISSUER or MICROSOFT_*, not both");
    auto tenant = get(env, "MICROSOFT_CLIENT_TENANT_ID", "");
    if (tenant.empty()) throw ConfigError("MICROSOFT_CLIENT_TENANT_ID", "is required with MICROSOFT_CLIENT_ID");
    for (char c : tenant)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.')
        throw ConfigError("MICROSOFT_CLIENT_TENANT_ID", "must be a tenant id, a domain, or common/organizations");
    s.oidc_client_id = ms_client;
    s.oidc_client_secret = get(env, "MICROSOFT_CLIENT_SECRET", "");
    s.oidc_discovery_url = "https://login.microsoftonline.com/" + tenant + "/v2.0/.well-known/openid-configuration";
    bool multi = tenant == "common" || tenant == "organizations";
    s.oidc_issuer = "https://login.microsoftonline.com/" + (multi ? std::string("{tenantid}") : tenant) + "/v2.0";
    if (!env.contains("OIDC_PROVIDER_NAME")) s.oidc_provider_name = "Microsoft";
    s.oidc_redirect_uri = get(env, "MICROSOFT_REDIRECT_URI", "");
  }
  if (!s.oidc_issuer.empty()) {
    if (s.oidc_discovery_url.empty()) {
      require_url("OIDC_ISSUER", s.oidc_issuer);
      auto base = s.oidc_issuer;
      while (!base.empty() && base.back() == '/') base.pop_back();
      s.oidc_discovery_url = base + "/.well-known/openid-configuration";
    }
    if (s.oidc_client_id.empty()) throw ConfigError("OIDC_CLIENT_ID", "is required with OIDC_ISSUER");
  }
  s.oidc_redirect_uri = get(env, "OIDC_REDIRECT_URI", s.oidc_redirect_uri);
  if (!s.oidc_redirect_uri.empty()) require_url("OIDC_REDIRECT_URI", s.oidc_redirect_uri);
  s.oidc_audience = get(env, "OIDC_AUDIENCE", s.oidc_client_id);
  s.oidc_scopes = get(env, "OIDC_SCOPES", s.oidc_scopes);
  if (s.oidc_scopes.find("openid") == std::string::npos) throw ConfigError("OIDC_SCOPES", "must include openid");
  s.oidc_groups_claim = get(env, "OIDC_GROUPS_CLAIM", get(env, "OAUTH_GROUP_CLAIM", s.oidc_groups_claim));
  s.oidc_group_sync = parse_bool(env, "OIDC_GROUP_SYNC", parse_bool(env, "ENABLE_OAUTH_GROUP_MANAGEMENT", false));
  s.oidc_allowed_domains = get_list(env, "OIDC_ALLOWED_DOMAINS");
  for (auto& d : s.oidc_allowed_domains)
    for (auto& c : d) c = char(std::tolower(static_cast<unsigned char>(c)));
  s.oidc_allowed_tenants = get_list(env, "OIDC_ALLOWED_TENANTS");
  if (s.oidc_issuer.find("{tenantid}") != std::string::npos && s.oidc_allowed_tenants.empty())
    throw ConfigError("OIDC_ALLOWED_TENANTS",
                      "is required with a multi-tenant issuer (common/organizations): list the tenant ids to accept");
  s.oidc_admin_roles = get_list(env, "OIDC_ADMIN_ROLES");
  s.oidc_jwks_min_refresh_s = parse_int<int>(env, "OIDC_JWKS_MIN_REFRESH_S", s.oidc_jwks_min_refresh_s, 0, 86400);
  s.oidc_leeway_s = parse_int<int>(env, "OIDC_LEEWAY_S", s.oidc_leeway_s, 0, 600);

  s.session_secret = get(env, "SESSION_SECRET", "");
  if (!s.session_secret.empty() && s.session_secret.size() < 32)
    throw ConfigError("SESSION_SECRET", "must be at least 32 characters");
  s.session_lifetime_s = parse_int<int>(env, "SESSION_LIFETIME_S", s.session_lifetime_s, 60, 90 * 86400);
  s.api_gateway_mode = parse_bool(env, "API_GATEWAY_MODE", false);
  s.trusted_proxies = get_list(env, "TRUSTED_PROXIES");
  for (auto& p : s.trusted_proxies) {
    auto slash = p.find('/');
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(p.substr(0, slash), ec);
    bool ok = !ec;
    if (ok && slash != std::string::npos) {  // a prefix length of 0-32 (IPv4) or 0-128 (IPv6), digits only
      auto bits = std::string_view(p).substr(slash + 1);
      unsigned n = 0;
      auto [end, err] = std::from_chars(bits.data(), bits.data() + bits.size(), n);
      ok = !bits.empty() && err == std::errc() && end == bits.data() + bits.size() && n <= (addr.is_v4() ? 32u : 128u);
    }
    if (!ok) throw ConfigError("TRUSTED_PROXIES", "\"" + p + "\" is not an address or CIDR (address/prefix length)");
  }
  s.web_dir = get(env, "GATEHOUSE_WEB_DIR", s.web_dir);
  s.rate_limit_enabled = parse_bool(env, "RATE_LIMIT_ENABLED", true);
  s.rate_limit_per_minute = parse_int<int64_t>(env, "RATE_LIMIT_PER_MINUTE", s.rate_limit_per_minute, 1, 60'000'000'000);
  s.rate_limit_per_ip = parse_int<int64_t>(env, "RATE_LIMIT_PER_IP", s.rate_limit_per_ip, 1, 60'000'000'000);
  s.rate_limit_burst = parse_int<int64_t>(env, "RATE_LIMIT_BURST", 0, 0, 60'000'000'000);
  for (auto& item : get_list(env, "RATE_LIMIT_GROUPS")) {
    auto eq = item.rfind('=');
    long long n = 0;
    auto value = eq == std::string::npos ? std::string() : item.substr(eq + 1);
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (eq == std::string::npos || eq == 0 || ec != std::errc() || p != value.data() + value.size() || n < 1 ||
        n > 60'000'000'000LL)  // (as the other limits: the limiter's arithmetic stays far from overflow)
      throw ConfigError("RATE_LIMIT_GROUPS", "must be Group=N pairs separated by commas, N from 1 to 60000000000 (got \"" + item + "\")");
    s.rate_limit_groups[item.substr(0, eq)] = n;
  }
  s.rate_limit_proxy = parse_bool(env, "RATE_LIMIT_PROXY", false);
  s.redis_url = get(env, "REDIS_URL", "");
  if (!s.redis_url.empty() && !s.redis_url.starts_with("redis://"))
    throw ConfigError("REDIS_URL", "must be redis://[:password@]host[:port][/db]");
  s.analytics_enabled = parse_bool(env, "ENABLE_API_ANALYTICS", true);
  s.analytics_retention_days = parse_int<int>(env, "ANALYTICS_RETENTION_DAYS", s.analytics_retention_days, 0, 36500);
  s.analytics_writer_cgroup = get(env, "ANALYTICS_WRITER_CGROUP", s.analytics_writer_cgroup);
  if (const auto& c = s.analytics_writer_cgroup; c != "auto" && c != "off" && (!c.starts_with('/') || !cgroup::is_cgroup_dir(c)))
    throw ConfigError("ANALYTICS_WRITER_CGROUP", "must be auto, off or the directory of a cgroup (got \"" + c + "\")");
  s.encryption_key = get(env, "ENCRYPTION_KEY", "");
  s.encryption_key_previous = get_list(env, "ENCRYPTION_KEY_PREVIOUS");
  s.upstream_identity_secret = get(env, "UPSTREAM_IDENTITY_SECRET", "");
  if (!s.upstream_identity_secret.empty() && s.upstream_identity_secret.size() < 32)
    throw ConfigError("UPSTREAM_IDENTITY_SECRET", "must be at least 32 characters");
  s.meta_tools_mode = parse_bool(env, "META_TOOLS_MODE", false);
  s.allow_private_endpoints = parse_bool(env, "ALLOW_LINK_LOCAL_ENDPOINTS", false);
  if (s.api_gateway_mode && s.trusted_proxies.empty())
    throw ConfigError("TRUSTED_PROXIES", "is required with API_GATEWAY_MODE=true (identity headers are trusted only from these)");
}
}  // namespace

Settings load_settings(const Environment& env) {
  Settings s;
  s.host = get(env, "GATEWAY_HOST", s.host);
  boost::system::error_code ec;
  boost::asio::ip::make_address(s.host, ec);
  if (ec) throw ConfigError("GATEWAY_HOST", "must be an IP address (got \"" + s.host + "\")");
  s.port = parse_int<uint16_t>(env, "GATEWAY_PORT", s.port, 0, 65535);
  s.public_url = get(env, "PUBLIC_URL", "");
  if (!s.public_url.empty()) {
    auto u = boost::urls::parse_uri(s.public_url);
    if (!u || (u->scheme() != "http" && u->scheme() != "https") || u->host().empty())
      throw ConfigError("PUBLIC_URL", "must be an absolute http(s) URL (got \"" + s.public_url + "\")");
    while (!s.public_url.empty() && s.public_url.back() == '/') s.public_url.pop_back();
  }
  s.servers_file = get(env, "MCP_SERVERS_FILE", s.servers_file);
  s.max_body_bytes = parse_int<std::size_t>(env, "MAX_BODY_BYTES", s.max_body_bytes, 1024, std::size_t(1) << 30);
  s.upstream_timeout_ms = parse_int<int>(env, "UPSTREAM_TIMEOUT_MS", s.upstream_timeout_ms, 100, 86'400'000);
  s.allowed_origins = get_list(env, "ALLOWED_ORIGINS");
  s.allowed_hosts = get_list(env, "ALLOWED_HOSTS");
  s.session_idle_timeout_s = parse_int<int>(env, "SESSION_IDLE_TIMEOUT_S", s.session_idle_timeout_s, 10, 30 * 86400);
  s.session_max_age_s = parse_int<int>(env, "SESSION_MAX_AGE_S", s.session_max_age_s, 0, 30 * 86400);
  s.max_sessions = parse_int<std::size_t>(env, "MAX_SESSIONS", s.max_sessions, 1, 10'000'000);
  s.keepalive_timeout_s = parse_int<int>(env, "KEEPALIVE_TIMEOUT_S", s.keepalive_timeout_s, 1, 3600);
  s.max_connections = parse_int<std::size_t>(env, "MAX_CONNECTIONS", s.max_connections, 1, 10'000'000);
  s.upstream_memory_mb = parse_int<int64_t>(env, "UPSTREAM_MEMORY_LIMIT_MB", s.upstream_memory_mb, 0, 1'048'576);
  s.list_page_size = parse_int<std::size_t>(env, "LIST_PAGE_SIZE", s.list_page_size, 1, 100000);
  s.list_wait_ms = parse_int<int>(env, "LIST_WAIT_MS", s.list_wait_ms, 0, 600000);
  s.stdio_idle_timeout_s = parse_int<int>(env, "STDIO_IDLE_TIMEOUT_S", s.stdio_idle_timeout_s, 1, 30 * 86400);
  s.shutdown_grace_ms = parse_int<int>(env, "SHUTDOWN_GRACE_MS", s.shutdown_grace_ms, 0, 3'600'000);
  s.log_level = parse_bool(env, "DEBUG", false) ? "debug" : get(env, "LOG_LEVEL", s.log_level);
  log::Level lvl;
  if (!log::parse_level(s.log_level, lvl)) throw ConfigError("LOG_LEVEL", "must be debug, info, warn or error");
  s.port_file = get(env, "GATEHOUSE_PORT_FILE", "");
  load_identity_settings(env, s);
  return s;
}

}  // namespace gh
