#include "app/router.hpp"

#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <chrono>

#include "app/access.hpp"
#include "app/static_files.hpp"
#include "auth/jwt.hpp"
#include "core/budget.hpp"
#include "core/log.hpp"
#include "core/util.hpp"
#include "jsonrpc/message.hpp"
#include "policy/policy.hpp"
#include "upstream/process.hpp"

namespace gh::app {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

// Host and Origin checks (DNS rebinding protection).
class HostPolicy {
 public:
  HostPolicy(const Settings& s, uint16_t port) {
    hosts_ = {"localhost", "127.0.0.1", "[::1]", "::1"};
    for (auto& h : s.allowed_hosts) {
      if (h == "*") any_host_ = true;
      hosts_.push_back(h);
    }
    origins_ = s.allowed_origins;
    for (auto& o : origins_)
      if (o == "*") any_origin_ = true;
    public_url_ = s.public_url.empty() ? "http://" + s.host + ":" + std::to_string(port) : s.public_url;
    if (auto u = boost::urls::parse_uri(public_url_)) {
      std::string h(u->encoded_host_and_port());
      hosts_.push_back(std::string(u->encoded_host()));
      origins_.push_back(std::string(u->scheme()) + "://" + h);
    }
  }
  bool host_ok(std::string_view host) const {
    if (host.empty()) return any_host_;
    // A name (letters, digits, '-', '.', '_') or an IPv6 literal, then nothing or ':' and digits: anything else
    // ("name:@evil.example", "name:x/../evil") is passed on as Host and X-Forwarded-Host, where an application
    // that builds its URLs from it would take another host.
    std::string_view name = host, port;
    if (name.front() == '[') {  // an IPv6 literal, then nothing or a port
      auto end = name.find(']');
      if (end == std::string_view::npos || (end + 1 < name.size() && name[end + 1] != ':')) return false;
      port = name.substr(std::min(end + 2, name.size()));
      name = name.substr(0, end + 1);
      if (name.find_first_not_of("[]0123456789abcdefABCDEF:.") != std::string_view::npos) return false;
    } else {
      if (auto colon = name.rfind(':'); colon != std::string_view::npos) {
        port = name.substr(colon + 1);
        name = name.substr(0, colon);
      }
      if (name.empty() || std::any_of(name.begin(), name.end(), [](char c) {
            return !(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_');
          }))
        return false;
    }
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) return false;
    if (any_host_) return true;
    for (auto& h : hosts_)
      if (iequals(h, name)) return true;
    return false;
  }
  bool origin_ok(std::string_view origin) const {
    if (origin.empty() || any_origin_) return true;
    for (auto& o : origins_)
      if (iequals(o, origin)) return true;
    // same-origin requests from a loopback page (http://localhost:<any port>) are fine
    auto u = boost::urls::parse_uri(origin);
    if (!u) return false;
    auto host = u->encoded_host();
    return host == "localhost" || host == "127.0.0.1" || host == "[::1]";
  }
  const std::string& public_url() const { return public_url_; }

 private:
  std::vector<std::string> hosts_, origins_;
  bool any_host_ = false, any_origin_ = false;
  std::string public_url_;
};

namespace {

// What an MCP POST body costs the caller's rate limit: one per message, except answers (to the server's
// sampling/elicitation/roots requests) and cancellations, which are free up to 16 in a body — refused, a call
// would wait for an answer the client gave, or could not be stopped. Other notifications cost one: some make
// the gateway write to upstreams (roots/list_changed). nullopt when it is not JSON-RPC. A parse: only for
// batches and for a single message about to be refused (rare paths).
std::optional<std::size_t> cost_of(std::string_view body) {
  auto parsed = jsonrpc::parse_body(body);
  if (parsed.error_code) return std::nullopt;
  std::size_t free = 0;
  for (auto& m : parsed.messages) {
    auto* o = m.if_object();
    if (!o) continue;
    bool answer = !o->contains("method") && o->contains("id");
    if (answer || (!o->contains("id") && jsonrpc::method_of(*o) == "notifications/cancelled")) ++free;
  }
  return parsed.messages.size() - free + (free > 16 ? free - 16 : 0);
}

bool is_batch(std::string_view body) {
  auto at = body.find_first_not_of(" \t\r\n");
  return at != std::string_view::npos && body[at] == '[';
}

json::object error_body(std::string_view code, std::string_view message) {
  return json::object{{"error", json::object{{"code", code}, {"message", message}}}};
}

// RFC 9728 §5.1: where a client finds how to get a token for this resource.
std::string www_authenticate(const auth::Routes& routes) {
  return "WWW-Authenticate: Bearer resource_metadata=\"" + routes.resource_metadata_url() + "\"\r\n";
}

int64_t now_us() { return policy::LocalLimiter::clock_us(); }

// The metrics label of a request's route, from its path alone (and whether it is relayed to Open WebUI): known
// before any check, so that a request refused by one (Host, Origin) is counted under the route it was for.
const char* route_of(std::string_view path, bool proxied) {
  if ((path == "/mcp-admin" || path.starts_with("/mcp-admin/")) && !path.starts_with("/mcp-admin/api/") &&
      path != "/mcp-admin/api")
    return "portal";
  if (path == "/metrics") return "metrics";
  if (proxied) return "proxy";
  if (path == "/mcp" || path == "/mcp/") return "mcp";
  if (path.starts_with("/mcp/")) return "mcp_server";
  return path == "/servers"                    ? "servers"
         : path.starts_with("/openapi/")       ? "openapi"
         : path.starts_with("/mcp-admin/api")  ? "admin_api"
         : path == "/gateway/stats"            ? "stats"
         : auth::Routes::owns(path)            ? "auth"
                                               : "not_found";
}

}  // namespace

struct Router::Note {
  const char* route = "not_found";
  std::string email;
  std::string client_ip;  // the peer, or behind TRUSTED_PROXIES the client X-Forwarded-For names
};

Router::Router(Parts parts)
    : p_(parts), static_files_(std::make_unique<StaticFiles>(p_.settings.web_dir, p_.pool)) {}
Router::~Router() = default;

bool Router::serves(std::string_view path) {
  return path.starts_with("/mcp") || path == "/servers" || path.starts_with("/openapi/") ||
         path.starts_with("/gateway/") || path == "/metrics" || auth::Routes::owns(path);
}

void Router::set_port(uint16_t port) { host_policy_ = std::make_unique<HostPolicy>(p_.settings, port); }

const std::string& Router::public_url() const { return host_policy_->public_url(); }

net::awaitable<void> Router::handle(http::Exchange& ex) {
  auto started = Clock::now();
  Note note;
  co_await route(ex, note);
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  // No answer was sent: the client left first (a call it gave up on). Counted as nginx logs it, 499 ("client
  // closed request"), not as a status 0 no one can read.
  int status = ex.status() ? ex.status() : 499;
  p_.metrics.request(note.route, status, seconds);
  // Health checks and scrapes are not user traffic.
  if (p_.analytics && std::string_view(note.route) != "health" && std::string_view(note.route) != "metrics") {
    store::AnalyticsRow row;  // views: record() copies them
    row.timestamp = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    row.user_email = note.email;
    row.method = ex.req.method_string();
    auto target = std::string_view(ex.req.target());
    row.endpoint = target.substr(0, std::min<std::size_t>(target.find('?'), 512));
    row.status = status;
    row.response_ms = seconds * 1000.0;
    row.user_agent = ex.req[bhttp::field::user_agent].substr(0, 256);
    row.client_ip = note.client_ip.empty() ? ex.client_ip : note.client_ip;
    row.server = ex.mcp_server;
    row.tool = ex.mcp_tool;
    row.request_id = ex.request_id;
    row.bytes_in = static_cast<int64_t>(ex.wire() ? ex.wire()->bytes_in : ex.req.body().size());
    row.bytes_out = static_cast<int64_t>(ex.bytes_out());
    p_.analytics->record(row);
  }
}

// The per-IP limit's key: the address, or for IPv6 its /64 (one host is usually given a whole /64, and could
// otherwise take a fresh allowance with every address in it).
static std::string ip_limit_key(std::string_view ip) {
  if (ip.find(':') == std::string_view::npos) return std::string(ip);
  boost::system::error_code ec;
  auto a = net::ip::make_address(std::string(ip), ec);
  if (ec || !a.is_v6() || a.to_v6().is_v4_mapped()) return std::string(ip);
  auto b = a.to_v6().to_bytes();
  std::fill(b.begin() + 8, b.end(), 0);
  return net::ip::address_v6(b).to_string() + "/64";
}

Router::RateCheck Router::rate_check(const auth::AuthResult& auth, const Note& note) const {
  RateCheck rc;
  if (auth.principal.authenticated()) {
    rc.scope = "user";
    rc.key = "u:" + auth.principal.email();
    // A member of groups with their own limit gets the highest of those; everyone else the default.
    int64_t override_limit = 0;
    for (auto& g : auth.principal.identity->groups)
      if (auto it = p_.settings.rate_limit_groups.find(g); it != p_.settings.rate_limit_groups.end())
        override_limit = std::max(override_limit, it->second);
    rc.limit.per_minute = override_limit ? override_limit : p_.settings.rate_limit_per_minute;
  } else {
    rc.scope = "ip";
    rc.key = "ip:" + ip_limit_key(note.client_ip);
    rc.limit.per_minute = p_.settings.rate_limit_per_ip;
  }
  rc.limit.burst = p_.settings.rate_limit_burst > 0 ? p_.settings.rate_limit_burst : rc.limit.per_minute;
  return rc;
}

net::awaitable<void> Router::refuse(http::Exchange& ex, const RateCheck& rc, const policy::RateDecision& d, bool mcp) {
  ++limiter_.limited;
  // Who is refused most, for /gateway/stats: at most 10,000 keys; when full, the less refused half goes (a
  // full table that took no new keys hid every later abuser until a restart).
  auto& by_key = limiter_.limited_by_key;
  if (by_key.size() >= 10000 && !by_key.contains(rc.key)) {
    std::vector<uint64_t> counts;
    counts.reserve(by_key.size());
    for (auto& [k, n] : by_key) counts.push_back(n);
    std::nth_element(counts.begin(), counts.begin() + counts.size() / 2, counts.end());
    auto median = counts[counts.size() / 2];
    std::erase_if(by_key, [&](auto& kv) { return kv.second <= median; });
  }
  ++by_key[rc.key];
  p_.metrics.rate_limited(rc.scope);
  log::info("rate limited", {{"request_id", ex.request_id}, {"key", rc.key}, {"limit_per_minute", rc.limit.per_minute},
                             {"retry_after_s", d.retry_after_s}});
  std::string headers = "Retry-After: " + std::to_string(std::max<int64_t>(d.retry_after_s, 1)) + "\r\n" +
                        "RateLimit-Limit: " + std::to_string(d.limit) + "\r\n" +
                        "RateLimit-Remaining: 0\r\n" + "RateLimit-Reset: " + std::to_string(d.reset_s) + "\r\n";
  std::string message =
      rc.limit.cost > d.limit
          ? "A batch of " + std::to_string(rc.limit.cost) + " requests is more than this rate limit allows at once (" +
                std::to_string(d.limit) + "): send fewer per batch"
          : "Rate limit exceeded: " + std::to_string(rc.limit.per_minute) + " requests per minute; retry in " +
                std::to_string(std::max<int64_t>(d.retry_after_s, 1)) + " s";
  // An MCP client matches the error to its request by id: take it from a single-request body (rare path) of a
  // usual size — a refusal must stay cheap, and a flood of 4 MB bodies would otherwise cost a parse each.
  json::value id = nullptr;
  if (mcp && ex.req.body().size() <= 64 * 1024) {
    auto parsed = jsonrpc::parse_body(ex.req.body());
    if (!parsed.error_code && !parsed.batch && parsed.messages.size() == 1 && parsed.messages[0].is_object() &&
        parsed.messages[0].as_object().contains("method"))  // (a response's id is the server's request's)
      if (auto* v = parsed.messages[0].as_object().if_contains("id"); v && jsonrpc::valid_id(*v)) id = *v;
  }
  std::string body = mcp ? jsonrpc::error_text(id, -32029, message)
                         : gh::to_json(error_body("rate_limited", message));
  co_await ex.send_json(bhttp::status::too_many_requests, std::move(body), headers);
}

json::object Router::stats_json() const {
  std::vector<std::pair<std::string, uint64_t>> top(limiter_.limited_by_key.begin(), limiter_.limited_by_key.end());
  std::sort(top.begin(), top.end(), [](auto& a, auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); });
  if (top.size() > 10) top.resize(10);
  json::array most;
  for (auto& [k, n] : top) most.push_back(json::object{{"key", k}, {"limited", n}});
  json::object rl{{"enabled", p_.settings.rate_limit_enabled},
                  {"backend", p_.shared_limiter ? "redis" : "local"},
                  {"per_minute", p_.settings.rate_limit_per_minute},
                  {"per_ip", p_.settings.rate_limit_per_ip},
                  {"keys_tracked", p_.local_limiter.keys()},
                  {"allowed", limiter_.allowed},
                  {"limited", limiter_.limited},
                  {"most_limited", std::move(most)}};
  if (p_.shared_limiter) {
    rl["redis_up"] = p_.shared_limiter->stats().redis_up;
    rl["fallbacks"] = p_.shared_limiter->stats().fallbacks;
  }
  json::array upstreams;
  for (auto& [id, srv] : p_.hub.servers()) upstreams.push_back(p_.hub.server_json(*srv));
  json::object out{{"rate_limiter", std::move(rl)}, {"upstreams", std::move(upstreams)},
                   {"sessions", p_.hub.session_count()}, {"requests", p_.metrics.requests_total()}};
  if (p_.analytics) {
    auto& a = p_.analytics->stats();
    out["analytics"] = json::object{{"recorded", a.recorded}, {"written", a.written}, {"queued", a.queued},
                                    {"dropped", a.dropped}, {"failed_batches", a.failed_batches},
                                    {"catch_up_batches", a.catch_up_batches}, {"checkpoints", a.checkpoints},
                                    {"cgroup", a.cgroup.empty() ? json::value(nullptr) : json::value(a.cgroup)}};
  }
  return out;
}

observability::Gauges Router::gauges() const {
  observability::Gauges g;
  g.sessions = p_.hub.session_count();
  g.sessions_resumed = p_.hub.sessions_resumed();
  g.upstream_processes = upstream::live_child_groups();
  auto conns = http::connection_counts();
  g.http_connections = conns.open;
  g.http_connections_refused = conns.refused;
  g.upstream_answer_bytes = budget::counts().held;
  g.upstream_answers_refused = budget::counts().refused;
  for (auto& [id, srv] : p_.hub.servers()) g.upstream_connections += (srv->shared ? 1 : 0) + srv->tenants.size();
  if (p_.analytics) {
    auto& a = p_.analytics->stats();
    g.analytics_queue = a.queued;
    g.analytics_dropped = a.dropped;
    g.analytics_written = a.written;
    g.analytics_failed_batches = a.failed_batches;
    g.analytics_catch_up_batches = a.catch_up_batches;
    g.analytics_checkpoints = a.checkpoints;
  }
  g.rate_limit_keys = p_.local_limiter.keys();
  if (p_.shared_limiter) {
    g.rate_limit_fallbacks = p_.shared_limiter->stats().fallbacks;
    g.redis_up = p_.shared_limiter->stats().redis_up ? 1 : 0;
  }
  g.store_up = p_.store_up ? 1 : 0;
  g.users = p_.directory.current()->user_count();
  return g;
}

// A Cookie header without Gatehouse's cookies (gatehouse_session, gatehouse_login_*); the other pairs as sent
// (values with commas included: browsers send them, RFC 6265 §4.1.1 notwithstanding).
static std::string without_own_cookies(std::string_view header) {
  std::string out;
  std::size_t at = 0;
  while (at <= header.size()) {
    auto end = header.find(';', at);
    if (end == std::string_view::npos) end = header.size();
    auto pair = trim(header.substr(at, end - at));
    at = end + 1;
    auto name = trim(pair.substr(0, pair.find('=')));
    if (pair.empty() || name == auth::kSessionCookie || name.starts_with(auth::kLoginCookie)) continue;
    if (!out.empty()) out += "; ";
    out += pair;
  }
  return out;
}

net::awaitable<void> Router::proxy(http::Exchange& ex, const auth::AuthResult& auth) {
  // X-Forwarded-*: a trusted proxy's values are kept (and the chain extended); anyone else's are replaced.
  bool trusted = p_.authn.trusted_proxy(ex.client_ip);
  auto inbound = [&](std::string_view name) { return trusted ? std::string(ex.req[name]) : std::string(); };
  http::HeaderList headers;
  std::string forwarded_for;
  if (trusted) forwarded_for = std::string(ex.req.list(http::Request::Name::x_forwarded_for, forwarded_for));
  headers.emplace_back("X-Forwarded-For", forwarded_for.empty() ? ex.client_ip : forwarded_for + ", " + ex.client_ip);
  std::string proto = inbound("X-Forwarded-Proto");
  headers.emplace_back("X-Forwarded-Proto", proto.empty() ? std::string("http") : proto);
  std::string host = inbound("X-Forwarded-Host");
  headers.emplace_back("X-Forwarded-Host", host.empty() ? std::string(ex.req[bhttp::field::host]) : host);
  headers.emplace_back("X-Request-Id", ex.request_id);
  if (!auth.status && auth.principal.authenticated())
    for (auto& h : identity_headers(*auth.principal.identity, auth.principal.is_admin(), "openwebui", p_.settings))
      headers.push_back(std::move(h));
  // Other names for the same facts, which Open WebUI or a framework under it may read: a client's are not
  // passed on (RFC 7239 §8), a trusted proxy's are.
  static constexpr std::string_view kUntrusted[] = {"Cookie", "Forwarded", "X-Real-IP", "X-Forwarded-Port",
                                                    "X-Forwarded-Prefix", "X-Forwarded-Server", "X-Forwarded-Ssl",
                                                    "X-Client-IP", "True-Client-IP", "CF-Connecting-IP"};
  // Gatehouse's own cookies stay here: its session cookie is an admin's credential for the management API,
  // and Open WebUI (or a script in one of its pages that logs requests) has no use for it. The rest go on.
  std::string cookie_storage;
  if (auto cookies = without_own_cookies(ex.req.list(http::Request::Name::cookie, cookie_storage)); !cookies.empty())
    headers.emplace_back("Cookie", std::move(cookies));
  co_await p_.proxy->forward(ex, headers, trusted ? std::span(kUntrusted).first(1) : std::span(kUntrusted));
}

net::awaitable<void> Router::route(http::Exchange& ex, Note& note) {
  auto& settings = p_.settings;
  auto& hub = p_.hub;
  auto& authn = p_.authn;
  auto& directory = p_.directory;
  auto& endpoint = p_.endpoint;
  auto& admin_api = p_.admin_api;
  auto& auth_routes = auth_routes_;
  auto& policy = host_policy_;
  auto target = std::string_view(ex.req.target());
  auto path = target.substr(0, target.find('?'));
  if (path == "/gateway/health") {
    note.route = "health";
    auto st = hub.draining() ? bhttp::status::service_unavailable : bhttp::status::ok;
    // Dependencies are said, not made conditions of readiness: with the store or Redis away, requests with
    // API keys and sessions the instance knows keep being served (from the directory it holds, limits per instance).
    auto health = hub.health();
    health["store"] = p_.store_up ? "ok" : "unavailable";
    if (p_.shared_limiter) health["redis"] = p_.shared_limiter->stats().redis_up ? "up" : "down";
    co_await ex.send_json(st, gh::to_json(health));
    co_return;
  }
  note.route = route_of(path, ex.wire() && p_.proxy);
  // One Host (RFC 9112 §3.2: more than one is answered 400), one Origin: a second one that a proxy in front
  // might read instead of the first must not get past the check below.
  using Name = http::Request::Name;
  if (ex.req.repeated(Name::host) || ex.req.repeated(Name::origin)) {
    const char* which = ex.req.repeated(Name::host) ? "Host" : "Origin";
    log::info("bad http request", {{"request_id", ex.request_id}, {"client_ip", ex.client_ip},
                                   {"error", std::string("more than one ") + which + " field"}});
    ex.close_after();
    co_await ex.send_json(bhttp::status::bad_request,
                          jsonrpc::error_text(nullptr, jsonrpc::code::invalid_request,
                                              std::string("Bad request: more than one ") + which + " header"));
    co_return;
  }
  // DNS-rebinding protection: a Host or Origin we do not serve is refused before anything else.
  std::string_view refused;
  if (!policy->host_ok(ex.req[bhttp::field::host])) refused = "Host header";
  else if (!policy->origin_ok(ex.req[bhttp::field::origin])) refused = "Origin";
  if (!refused.empty()) {
    log::info("refused request", {{"request_id", ex.request_id}, {"refused", refused},
                                  {"host", ex.req[bhttp::field::host]}, {"origin", ex.req[bhttp::field::origin]}});
    co_await ex.send_json(bhttp::status::forbidden,
                          jsonrpc::error_text(nullptr, jsonrpc::code::invalid_request,
                                              "Forbidden: " + std::string(refused) + " not allowed"));
    co_return;
  }
  // The portal's pages and scripts are public; the data they show comes from the API below.
  if (std::string_view(note.route) == "portal") {  // (route_of names the portal's paths)
    co_await static_files_->serve(ex, path.substr(10));
    co_return;
  }
  // Identity: inbound identity headers never reach anything (a trusted proxy's are read first).
  std::optional<http::Request> proxy_headers;
  if (settings.api_gateway_mode && authn.trusted_proxy(ex.client_ip)) {
    proxy_headers.emplace();
    for (const auto& f : ex.req)
      if (iequals(f.name_string().substr(0, std::min<std::size_t>(7, f.name_string().size())), "x-user-"))
        proxy_headers->insert(f.name_string(), f.value());
  }
  if (auth::strip_identity_headers(ex.req))
    log::debug("inbound identity headers removed", {{"request_id", ex.request_id}});
  if (path == "/metrics") {  // Prometheus scrapes: no identities in it, no authentication
    http::Response res(bhttp::status::ok, ex.req.version());
    res.set(bhttp::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.set(bhttp::field::cache_control, "no-store");
    res.body() = p_.metrics.render(gauges());
    res.keep_alive(ex.req.keep_alive());
    res.prepare_payload();
    co_await ex.send(std::move(res));
    co_return;
  }
  std::string xff_lines;
  note.client_ip = authn.client_ip(ex.client_ip, ex.req.list(http::Request::Name::x_forwarded_for, xff_lines));
  const http::Request* trusted = proxy_headers ? &*proxy_headers : nullptr;
  auth::AuthResult auth;
  if (auto now = authn.authenticate_now(ex.req, ex.client_ip, trusted, ex.memo())) auth = std::move(*now);  // the usual case
  else auth = co_await authn.authenticate_waiting(ex.req, trusted);
  if (auth.status && ex.wire()) {
    // Open WebUI checks its own cookies: a stale one here only means no identity headers are injected.
    log::debug("proxied request without a valid credential", {{"request_id", ex.request_id}, {"reason", auth.reason}});
  } else if (auth.status) {
    p_.metrics.auth_refused(auth.status);
    log::info("authentication refused", {{"request_id", ex.request_id}, {"status", auth.status},
                                         {"reason", auth.reason}, {"client_ip", ex.client_ip},
                                         {"path", path}});
  }
  if (auth.principal.authenticated()) note.email = auth.principal.email();
  bool mcp_route = path == "/mcp" || path == "/mcp/" || path.starts_with("/mcp/");
  bool proxied = ex.wire() && p_.proxy;
  // The chat UI loads dozens of files per page: a signed-in user's proxied requests are not counted against
  // the per-user API limit unless RATE_LIMIT_PROXY=true (anonymous ones are, per IP).
  bool counted = !proxied || p_.settings.rate_limit_proxy || !auth.principal.authenticated();
  if (counted && p_.settings.rate_limit_enabled) {
    auto rc = rate_check(auth, note);
    // A batch is charged one per message in it (cost_of). What costs nothing — answers to the server's
    // requests, a cancellation — and a session's end are not refused a signed-in caller.
    bool mcp_post = mcp_route && ex.req.method() == bhttp::verb::post;
    bool user = auth.principal.authenticated();
    std::optional<std::size_t> cost;
    if (mcp_post && is_batch(ex.req.body())) {
      cost = cost_of(ex.req.body());
      rc.limit.cost = std::max<int64_t>(1, static_cast<int64_t>(cost.value_or(1)));
    }
    bool exempt = user && mcp_route && (ex.req.method() == bhttp::verb::delete_ || (cost && *cost == 0));
    if (!exempt) {
      policy::RateDecision d;
      if (p_.shared_limiter) d = co_await p_.shared_limiter->check(rc.key, rc.limit, now_us());
      else d = p_.local_limiter.check(rc.key, rc.limit, now_us());  // in-process: no coroutine of its own
      if (!d.allowed && user && mcp_post && !cost && ex.req.body().size() <= 64 * 1024) {  // (a refusal stays cheap)
        cost = cost_of(ex.req.body());
        exempt = cost && *cost == 0;
      }
      if (!d.allowed && !exempt) {
        co_await refuse(ex, rc, d, mcp_route);
        co_return;
      }
    }
    ++limiter_.allowed;
  }
  if (proxied) {
    co_await proxy(ex, auth);
    co_return;
  }
  // CSRF: a write carried by a cookie (ours or Open WebUI's) must also carry the page's token, which a
  // cross-site form cannot. A page on another port of the same host is same-site for the browser, and such an
  // Origin is accepted (loopback), so the token is what stops it.
  bool write = ex.req.method() != bhttp::verb::get && ex.req.method() != bhttp::verb::head;
  const auto by = auth.principal.method;  // (a cookie makes one of these two; API keys skip the rest)
  if (write && (by == auth::AuthMethod::session || by == auth::AuthMethod::openwebui) &&
      (path.starts_with("/mcp-admin/api") || path.starts_with("/auth/apikeys") || path.starts_with("/openapi/"))) {
    auto cookie = authn.cookie_credential(ex.req);
    auto sent = ex.req["X-CSRF-Token"];
    if (!cookie.empty() && (sent.empty() || !auth::constant_time_equal(sent, authn.csrf_token(cookie)))) {
      log::info("CSRF token missing or wrong", {{"request_id", ex.request_id}, {"path", path}});
      auto body = gh::to_json(error_body("csrf", "This change needs the page's CSRF token; reload the page and try again"));
      co_await ex.send_json(bhttp::status::forbidden, std::move(body));
      co_return;
    }
  }
  if (path == "/gateway/stats") {  // names callers: admins only
    if (!auth.principal.is_admin()) {
      auto code = auth.principal.authenticated() ? bhttp::status::forbidden : bhttp::status::unauthorized;
      auto body = gh::to_json(error_body(auth.principal.authenticated() ? "forbidden" : "unauthorized",
                                             "The gateway statistics need an administrator"));
      co_await ex.send_json(code, std::move(body));
      co_return;
    }
    co_await ex.send_json(bhttp::status::ok, gh::to_json(stats_json()));
    co_return;
  }
  if (auth::Routes::owns(path)) {
    co_await auth_routes->handle(ex, path, auth);
    co_return;
  }
  if (path == "/mcp-admin/api" || path.starts_with("/mcp-admin/api/")) {
    // Everyone but an admin gets the same answer from every URL here, known or not.
    if (auth.status || !auth.principal.authenticated()) {
      // (locals, not conditionals inside the co_await: GCC 12 destroys such temporaries twice)
      bool forbidden = auth.status == 403;
      std::string body = gh::to_json(error_body(forbidden ? "forbidden" : "unauthorized",
                                                    auth.status ? auth.message : "Sign in or send an API key"));
      std::string extra = forbidden ? std::string() : www_authenticate(*auth_routes);
      co_await ex.send_json(forbidden ? bhttp::status::forbidden : bhttp::status::unauthorized, std::move(body), extra);
    } else if (!auth.principal.is_admin()) {
      co_await ex.send_json(bhttp::status::forbidden,
                            gh::to_json(error_body("forbidden", "This needs an administrator account")));
    } else {
      co_await admin_api.handle(ex, path.substr(14), auth.principal);
    }
    co_return;
  }
  bool openapi = path.starts_with("/openapi/");
  if (mcp_route || openapi || path == "/servers") {
    // OpenAPI callers (Open WebUI, mcpo clients) read {"detail": …}; MCP clients a JSON-RPC error.
    auto refuse = [&](const std::string& message) {
      return openapi ? gh::to_json(json::object{{"detail", json::object{{"message", message}}}})
                     : jsonrpc::error_text(nullptr, jsonrpc::code::invalid_request, message);
    };
    if (auth.status == 403 || auth.status == 503) {
      auto body = refuse(auth.message);
      co_await ex.send_json(static_cast<bhttp::status>(auth.status), std::move(body));
      co_return;
    }
    bool anonymous_ok = !auth.status && directory.current()->grants().group_has_grants(policy::kAnonymousGroup);
    if (auth.status || (!auth.principal.authenticated() && !anonymous_ok)) {
      auto body = refuse("Unauthorized: send a Bearer token (API key, OIDC or Open WebUI token)");
      co_await ex.send_json(bhttp::status::unauthorized, std::move(body), www_authenticate(*auth_routes));
      co_return;
    }
  }
  auto caller = make_caller(auth.principal, directory, settings);
  if (path == "/servers") {
    auto listed = hub.servers_json(&caller);
    if (listed["servers"].as_array().empty()) listed["message"] = caller.no_access_hint();
    co_await ex.send_json(bhttp::status::ok, gh::to_json(listed));
    co_return;
  }
  if (openapi) {
    co_await p_.openapi.handle(ex, path.substr(8), std::move(caller));
    co_return;
  }
  if (path == "/mcp" || path == "/mcp/") {
    co_await endpoint.handle(ex, "", std::move(caller));
    co_return;
  }
  if (path.starts_with("/mcp/")) {
    auto id = path.substr(5);
    if (!id.empty() && id.back() == '/') id.remove_suffix(1);
    auto srv = hub.find(id);
    if (!srv || !srv->cfg.enabled || !caller.may_use(srv->cfg)) {
      co_await ex.send_json(bhttp::status::not_found,
                            jsonrpc::error_text(nullptr, jsonrpc::code::invalid_request,
                                                "Unknown MCP server: " + std::string(id)));
      co_return;
    }
    co_await endpoint.handle(ex, std::string(id), std::move(caller));
    co_return;
  }
  co_await ex.send_json(bhttp::status::not_found, gh::to_json(error_body("not_found", "No such endpoint")));
}

}  // namespace gh::app
