// Configuration: settings from the environment (and .env), upstream servers from the servers file.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gh {

// A configuration problem; `setting` names what is wrong (an environment variable or a servers-file path).
struct ConfigError : std::runtime_error {
  ConfigError(std::string setting, const std::string& message)
      : std::runtime_error(setting + ": " + message), setting(std::move(setting)) {}
  std::string setting;
};

using Environment = std::map<std::string, std::string, std::less<>>;

// The process environment, with KEY=VALUE lines of `dotenv_path` (if it exists) underneath it.
Environment read_environment(const std::string& dotenv_path = ".env");
// Parses a .env file's text (KEY=VALUE, optional quotes, # comments); throws ConfigError on a bad line.
Environment parse_dotenv(std::string_view text);

enum class Transport { stdio, streamable_http, sse };
std::string_view to_string(Transport t);

struct ServerConfig {
  std::string id;
  Transport transport = Transport::stdio;
  // stdio
  std::string command;
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  std::string cwd;
  // remote
  std::string url;
  std::map<std::string, std::string> headers;
  // The headers a tenant's own endpoint gets: those that name a ${secret:} slot (filled with the tenant's
  // values) and no ${env:}. The rest, literal or from the environment, are the gateway's, for its own URL.
  std::set<std::string> tenant_headers;
  // gatehouse fields
  std::string description;
  int timeout_ms = 0;  // 0 = the gateway default
  int max_connections = 512;  // remote: connections to it at once (maxConnections)
  bool enabled = true;
  bool forward_identity = false;

  bool operator==(const ServerConfig&) const = default;
};

bool valid_server_id(std::string_view id);

// Parses a servers file ({"mcpServers": {...}}); `${env:NAME}` is expanded from `env`.
// Throws ConfigError naming the offending entry.
std::vector<ServerConfig> parse_servers(std::string_view json_text, const Environment& env);
std::vector<ServerConfig> load_servers_file(const std::string& path, const Environment& env);

// Replaces ${secret:NAME} placeholders using `lookup`; returns nullopt and sets `missing` when a slot has no value.
std::optional<std::string> expand_secrets(std::string_view text,
                                          const std::function<std::optional<std::string>(std::string_view)>& lookup,
                                          std::string* missing = nullptr);
// The ${secret:NAME} slot names used anywhere in a server's env and headers.
std::vector<std::string> secret_slots(const ServerConfig& server);

// The file a "sqlite:" DATABASE_URL names ("sqlite://./data/g.db" → "./data/g.db", "sqlite:///abs/g.db" →
// "/abs/g.db", "sqlite::memory:" → ":memory:"); nullopt for any other URL.
std::optional<std::string_view> sqlite_file(std::string_view url);

struct Settings {
  std::string host = "127.0.0.1";
  uint16_t port = 8085;
  std::string public_url;  // derived from host/port when unset
  std::string servers_file = "config/servers.json";
  std::size_t max_body_bytes = 4 * 1024 * 1024;
  int upstream_timeout_ms = 60000;
  std::vector<std::string> allowed_origins;
  std::vector<std::string> allowed_hosts;
  int session_idle_timeout_s = 1800;
  // SESSION_MAX_AGE_S: how long after it was opened any instance may open a session again from its id
  // (mcp/session_ids.hpp); 0: random ids, a session lives only where it was opened.
  int session_max_age_s = 86400;
  std::size_t max_sessions = 100000;
  int keepalive_timeout_s = 75;  // KEEPALIVE_TIMEOUT_S: an idle client connection's wait for its next request
  std::size_t max_connections = 0;  // open client connections; 0: what the open-file limit allows (fdlimit)
  int64_t upstream_memory_mb = -1;  // upstream answers held while being read, across calls; 0: no limit; -1: auto
  std::size_t list_page_size = 500;  // items per tools/prompts/resources list page
  int list_wait_ms = 10000;  // LIST_WAIT_MS: how long an aggregate */list waits for slow servers (0 = for all)
  int stdio_idle_timeout_s = 600;
  int shutdown_grace_ms = 10000;
  std::string log_level = "info";
  std::string port_file;  // when set, the bound port is written there (for scripts)

  // Identity (see docs/identity.md).
  std::string database_url = "sqlite://./data/gatehouse.db";
  std::string admin_email = "admin@localhost";
  std::string webui_secret_key;        // WEBUI_SECRET_KEY (or the legacy WEBUI_JWT_SECRET_KEY)
  std::string openwebui_database_url;  // OPENWEBUI_DATABASE_URL
  int openwebui_cache_s = 60;          // how long an Open WebUI user lookup is reused
  // Reverse proxy (see docs/openwebui.md): every path Gatehouse does not serve goes to OPENWEBUI_URL.
  std::string openwebui_url;                            // OPENWEBUI_URL; empty = unknown paths answer 404
  int proxy_connect_timeout_s = 10;                     // PROXY_CONNECT_TIMEOUT_S: connect + response head
  int proxy_read_timeout_s = 300;                       // PROXY_READ_TIMEOUT_S: idle time between bytes
  std::size_t proxy_max_body_bytes = 100 * 1024 * 1024; // PROXY_MAX_BODY_BYTES: largest upload passed on
  std::string oidc_issuer, oidc_client_id, oidc_client_secret, oidc_redirect_uri, oidc_audience;
  std::string oidc_discovery_url;      // derived from the issuer unless set (Entra: from the tenant)
  std::string oidc_scopes = "openid email profile";
  std::string oidc_groups_claim = "groups";
  std::string oidc_provider_name = "your identity provider";
  bool oidc_group_sync = false;
  std::vector<std::string> oidc_allowed_domains, oidc_allowed_tenants, oidc_admin_roles;
  int oidc_jwks_min_refresh_s = 60;    // an unknown kid refetches the key set at most this often
  int oidc_leeway_s = 60;
  std::string session_secret;          // SESSION_SECRET; else one shared secret kept in the store
  int session_lifetime_s = 8 * 3600;
  bool api_gateway_mode = false;
  std::vector<std::string> trusted_proxies;  // CIDRs or addresses

  std::string web_dir = "web";  // GATEHOUSE_WEB_DIR: the admin portal's files

  // Traffic control and visibility (see docs/operations.md).
  bool rate_limit_enabled = true;
  int64_t rate_limit_per_minute = 100;   // per authenticated user
  int64_t rate_limit_per_ip = 1000;      // per client IP, for requests without a user
  int64_t rate_limit_burst = 0;          // 0 = the per-minute value
  std::map<std::string, int64_t> rate_limit_groups;  // RATE_LIMIT_GROUPS="Group=N,…": a member's limit (highest wins)
  bool rate_limit_proxy = false;         // RATE_LIMIT_PROXY: count signed-in users' reverse-proxied requests too
  std::string redis_url;                 // REDIS_URL: one limit shared by every instance
  bool analytics_enabled = true;         // ENABLE_API_ANALYTICS
  int analytics_retention_days = 90;     // ANALYTICS_RETENTION_DAYS (0 = keep)
  std::string analytics_writer_cgroup = "auto";  // ANALYTICS_WRITER_CGROUP: auto, off or a cgroup directory

  // Multi-tenancy (see docs/tenancy.md).
  std::string encryption_key;                        // ENCRYPTION_KEY: base64 of 32 bytes
  std::vector<std::string> encryption_key_previous;  // ENCRYPTION_KEY_PREVIOUS: older keys, still readable
  std::string upstream_identity_secret;              // UPSTREAM_IDENTITY_SECRET: signs X-Gateway-Token
  bool meta_tools_mode = false;                      // META_TOOLS_MODE
  bool allow_private_endpoints = false;              // ALLOW_LINK_LOCAL_ENDPOINTS: tenant URLs on link-local/metadata addresses
  bool oidc_enabled() const { return !oidc_issuer.empty() || !oidc_discovery_url.empty(); }
};

// Reads and validates every known setting; throws ConfigError naming the first bad one.
Settings load_settings(const Environment& env);

}  // namespace gh
