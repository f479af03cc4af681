// Reverse proxy to one HTTP origin (Open WebUI): a raw-route exchange (see RawRoute in server.hpp) is relayed
// as it arrives — request body and response body piece by piece, each response piece flushed at once (SSE),
// WebSocket upgrades tunnelled both ways. One fresh upstream connection per request (no upstream keep-alive):
// simple, and cheap on the loopback or LAN where Open WebUI runs.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "http/client.hpp"
#include "http/server.hpp"

namespace gh::http {

struct ProxyOptions {
  std::string url;                          // http(s)://host[:port][/base]
  std::string name = "Open WebUI";          // for error pages and logs
  std::chrono::seconds connect_timeout{10};  // resolve + connect (+ TLS handshake)
  std::chrono::seconds read_timeout{300};    // the upstream: idle time between bytes, and the wait for a head
  std::chrono::seconds write_timeout{30};    // each write to the client
  std::chrono::seconds body_timeout{30};     // each read of the client's request body (nginx's client_body_timeout)
  std::size_t max_body_bytes = 100 * 1024 * 1024;
};

// Header fields added to the upstream request after the client's, which are passed on except hop-by-hop ones
// and any field named here (the caller's X-Forwarded-*, X-Request-Id and identity headers replace the client's).
using HeaderList = std::vector<std::pair<std::string, std::string>>;

class ReverseProxy {
 public:
  // Throws std::invalid_argument for a URL that is not http(s).
  ReverseProxy(net::any_io_executor ex, ProxyOptions options);
  ~ReverseProxy();
  ReverseProxy(const ReverseProxy&) = delete;
  ReverseProxy& operator=(const ReverseProxy&) = delete;

  // Relays `ex` (which must have a wire()) upstream with `extra` headers (each replaces the client's of its
  // name) and without the client's fields named in `drop`. When the upstream cannot be reached the client gets
  // 502 (504 for a timeout): HTML for browsers, JSON otherwise.
  net::awaitable<void> forward(Exchange& ex, const HeaderList& extra, std::span<const std::string_view> drop = {});

  const ProxyOptions& options() const { return options_; }

  struct Upstream;  // one upstream connection (plain or TLS)

 private:
  template <class S>
  net::awaitable<void> relay(Exchange& ex, const HeaderList& extra, std::span<const std::string_view> drop, S& up,
                             Upstream& conn);
  template <class S>
  net::awaitable<void> tunnel(Exchange& ex, S& up, Upstream& conn);
  net::awaitable<void> fail(Exchange& ex, bool timeout, std::string_view stage, const boost::system::error_code& ec);
  void watch(Stream* s);
  void unwatch(Stream* s);

  net::any_io_executor ex_;
  ProxyOptions options_;
  Origin origin_;
  std::string base_path_;  // the URL's path without a trailing '/', prefixed to every target
  std::vector<Stream*> watched_;
  bool watchdog_running_ = false;
  std::shared_ptr<bool> alive_;
};

}  // namespace gh::http
