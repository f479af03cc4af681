#include "core/config.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "core/log.hpp"
#include "core/util.hpp"

extern char** environ;

namespace gh {
namespace json = boost::json;

Environment parse_dotenv(std::string_view text) {
  Environment out;
  int line_no = 0;
  for (auto raw : split(text, '\n')) {
    ++line_no;
    auto line = trim(raw);
    if (line.empty() || line.front() == '#') continue;
    if (line.starts_with("export ")) line = trim(line.substr(7));
    auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0)
      throw ConfigError(".env", "line " + std::to_string(line_no) + " is not KEY=VALUE");
    auto key = trim(line.substr(0, eq));
    auto value = trim(line.substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front())
      value = value.substr(1, value.size() - 2);
    else if (auto hash = value.find(" #"); hash != std::string_view::npos)
      value = trim(value.substr(0, hash));
    out.insert_or_assign(std::string(key), std::string(value));
  }
  return out;
}

Environment read_environment(const std::string& dotenv_path) {
  Environment env;
  if (std::ifstream in(dotenv_path); in) {
    std::stringstream ss;
    ss << in.rdbuf();
    env = parse_dotenv(ss.str());
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
  return id.find("__") == std::string_view::npos;
}

namespace {

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
                                                    "headers", "description", "timeoutMs", "enabled",
                                                    "forwardIdentity", "disabled", "name"};
  std::vector<ServerConfig> out;
  for (const auto& kv : servers->as_object()) {
    std::string id(kv.key());
    std::string where = "mcpServers." + id;
    if (!valid_server_id(id))
      throw ConfigError(where, "server id must be 1-64 of A-Za-z0-9_- , start with a letter or digit, no \"__\"");
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
      s.headers = get_string_map(o, "headers", where, env);
      if (o.contains("command")) throw ConfigError(where + ".command", "a remote server has no command");
    }
    s.description = get_string(o, "description", where, false, env);
    if (auto* t = o.if_contains("timeoutMs")) {
      if (!t->is_int64() || t->as_int64() <= 0 || t->as_int64() > 86'400'000)
        throw ConfigError(where + ".timeoutMs", "must be a positive integer of milliseconds");
      s.timeout_ms = static_cast<int>(t->as_int64());
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
  std::ifstream in(path);
  if (!in) throw ConfigError("MCP_SERVERS_FILE", "cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_servers(ss.str(), env);
}

std::optional<std::string> expand_secrets(std::string_view text,
                                          const std::function<std::optional<std::string>(std::string_view)>& lookup,
                                          std::string* missing) {
  std::string out;
  std::size_t pos = 0;
  while (true) {
    auto start = text.find("${secret:", pos);
    if (start == std::string_view::npos) break;
    auto end = text.find('}', start);
    if (end == std::string_view::npos) break;
    out.append(text.substr(pos, start - pos));
    auto name = text.substr(start + 9, end - start - 9);
    auto value = lookup(name);
    if (!value) {
      if (missing) *missing = std::string(name);
      return std::nullopt;
    }
    out += *value;
    pos = end + 1;
  }
  out.append(text.substr(pos));
  return out;
}

std::vector<std::string> secret_slots(const ServerConfig& server) {
  std::set<std::string> slots;
  auto scan = [&](std::string_view text) {
    std::size_t pos = 0;
    while ((pos = text.find("${secret:", pos)) != std::string_view::npos) {
      auto end = text.find('}', pos);
      if (end == std::string_view::npos) break;
      slots.emplace(text.substr(pos + 9, end - pos - 9));
      pos = end + 1;
    }
  };
  for (const auto& [k, v] : server.env) scan(v);
  for (const auto& [k, v] : server.headers) scan(v);
  for (const auto& a : server.args) scan(a);
  return {slots.begin(), slots.end()};
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
  s.max_sessions = parse_int<std::size_t>(env, "MAX_SESSIONS", s.max_sessions, 1, 10'000'000);
  s.list_page_size = parse_int<std::size_t>(env, "LIST_PAGE_SIZE", s.list_page_size, 1, 100000);
  s.stdio_idle_timeout_s = parse_int<int>(env, "STDIO_IDLE_TIMEOUT_S", s.stdio_idle_timeout_s, 1, 30 * 86400);
  s.shutdown_grace_ms = parse_int<int>(env, "SHUTDOWN_GRACE_MS", s.shutdown_grace_ms, 0, 3'600'000);
  s.log_level = parse_bool(env, "DEBUG", false) ? "debug" : get(env, "LOG_LEVEL", s.log_level);
  log::Level lvl;
  if (!log::parse_level(s.log_level, lvl)) throw ConfigError("LOG_LEVEL", "must be debug, info, warn or error");
  s.port_file = get(env, "GATEHOUSE_PORT_FILE", "");
  return s;
}

}  // namespace gh
