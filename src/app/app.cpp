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

#include "core/log.hpp"
#include "core/util.hpp"
#include "http/server.hpp"
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

}  // namespace

int serve(const Settings& settings, const Environment& env) {
  log::Level level;
  log::parse_level(settings.log_level, level);
  log::set_level(level);
  std::signal(SIGPIPE, SIG_IGN);

  auto servers = load_servers_file(settings.servers_file, env);

  net::io_context io(1);
  mcp::Hub hub(io.get_executor(), settings);
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
    if (path == "/servers") {
      co_await ex.send_json(bhttp::status::ok, json::serialize(hub.servers_json()));
      co_return;
    }
    if (path == "/mcp" || path == "/mcp/") {
      co_await endpoint.handle(ex, "");
      co_return;
    }
    if (path.starts_with("/mcp/")) {
      auto id = path.substr(5);
      if (!id.empty() && id.back() == '/') id.remove_suffix(1);
      auto srv = hub.find(id);
      if (!srv || !srv->cfg.enabled) {
        co_await ex.send_json(bhttp::status::not_found,
                              jsonrpc::error_text(nullptr, jsonrpc::code::invalid_request,
                                                  "Unknown MCP server: " + std::string(id)));
        co_return;
      }
      co_await endpoint.handle(ex, std::string(id));
      co_return;
    }
    co_await ex.send_json(bhttp::status::not_found, json::serialize(error_body("not_found", "No such endpoint")));
  });

  uint16_t port = server.listen(settings.host, settings.port);
  policy = std::make_unique<HostPolicy>(settings, port);
  server.start();
  if (!settings.port_file.empty()) std::ofstream(settings.port_file) << port << "\n";
  log::info("listening", {{"host", settings.host}, {"port", port}, {"url", policy->public_url()},
                          {"servers", servers.size()}, {"servers_file", settings.servers_file}});

  // Housekeeping.
  net::co_spawn(io, [&]() -> net::awaitable<void> {
    net::steady_timer t(io);
    while (!hub.draining()) {
      t.expires_after(std::chrono::seconds(5));
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
      hub.sweep();
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
  log::info("stopped");
  // Everything was stopped in order above. Coroutines still parked in the io_context (idle keep-alive
  // waits, timers) point at objects of this frame; destroying them after those objects would touch freed
  // memory, so the process ends here without unwinding.
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace gh::app
