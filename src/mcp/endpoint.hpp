// MCP Streamable HTTP transport (downstream): POST/GET/DELETE on /mcp and /mcp/<server>.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <string_view>

#include "core/config.hpp"
#include "http/server.hpp"
#include "mcp/hub.hpp"

namespace gh::mcp {

class Endpoint {
 public:
  Endpoint(Hub& hub, const Settings& settings) : hub_(hub), settings_(settings) {}
  // `scope` is "" for the aggregate endpoint, else a server id known to exist.
  net::awaitable<void> handle(http::Exchange& ex, std::string scope);

 private:
  net::awaitable<void> post(http::Exchange& ex, const std::string& scope);
  net::awaitable<void> get(http::Exchange& ex, const std::string& scope);
  net::awaitable<void> del(http::Exchange& ex, const std::string& scope);
  // Finds the request's session; answers 400/404 itself and returns null when there is none.
  net::awaitable<std::shared_ptr<Session>> session_of(http::Exchange& ex, const std::string& scope);
  Hub& hub_;
  const Settings& settings_;
};

}  // namespace gh::mcp
