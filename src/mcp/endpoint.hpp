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
  net::awaitable<void> handle(http::Exchange& ex, std::string scope, Caller caller);

 private:
  net::awaitable<void> post(http::Exchange& ex, const std::string& scope, const Caller& caller);
  net::awaitable<void> get(http::Exchange& ex, const std::string& scope, const Caller& caller);
  // One request in a POST: dispatched inline; an SSE writer starts only if a related message comes first.
  // One request: `request`, or `call` when scan_tool_call took it.
  net::awaitable<void> answer_one(http::Exchange& ex, std::shared_ptr<Session> s, json::object request,
                                  std::optional<jsonrpc::ToolCall> call = std::nullopt);
  // Several requests (a batch): dispatched concurrently, answered together.
  net::awaitable<void> answer_many(http::Exchange& ex, std::shared_ptr<Session> s, std::vector<json::object> requests,
                                   std::vector<json::value> early_responses);
  net::awaitable<void> del(http::Exchange& ex, const std::string& scope, const Caller& caller);
  // Cancels the channel's calls when the client disconnects.
  void watch_client(http::Exchange& ex, const std::shared_ptr<Session>& s, const std::shared_ptr<Channel>& ch);
  // Stops watching; if the client left, cancels what is left and closes the connection after this exchange.
  void finish(http::Exchange& ex, const std::shared_ptr<Session>& s, const std::shared_ptr<Channel>& ch);
  // Finds the request's session (and gives it the caller's current rights); null when the request names none
  // (`missing`) or none of this caller's in this scope held here: reopen() then.
  std::shared_ptr<Session> session_of(http::Exchange& ex, const std::string& scope, const Caller& caller, bool& missing);
  // A session another instance (or this one before a restart) opened, opened again from its id
  // (Hub::resume_session); when there is none, answers 400 (no id), 404 (no such session of this caller's
  // here) or 503 (shutting down, MAX_SESSIONS open) and returns null.
  net::awaitable<std::shared_ptr<Session>> reopen(http::Exchange& ex, const std::string& scope, const Caller& caller,
                                                  bool missing);
  // 400 when the request names no session, else 404 (logged with `why` when the id was one of ours).
  net::awaitable<void> no_session(http::Exchange& ex, bool missing, const std::string& why);
  Hub& hub_;
  const Settings& settings_;
};

}  // namespace gh::mcp
