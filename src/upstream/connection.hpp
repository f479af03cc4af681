// One MCP client session to one upstream server (a stdio process, a Streamable HTTP session or a legacy
// SSE session). Many downstream requests share it: JSON-RPC ids and progress tokens are rewritten here.
#pragma once
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/config.hpp"
#include "core/event.hpp"
#include "jsonrpc/reply.hpp"

namespace gh::upstream {

namespace net = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

enum class State { idle, starting, ready, backoff, closed };
std::string_view to_string(State s);

// Where messages related to one call go (progress, logging, server→client requests).
struct CallSink {
  virtual ~CallSink() = default;
  // A notification for the downstream client (progress tokens already mapped back).
  virtual void notify(json::object msg) = 0;
  // A server→client request; `reply` sends the client's response (a full JSON-RPC response object,
  // its id is replaced) back upstream.
  virtual void server_request(json::object msg, std::function<void(json::object)> reply) = 0;
};

// Where messages that belong to no call go; owned by the manager (shared connections) or a session
// (dedicated connections).
struct Listener {
  virtual ~Listener() = default;
  virtual void list_changed(std::string_view method) = 0;          // notifications/*/list_changed
  virtual void unsolicited(json::object msg) = 0;                   // other notifications
  virtual void unsolicited_request(json::object msg, std::function<void(json::object)> reply) = 0;
};

struct CallOptions {
  std::chrono::milliseconds timeout{60000};
  std::shared_ptr<CallSink> sink;
  // Extra request headers for this call (HTTP transports; e.g. the caller's identity for forwardIdentity).
  std::vector<std::pair<std::string, std::string>> headers;
  // When set: the params as JSON text, sent as they are (call()'s `params` is then null).
  std::string raw_params;
};

// A handle to cancel a call in flight.
struct CallHandle {
  uint64_t upstream_id = 0;  // 0 until it is sent
  bool cancelled = false;    // set by the caller before it was sent (the connection still starting): never sent
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(net::any_io_executor ex, const ServerConfig& cfg, std::map<std::string, std::string> resolved_env,
             std::map<std::string, std::string> resolved_headers, json::object client_capabilities);
  virtual ~Connection();

  // Sends a request and waits for its response. Returns the full response (`result` or `error`; its `id` is
  // whatever the caller wants to set): a plain result as the upstream's bytes (see jsonrpc::Reply). Never
  // throws for upstream failures.
  net::awaitable<jsonrpc::Reply> call(std::string method, json::value params, CallOptions opts,
                                    CallHandle* handle = nullptr);
  // Sends a notification upstream (best effort).
  void notify(std::string_view method, json::value params);
  // Cancels a call in flight: the caller of call() gets an error, the upstream gets notifications/cancelled.
  void cancel(uint64_t upstream_id, std::string_view reason);

  // Starts the connection if needed; returns an error message on failure.
  net::awaitable<std::optional<std::string>> ensure_ready();
  // Marks the connection used; whether it is ready now (then ensure_ready() has nothing to do).
  bool use_if_ready() {
    last_used_ = Clock::now();
    return state_ == State::ready;
  }
  // Stops the process / session. Pending calls fail.
  virtual void close(std::string_view why);

  State state() const { return state_; }
  const ServerConfig& config() const { return cfg_; }
  const json::object& server_capabilities() const { return server_caps_; }
  const json::value& server_info() const { return server_info_; }
  const std::string& instructions() const { return instructions_; }
  const std::string& protocol_version() const { return protocol_version_; }
  std::size_t in_flight() const { return pending_.size(); }
  Clock::time_point last_used() const { return last_used_; }
  const std::string& last_error() const { return last_error_; }
  void set_listener(std::weak_ptr<Listener> l) { listener_ = std::move(l); }
  uint64_t generation() const { return generation_; }
  // The per-call timeout: the server's timeoutMs, else the gateway default (UPSTREAM_TIMEOUT_MS).
  std::chrono::milliseconds timeout() const {
    return cfg_.timeout_ms > 0 ? std::chrono::milliseconds(cfg_.timeout_ms) : default_timeout_;
  }
  void set_default_timeout(std::chrono::milliseconds t) { default_timeout_ = t; }
  // The values filled into its ${secret:} slots: cut out of what the gateway quotes of the server's words in
  // errors and log lines (a server that echoes the Authorization header it got in its 401 text).
  void set_secret_values(std::vector<std::string> values) { secret_values_ = std::move(values); }
  std::string redact(std::string text) const;
  std::string quote(std::string_view text) const;  // its first 300 bytes, redacted (no value cut in half first)

 protected:
  // Transport hooks. start_transport connects or spawns; send_message delivers one serialized message
  // (`related` is the upstream id of the request it is, or 0).
  virtual net::awaitable<std::optional<std::string>> start_transport() = 0;
  virtual void send_message(std::string text, uint64_t related_request) = 0;
  virtual void stop_transport() = 0;
  // Sends a message and waits until the transport handed it over (HTTP: the POST was answered), so that
  // notifications/initialized reaches the server before any request that follows it.
  virtual net::awaitable<void> send_ordered(std::string text) {
    send_message(std::move(text), 0);
    co_return;
  }

  // Called by transports for every message from the upstream; `related` is the upstream request id the
  // message belongs to when the transport knows it (the POST it arrived on), else 0. With `at_once`, the
  // caller a response completes resumes inside this call (its answer goes out without another trip through
  // the scheduler); only for a transport that touches nothing of the call afterwards and is not inside a
  // parser callback.
  void deliver(json::value msg, uint64_t related, bool at_once = false);
  // Delivers one JSON text from the upstream (a message or a batch): a plain result for a call in flight
  // completes it with the text itself (taken from `text`, never parsed), anything else is parsed and
  // delivered as above. False, with `text` untouched, when it is not JSON.
  bool deliver_text(std::string& text, uint64_t related, bool at_once = false);
  // initialize + capabilities on a started transport (also to renew an HTTP session the server forgot).
  net::awaitable<std::optional<std::string>> handshake();
  // A new upstream session on the same transport (HTTP session renewal): late replies to the old one are dropped.
  void bump_generation() { ++generation_; }
  // Whether a call is still waiting for its response.
  bool is_pending(uint64_t id) const {
    auto it = pending_.find(id);
    return it != pending_.end() && !it->second->done;
  }
  // The extra headers of a pending call (empty if none or not pending).
  const std::vector<std::pair<std::string, std::string>>& call_headers(uint64_t id) const {
    static const std::vector<std::pair<std::string, std::string>> none;
    auto it = pending_.find(id);
    return it == pending_.end() ? none : it->second->headers;
  }
  // Called once the connection is ready (after notifications/initialized went out).
  virtual void on_ready() {}
  // Called by transports when the transport died (process exit, stream closed for good).
  void transport_failed(std::string why);
  // Completes a pending call with an error response.
  void fail_call(uint64_t id, int code, std::string message);

  net::any_io_executor ex_;
  ServerConfig cfg_;
  std::map<std::string, std::string> env_;      // stdio: the env after ${secret:} resolution
  std::map<std::string, std::string> headers_;  // http: headers after resolution
  json::object client_caps_;
  std::string protocol_version_;
  State state_ = State::idle;
  std::string last_error_;
  bool sending_handshake_ = false;
  std::chrono::milliseconds default_timeout_{60000};  // true while handshake() sends its initialize request
  std::vector<std::string> secret_values_;

 private:
  // A call in flight: its caller waits (resume) until the answer, an error, or the deadline finishes it.
  struct Pending {
    bool done = false, timed_out = false;
    Clock::time_point deadline;
    // The waiting caller (in an optional: Boost 1.81's any_completion_handler move assignment recurses forever).
    std::optional<net::any_completion_handler<void()>> resume;
    std::optional<jsonrpc::Reply> response;  // unset until answered
    std::shared_ptr<CallSink> sink;
    json::value progress_token;  // the downstream's token, when the call had one
    std::vector<std::pair<std::string, std::string>> headers;
  };
  net::awaitable<jsonrpc::Reply> call_started(std::string method, json::value params, CallOptions opts,
                                            CallHandle* handle);
  net::awaitable<jsonrpc::Reply> call_when_ready(std::string method, json::value params, CallOptions opts,
                                               CallHandle* handle);
  net::awaitable<std::optional<std::string>> start();
  // Marks a call done and resumes its caller: queued (safe anywhere), or at once (see deliver).
  void finish(Pending& p, bool at_once = false);
  // One timer for the deadlines of every call in flight, armed for the earliest: calls finished in time
  // (nearly all) never touch it, and with one timeout per server deadlines come in order, so it fires about
  // once per timeout while calls keep coming.
  void watch_deadline(Clock::time_point t);
  void deadline_reached();

  std::map<uint64_t, Pending*> pending_;
  std::unique_ptr<net::steady_timer> deadline_timer_;
  Clock::time_point deadline_armed_ = Clock::time_point::max();
  uint64_t next_id_ = 0;
  json::object server_caps_;
  json::value server_info_;
  std::string instructions_;
  std::shared_ptr<Event> ready_;
  std::weak_ptr<Listener> listener_;
  Clock::time_point last_used_ = Clock::now();
  Clock::time_point retry_at_{};
  int failures_ = 0;
  Clock::time_point ready_at_{};  // when it last became ready
  static constexpr std::chrono::seconds kStableAfter{5};  // ready this long: a crash is not a failed start
  uint64_t generation_ = 0;
};

// Creates the connection for a server config (stdio, streamable-http or sse).
std::shared_ptr<Connection> make_connection(net::any_io_executor ex, const ServerConfig& cfg,
                                            std::map<std::string, std::string> env,
                                            std::map<std::string, std::string> headers,
                                            json::object client_capabilities);

// One upstream message at most: a stdio line, a remote answer's body or SSE event ("64 MiB" in errors).
inline constexpr std::size_t kMaxMessage = std::size_t(64) << 20;

inline constexpr const char* kLatestProtocol = "2025-11-25";
inline bool supported_protocol_version(std::string_view v) {
  return v == "2025-11-25" || v == "2025-06-18" || v == "2025-03-26" || v == "2024-11-05";
}

}  // namespace gh::upstream
