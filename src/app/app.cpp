#include "app/app.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <csignal>
#include <fstream>
#include <thread>

#include "admin/api.hpp"
#include "app/access.hpp"
#include "auth/secrets.hpp"
#include "policy/policy.hpp"
#include "app/bootstrap.hpp"
#include "auth/authenticator.hpp"
#include "auth/directory.hpp"
#include "auth/oidc.hpp"
#include "auth/routes.hpp"
#include "core/blocking.hpp"
#include "core/log.hpp"
#include "core/util.hpp"
#include "http/server.hpp"
#include "store/openwebui.hpp"
#include "store/store.hpp"
#include "jsonrpc/message.hpp"
#include "mcp/endpoint.hpp"
#include "mcp/hub.hpp"
#include "upstream/process.hpp"

namespace gh::app {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

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
    if (any_host_) return true;
    if (host.empty()) return false;
    std::string_view name = host;
    if (name.front() == '[') {
      auto end = name.find(']');
      name = end == std::string_view::npos ? name : name.substr(0, end + 1);
    } else if (auto colon = name.rfind(':'); colon != std::string_view::npos) {
      name = name.substr(0, colon);
    }
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

json::object error_body(std::string_view code, std::string_view message) {
  return json::object{{"error", json::object{{"code", code}, {"message", message}}}};
}

// RFC 9728 §5.1: where a client finds how to get a token for this resource.
std::string www_authenticate(const auth::Routes& routes) {
  return "WWW-Authenticate: Bearer resource_metadata=\"" + routes.resource_metadata_url() + "\"\r\n";
}

}  // namespace

int serve(const Settings& settings, const Environment& env) {
  log::Level level;
  log::parse_level(settings.log_level, level);
  log::set_level(level);
  std::signal(SIGPIPE, SIG_IGN);

  auto servers = load_servers_file(settings.servers_file, env);

  net::io_context io(1);
  BlockingPool pool(2);
  std::unique_ptr<auth::SecretBox> secrets;
  if (!settings.encryption_key.empty())
    secrets = std::make_unique<auth::SecretBox>(settings.encryption_key, settings.encryption_key_previous);
  auto store = open_store(settings);
  auto first_admin = bootstrap_admin(*store, settings);
  auth::Directory directory(*store, pool, io.get_executor(), secrets.get());
  directory.load_now();
  directory.start_watching();
  std::unique_ptr<auth::Oidc> oidc;
  if (settings.oidc_enabled()) {
    oidc = std::make_unique<auth::Oidc>(io.get_executor(), settings);
    oidc->start();
  }
  std::unique_ptr<store::OpenWebUiDirectory> openwebui;
  if (!settings.openwebui_database_url.empty()) openwebui = store::OpenWebUiDirectory::open(settings.openwebui_database_url);
  auth::Authenticator authn(settings, *store, directory, pool, io.get_executor(), oidc.get(), std::move(openwebui));
  authn.init_secret();
  mcp::Hub hub(io.get_executor(), settings);
  admin::Api admin_api(*store, directory, pool, settings, secrets.get(), [&hub] {
    std::map<std::string, admin::ServerView> views;
    for (auto& [id, srv] : hub.servers()) {
      auto& v = views[id];
      v.info = hub.server_json(*srv);
      v.slots = secret_slots(srv->cfg);
      for (auto& t : srv->catalog.tools)
        if (auto* n = t.if_contains("name"); n && n->is_string()) v.tools.emplace_back(n->as_string());
    }
    return views;
  });
  std::unique_ptr<auth::Routes> auth_routes;

  hub.configure(servers);
  mcp::Endpoint endpoint(hub, settings);
  std::unique_ptr<HostPolicy> policy;

  http::ServerLimits limits;
  limits.max_body_bytes = settings.max_body_bytes;
  http::Server server(io, limits, [&](http::Exchange& ex) -> net::awaitable<void> {
    auto target = std::string_view(ex.req.target());
    auto path = target.substr(0, target.find('?'));
    if (path == "/gateway/health") {
      auto st = hub.draining() ? bhttp::status::service_unavailable : bhttp::status::ok;
      co_await ex.send_json(st, json::serialize(hub.health()));
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
    // Identity: inbound identity headers never reach anything (a trusted proxy's are read first).
    std::optional<http::Request> proxy_headers;
    if (settings.api_gateway_mode && authn.trusted_proxy(ex.client_ip)) {
      proxy_headers.emplace();
      for (auto& f : ex.req)
        if (iequals(f.name_string().substr(0, std::min<std::size_t>(7, f.name_string().size())), "x-user-"))
          proxy_headers->insert(f.name_string(), f.value());
    }
    if (auth::strip_identity_headers(ex.req))
      log::debug("inbound identity headers removed", {{"request_id", ex.request_id}});
    auto auth = co_await authn.authenticate(ex.req, ex.client_ip, proxy_headers ? &*proxy_headers : nullptr);
    if (auth.status)
      log::info("authentication refused", {{"request_id", ex.request_id}, {"status", auth.status},
                                           {"reason", auth.reason}, {"client_ip", ex.client_ip},
                                           {"path", path}});
    if (auth::Routes::owns(path)) {
      co_await auth_routes->handle(ex, path, auth);
      co_return;
    }
    if (path == "/mcp-admin/api" || path.starts_with("/mcp-admin/api/")) {
      // Everyone but an admin gets the same answer from every URL here, known or not.
      if (auth.status || !auth.principal.authenticated()) {
        // (locals, not conditionals inside the co_await: GCC 12 destroys such temporaries twice)
        bool forbidden = auth.status == 403;
        std::string body = json::serialize(error_body(forbidden ? "forbidden" : "unauthorized",
                                                      auth.status ? auth.message : "Sign in or send an API key"));
        std::string extra = forbidden ? std::string() : www_authenticate(*auth_routes);
        co_await ex.send_json(forbidden ? bhttp::status::forbidden : bhttp::status::unauthorized, std::move(body), extra);
      } else if (!auth.principal.is_admin()) {
        co_await ex.send_json(bhttp::status::forbidden,
                              json::serialize(error_body("forbidden", "This needs an administrator account")));
      } else {
        co_await admin_api.handle(ex, path.substr(14), auth.principal);
      }
      co_return;
    }
    bool mcp_route = path == "/mcp" || path == "/mcp/" || path.starts_with("/mcp/");
    if (mcp_route || path == "/servers") {
      if (auth.status == 403 || auth.status == 503) {
        co_await ex.send_json(static_cast<bhttp::status>(auth.status),
                              jsonrpc::error_text(nullptr, jsonrpc::code::invalid_request, auth.message));
        co_return;
      }
      bool anonymous_ok = !auth.status && directory.current()->grants().group_has_grants(policy::kAnonymousGroup);
      if (auth.status || (!auth.principal.authenticated() && !anonymous_ok)) {
        co_await ex.send_json(bhttp::status::unauthorized,
                              jsonrpc::error_text(nullptr, jsonrpc::code::invalid_request,
                                                  "Unauthorized: send a Bearer token (API key, OIDC or Open WebUI token)"),
                              www_authenticate(*auth_routes));
        co_return;
      }
    }
    auto caller = make_caller(auth.principal, directory.current(), settings);
    if (path == "/servers") {
      auto listed = hub.servers_json(caller.may_use);
      if (listed["servers"].as_array().empty()) listed["message"] = caller.no_access_hint;
      co_await ex.send_json(bhttp::status::ok, json::serialize(listed));
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
    co_await ex.send_json(bhttp::status::not_found, json::serialize(error_body("not_found", "No such endpoint")));
  });

  uint16_t port = server.listen(settings.host, settings.port);
  policy = std::make_unique<HostPolicy>(settings, port);
  auth_routes = std::make_unique<auth::Routes>(settings, authn, oidc.get(), *store, directory, pool, policy->public_url());
  if (first_admin) print_bootstrap(*first_admin, policy->public_url());
  server.start();
  if (!settings.port_file.empty()) std::ofstream(settings.port_file) << port << "\n";
  log::info("listening", {{"host", settings.host}, {"port", port}, {"url", policy->public_url()},
                          {"servers", servers.size()}, {"servers_file", settings.servers_file}});

  // Housekeeping.
  net::co_spawn(io, [&]() -> net::awaitable<void> {
    net::steady_timer t(io);
    uint64_t ticks = 0;
    while (!hub.draining()) {
      t.expires_after(std::chrono::seconds(5));
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
      hub.sweep();
      if (++ticks % 12 == 0) pool.post([&] { authn.flush_usage(); });  // API keys' last use, once a minute
    }
  }, net::detached);

  // SIGHUP: reload the servers file.
  net::signal_set hup(io, SIGHUP);
  std::function<void()> wait_hup = [&] {
    hup.async_wait([&](boost::system::error_code ec, int) {
      if (ec) return;
      try {
        auto next = load_servers_file(settings.servers_file, read_environment());
        hub.configure(next);
        log::info("servers reloaded", {{"servers", next.size()}});
      } catch (const ConfigError& e) {
        log::error("servers reload failed; keeping the current servers", {{"setting", e.setting}, {"error", e.what()}});
      }
      wait_hup();
    });
  };
  wait_hup();

  // SIGTERM/SIGINT: graceful shutdown.
  net::signal_set term(io, SIGTERM, SIGINT);
  term.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    log::info("shutting down", {{"signal", sig}, {"grace_ms", settings.shutdown_grace_ms}});
    hup.cancel();
    hub.start_draining();
    server.drain();
    net::co_spawn(io, [&]() -> net::awaitable<void> {
      net::steady_timer t(io);
      auto deadline = Clock::now() + std::chrono::milliseconds(settings.shutdown_grace_ms);
      while (server.busy_connections() > 0 && Clock::now() < deadline) {
        t.expires_after(std::chrono::milliseconds(20));
        co_await t.async_wait(net::as_tuple(net::use_awaitable));
      }
      if (server.busy_connections() > 0) log::warn("grace period over; closing connections",
                                                   {{"connections", server.busy_connections()}});
      server.stop_accepting();
      server.close_all();
      hub.stop_upstreams();
      auto kill_deadline = Clock::now() + std::chrono::seconds(6);
      while (upstream::live_child_groups() > 0 && Clock::now() < kill_deadline) {
        t.expires_after(std::chrono::milliseconds(20));
        co_await t.async_wait(net::as_tuple(net::use_awaitable));
      }
      upstream::kill_all_children(SIGKILL);
      io.stop();
    }, net::detached);
  });

  io.run();
  upstream::kill_all_children(SIGKILL);
  authn.flush_usage();
  if (oidc) oidc->stop();
  directory.stop();
  log::info("stopped");
  // Everything was stopped in order above. Coroutines still parked in the io_context (idle keep-alive
  // waits, timers) point at objects of this frame; destroying them after those objects would touch freed
  // memory, so the process ends here without unwinding.
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace gh::app
