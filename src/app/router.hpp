// The request path after the HTTP server: Host/Origin checks, identity headers, authentication, rate
// limiting, routing to the MCP endpoints, the management API, the identity routes and operations
// endpoints, and — for every request — metrics and an analytics row.
#pragma once
#include <atomic>
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>

#include "admin/api.hpp"
#include "auth/authenticator.hpp"
#include "auth/directory.hpp"
#include "auth/routes.hpp"
#include "core/blocking.hpp"
#include "core/config.hpp"
#include "http/proxy.hpp"
#include "http/server.hpp"
#include "mcp/endpoint.hpp"
#include "mcp/hub.hpp"
#include "mcp/openapi.hpp"
#include "observability/analytics.hpp"
#include "observability/metrics.hpp"
#include "policy/ratelimit.hpp"
#include "store/redis.hpp"

namespace gh::app {

class HostPolicy;
class StaticFiles;

// Rate-limiter counters for /gateway/stats.
struct LimiterStats {
  uint64_t allowed = 0, limited = 0;
  std::map<std::string, uint64_t> limited_by_key;  // bounded; the most-limited callers
};

class Router {
 public:
  struct Parts {
    const Settings& settings;
    mcp::Hub& hub;
    mcp::Endpoint& endpoint;
    mcp::OpenApi& openapi;
    auth::Authenticator& authn;
    auth::Directory& directory;
    admin::Api& admin_api;
    observability::Metrics& metrics;
    observability::AnalyticsWriter* analytics;  // null when ENABLE_API_ANALYTICS=false
    policy::LocalLimiter& local_limiter;
    store::SharedLimiter* shared_limiter;       // null without REDIS_URL
    BlockingPool& pool;
    http::ReverseProxy* proxy;  // null without OPENWEBUI_URL
    const std::atomic<bool>& store_up;  // the store answered its last probe (the housekeeping tick)
  };
  // Whether Gatehouse answers `path` itself; with OPENWEBUI_URL every other path goes to Open WebUI.
  static bool serves(std::string_view path);
  explicit Router(Parts parts);
  ~Router();
  // Called once the port is known.
  void set_port(uint16_t port);
  void set_auth_routes(std::unique_ptr<auth::Routes> routes) { auth_routes_ = std::move(routes); }
  const std::string& public_url() const;

  boost::asio::awaitable<void> handle(http::Exchange& ex);
  observability::Gauges gauges() const;
  const LimiterStats& limiter_stats() const { return limiter_; }

 private:
  struct Note;  // what one request was, for metrics and analytics
  boost::asio::awaitable<void> route(http::Exchange& ex, Note& note);
  // Rate limiting: the key and limit of a request, and the 429 answer when the caller is over it.
  struct RateCheck {
    std::string key;
    policy::RateLimit limit;
    const char* scope = "user";
  };
  RateCheck rate_check(const auth::AuthResult& auth, const Note& note) const;
  boost::asio::awaitable<void> refuse(http::Exchange& ex, const RateCheck& rc, const policy::RateDecision& d, bool mcp);
  boost::json::object stats_json() const;
  // Relays a raw-route request to Open WebUI with X-Forwarded-* and, for a signed-in caller, identity headers.
  boost::asio::awaitable<void> proxy(http::Exchange& ex, const auth::AuthResult& auth);

  Parts p_;
  std::unique_ptr<HostPolicy> host_policy_;
  std::unique_ptr<StaticFiles> static_files_;
  std::unique_ptr<auth::Routes> auth_routes_;
  LimiterStats limiter_;
};

}  // namespace gh::app
