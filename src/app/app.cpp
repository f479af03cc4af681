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
#include "app/router.hpp"
#include "observability/analytics.hpp"
#include "observability/metrics.hpp"
#include "policy/ratelimit.hpp"
#include "store/redis.hpp"
#include "app/access.hpp"
#include "auth/secrets.hpp"
#include "policy/policy.hpp"
#include "app/bootstrap.hpp"
#include "auth/authenticator.hpp"
#include "auth/directory.hpp"
#include "auth/oidc.hpp"
#include "auth/routes.hpp"
#include "core/blocking.hpp"
#include "core/budget.hpp"
#include "core/cgroup.hpp"
#include "core/fdlimit.hpp"
#include "core/log.hpp"
#include "core/util.hpp"
#include "http/server.hpp"
#include "store/openwebui.hpp"
#include "store/store.hpp"
#include "jsonrpc/message.hpp"
#include "mcp/endpoint.hpp"
#include "mcp/hub.hpp"
#include "upstream/process.hpp"

// Defined only in a build instrumented for profile-guided optimisation (-fprofile-generate), which writes
// its counts at exit — but serve() ends with _Exit, which skips that, so it calls this itself. Weak: null
// in every other build.
extern "C" void __gcov_dump() __attribute__((weak));

namespace gh::app {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

}  // namespace

int serve(const Settings& settings, const Environment& env) {
  log::Level level;
  log::parse_level(settings.log_level, level);
  log::set_level(level);
  std::signal(SIGPIPE, SIG_IGN);
  // A SIGHUP before its handler is in place (a reload as the service starts) would end the process: it
  // waits, blocked, until then (SIGTERM and SIGINT still end a start-up that hangs).
  sigset_t hup_only;
  sigemptyset(&hup_only);
  sigaddset(&hup_only, SIGHUP);
  ::pthread_sigmask(SIG_BLOCK, &hup_only, nullptr);

  auto servers = load_servers_file(settings.servers_file, env);

  net::io_context io(1);
  // A little behind the io thread (nice 5): requests first, reloads after.
  BlockingPool pool(2, 5, BlockingPool::Class::normal, "gh-blocking");
  std::unique_ptr<auth::SecretBox> secrets;
  if (!settings.encryption_key.empty())
    secrets = std::make_unique<auth::SecretBox>(settings.encryption_key, settings.encryption_key_previous);
  auto store = open_store(settings);
  auto first_admin = bootstrap_admin(*store, settings);
  // Shown once: also when the start fails after this (the port taken…), or the next start shows nothing.
  struct ShowKeyOnFailure {
    const std::optional<Bootstrap>& admin;
    bool shown = false;
    ~ShowKeyOnFailure() {
      if (admin && !shown) print_bootstrap(*admin, "");
    }
  } show_key{first_admin};
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
      for (auto& t : srv->any_catalog().tools)
        if (auto* n = t.if_contains("name"); n && n->is_string()) v.tools.emplace_back(n->as_string());
    }
    return views;
  });
  hub.configure(servers);
  mcp::Endpoint endpoint(hub, settings);
  if (settings.session_max_age_s > 0) {
    // Sessions any instance on this store can serve (mcp/session_ids.hpp); ends recorded in the store.
    hub.use_session_ids(std::make_shared<mcp::SessionIds>(authn.derived_key("mcp session ids"), settings.session_max_age_s));
    hub.record_end = [&store, &pool](std::string id) -> net::awaitable<bool> {
      auto record = [&store, id] { store->record_session_end(id); };
      try {
        co_await pool.run(std::move(record));
        co_return true;
      } catch (const std::exception& e) {
        log::warn("cannot record a session's end; the session stays open", {{"error", e.what()}});
        co_return false;
      }
    };
    hub.was_ended = [&store, &pool](std::string id) -> net::awaitable<std::optional<bool>> {
      auto ask = [&store, id] { return store->session_ended(id); };
      try {
        co_return co_await pool.run(std::move(ask));
      } catch (const std::exception& e) {
        log::warn("cannot tell whether a session was ended; not opening it again", {{"error", e.what()}});
        co_return std::nullopt;
      }
    };
  }

  http::ServerLimits limits;
  limits.max_body_bytes = settings.max_body_bytes;
  limits.idle_timeout = std::chrono::seconds(settings.keepalive_timeout_s);
  const std::size_t fd_limit = fdlimit::raise();
  limits.max_connections = settings.max_connections ? settings.max_connections : fdlimit::default_max_connections(fd_limit);
  if (limits.max_connections > fdlimit::default_max_connections(fd_limit))
    log::warn("MAX_CONNECTIONS leaves few file descriptors for upstreams and the database",
              {{"max_connections", limits.max_connections}, {"open_file_limit", fd_limit}});
  budget::set_limit(settings.upstream_memory_mb >= 0 ? std::size_t(settings.upstream_memory_mb) << 20
                                                    : budget::default_limit(budget::available_memory()));
  observability::Metrics metrics;
  hub.on_call = [&metrics](const std::string& server, const std::string& tool, std::string_view outcome, double s) {
    metrics.upstream_call(server, tool, outcome, s);
  };
  cgroup::Idle idle;
  std::unique_ptr<observability::AnalyticsWriter> analytics;
  if (settings.analytics_enabled) {
    idle = cgroup::prepare_idle(settings.analytics_writer_cgroup);
    analytics = std::make_unique<observability::AnalyticsWriter>(*store, pool, io.get_executor(), 200000,
                                                                 store->analytics_chunk(), idle);
    analytics->start(settings.analytics_retention_days);
  }
  policy::LocalLimiter local_limiter;
  std::shared_ptr<store::RedisClient> redis;
  std::unique_ptr<store::SharedLimiter> shared_limiter;
  if (!settings.redis_url.empty() && settings.rate_limit_enabled) {
    redis = store::RedisClient::create(io.get_executor(), settings.redis_url);
    shared_limiter = std::make_unique<store::SharedLimiter>(redis, local_limiter);
  }
  mcp::OpenApi openapi(hub, settings);
  std::unique_ptr<http::ReverseProxy> proxy;
  http::RawRoute proxied;  // requests relayed to Open WebUI are not read whole: their bodies stream through
  if (!settings.openwebui_url.empty()) {
    http::ProxyOptions po;
    po.url = settings.openwebui_url;
    po.connect_timeout = std::chrono::seconds(settings.proxy_connect_timeout_s);
    po.read_timeout = std::chrono::seconds(settings.proxy_read_timeout_s);
    po.write_timeout = limits.write_timeout;
    po.body_timeout = limits.read_timeout;
    po.max_body_bytes = settings.proxy_max_body_bytes;
    proxy = std::make_unique<http::ReverseProxy>(io.get_executor(), std::move(po));
    limits.raw_max_body_bytes = settings.proxy_max_body_bytes;
    proxied = [](const http::Request& h) {
      std::string_view target = h.target();
      return !Router::serves(target.substr(0, target.find('?')));
    };
  }
  std::atomic<bool> store_up{true}, probing_store{false};
  Clock::time_point probe_started{};  // (io thread only)
  Router router({settings, hub, endpoint, openapi, authn, directory, admin_api, metrics, analytics.get(), local_limiter,
                 shared_limiter.get(), pool, proxy.get(), store_up});
  http::Server server(io, limits, [&](http::Exchange& ex) { return router.handle(ex); }, std::move(proxied));

  uint16_t port = server.listen(settings.host, settings.port);
  router.set_port(port);
  router.set_auth_routes(std::make_unique<auth::Routes>(settings, authn, oidc.get(), *store, directory, pool,
                                                        router.public_url()));
  if (first_admin) print_bootstrap(*first_admin, router.public_url());
  show_key.shown = true;
  server.start();
  if (!settings.port_file.empty()) std::ofstream(settings.port_file) << port << "\n";
  log::info("listening", {{"host", settings.host}, {"port", port}, {"url", router.public_url()},
                          {"servers", servers.size()}, {"servers_file", settings.servers_file},
                          {"max_connections", limits.max_connections}, {"open_file_limit", fd_limit},
                          {"upstream_memory_limit_mb", budget::counts().limit >> 20},
                          {"openwebui_url", settings.openwebui_url}});

  // Housekeeping.
  std::atomic<bool> polling_ends{false};
  Clock::time_point ends_read_at = Clock::now();  // the last poll of ended sessions that succeeded (pool threads only)
  net::co_spawn(io, [&]() -> net::awaitable<void> {
    net::steady_timer t(io);
    uint64_t ticks = 0;
    while (!hub.draining()) {
      t.expires_after(std::chrono::seconds(5));
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
      hub.sweep();
      local_limiter.sweep(policy::LocalLimiter::clock_us());
      if (++ticks % 12 == 0) pool.post([&] { authn.flush_usage(); });  // API keys' last use, once a minute
      if (probing_store && Clock::now() - probe_started > std::chrono::seconds(10)) {
        // A probe that has not come back (a server that stopped answering, a lock held on SQLite's file) says
        // as much as one that failed.
        if (store_up.exchange(false)) log::error("store unreachable", {{"error", "no answer to a probe for 10 s"}});
      } else if (!probing_store.exchange(true)) {  // the store's state for /gateway/health and gatehouse_store_up
        probe_started = Clock::now();
        pool.post([&] {
          bool up = true;
          std::string why;
          try {
            store->ping();
          } catch (const std::exception& e) {
            up = false;
            why = e.what();
          }
          if (store_up.exchange(up) != up) {
            if (up) log::info("store reachable again");
            else log::error("store unreachable", {{"error", why}});
          }
          probing_store = false;
        });
      }
      if (shared_limiter) co_await shared_limiter->probe();
      if (settings.session_max_age_s > 0 && hub.session_count() > 0 && !polling_ends.exchange(true)) {
        // Sessions ended on other instances: their copies here close within a tick (one read at a time: a
        // store that stalls does not gather reads in the pool).
        pool.post([&] {
          try {
            // Every end since the last poll that read them (a store held up for a minute must not hide the
            // ends recorded meanwhile), with a margin for the instances' clocks.
            auto started = Clock::now();
            auto since = std::chrono::duration_cast<std::chrono::seconds>(started - ends_read_at).count();
            auto ended = store->sessions_ended_within(std::max<int64_t>(30, since + 30));
            ends_read_at = started;
            if (!ended.empty()) net::post(io, [&hub, ended = std::move(ended)] { hub.ended_elsewhere(ended); });
          } catch (const std::exception& e) {
            log::warn("cannot read the sessions ended on other instances", {{"error", e.what()}});
          }
          polling_ends = false;
        });
      }
      if (settings.session_max_age_s > 0 && ticks % 720 == 1) {  // hourly: ends no id can be resumed past
        // (an hour's margin: an id may say it was issued up to 5 minutes ahead of this clock)
        pool.post([&, before = unix_now() - settings.session_max_age_s - 3600] {
          try {
            store->purge_session_ends(before);
          } catch (const std::exception& e) {
            log::warn("cannot purge old session ends", {{"error", e.what()}});
          }
        });
      }
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
  ::pthread_sigmask(SIG_UNBLOCK, &hup_only, nullptr);  // one sent meanwhile is handled now

  // SIGTERM/SIGINT: graceful shutdown.
  net::signal_set term(io, SIGTERM, SIGINT);
  term.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    log::info("shutting down", {{"signal", sig}, {"grace_ms", settings.shutdown_grace_ms}});
    // A second one (Ctrl-C again, an impatient supervisor): stop now, without the grace period.
    term.async_wait([](boost::system::error_code ec, int sig) {
      if (ec) return;
      log::warn("second signal: stopping now", {{"signal", sig}});
      upstream::kill_all_children(SIGKILL);
      std::fflush(nullptr);
      std::_Exit(128 + sig);
    });
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
      server.stop_accepting();
      if (server.busy_connections() > 0) {
        log::warn("grace period over; closing connections", {{"connections", server.busy_connections()}});
        // The calls still running fail ("shutting down"), and their clients get that answer before their
        // connections close (up to half a second), not a connection reset.
        hub.stop_upstreams();
        auto answered = Clock::now() + std::chrono::milliseconds(500);
        while (server.busy_connections() > 0 && Clock::now() < answered) {
          t.expires_after(std::chrono::milliseconds(10));
          co_await t.async_wait(net::as_tuple(net::use_awaitable));
        }
      }
      server.close_all();
      if (analytics) co_await analytics->flush(5000);  // every recorded request reaches the store
      if (redis) redis->close();
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
  // Store calls still running on other threads (one held behind a lock) end before the store is closed; if
  // they do not within a few seconds, the store is left open (SQLite folds its log in at the next start)
  // rather than closed under them.
  bool quiet = pool.stop_and_join_for(std::chrono::seconds(3)) &&
               (!analytics || analytics->stop_for(std::chrono::seconds(2)));
  if (quiet) authn.flush_usage();
  else log::warn("store calls still running at shutdown; exiting without closing the store");
  if (oidc) oidc->stop();
  directory.stop();
  if (quiet) store.reset();  // closes the database cleanly (SQLite folds its write-ahead log back into the file)
  cgroup::remove_ours(idle);  // (the writer has nothing left to do)
  log::info("stopped");
  // Everything was stopped in order above. Coroutines still parked in the io_context (idle keep-alive
  // waits, timers) point at objects of this frame; destroying them after those objects would touch freed
  // memory, so the process ends here without unwinding.
  std::fflush(nullptr);
  if (__gcov_dump) __gcov_dump();  // a profile-generating build (GATEHOUSE_PGO=generate): write its counts
  std::_Exit(0);
}

}  // namespace gh::app
