#include "mcp/endpoint.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "core/log.hpp"
#include "core/util.hpp"
#include "http/sse.hpp"
#include "jsonrpc/message.hpp"
#include "mcp/names.hpp"

namespace gh::mcp {

namespace bhttp = boost::beast::http;
namespace code = jsonrpc::code;

namespace {

// The most messages a JSON-RPC batch (protocol 2025-03-26) may hold.
constexpr std::size_t kMaxBatch = 1000;

net::awaitable<void> reply_error(http::Exchange& ex, bhttp::status status, int c, std::string_view message,
                                 json::value id = nullptr) {
  log::info("mcp request refused", {{"request_id", ex.request_id}, {"status", static_cast<int>(status)},
                                    {"error", message}});
  co_await ex.send_json(status, jsonrpc::error_text(std::move(id), c, message),
                        status == bhttp::status::method_not_allowed ? "Allow: GET, POST, DELETE\r\n" : "");
}

}  // namespace

namespace {
bhttp::response_header<> sse_header(const http::Request& req) {
  bhttp::response_header<> h;
  h.result(bhttp::status::ok);
  h.version(req.version());
  h.set(bhttp::field::content_type, "text/event-stream");
  h.set(bhttp::field::cache_control, "no-cache");
  return h;
}

// For analytics: the server and the tool (or prompt) a single call was about, as the client named them;
// Endpoint::finish() forgets them unless the hub sent the call on (Channel::routed).
void note_target(http::Exchange& ex, const std::string& scope, std::string_view name) {
  std::string_view server = scope, tool = name;
  if (!scope.empty() || split_name(name, server, tool)) {
    ex.mcp_server = std::string(server);
    ex.mcp_tool = std::string(tool);
  }
}

net::awaitable<void> send_accepted(http::Exchange& ex) {
  http::Response res{bhttp::status::accepted, ex.req.version()};
  res.keep_alive(ex.req.keep_alive());
  res.prepare_payload();
  co_await ex.send(std::move(res));
}
}  // namespace

net::awaitable<void> Endpoint::handle(http::Exchange& ex, std::string scope, Caller caller) {
  auto version = ex.req["MCP-Protocol-Version"];
  if (!version.empty() && !supported_protocol(version)) {
    co_await reply_error(ex, bhttp::status::bad_request, code::invalid_request,
                         "Unsupported MCP-Protocol-Version: " + std::string(version));
    co_return;
  }
  switch (ex.req.method()) {
    case bhttp::verb::post: co_await post(ex, scope, caller); break;
    case bhttp::verb::get: co_await get(ex, scope, caller); break;
    case bhttp::verb::delete_: co_await del(ex, scope, caller); break;
    default:
      co_await reply_error(ex, bhttp::status::method_not_allowed, code::invalid_request, "Method not allowed");
  }
}

std::shared_ptr<Session> Endpoint::session_of(http::Exchange& ex, const std::string& scope, const Caller& caller,
                                              bool& missing) {
  auto sid = ex.req["Mcp-Session-Id"];
  missing = sid.empty();
  if (missing) return nullptr;
  auto s = hub_.find_session(sid);
  // Another user's session id is answered like an unknown one: it reveals nothing and grants nothing.
  if (!s || s->scope != scope || s->closed || s->owner != caller.owner) return nullptr;
  s->caller = caller;  // the caller's rights as of this request
  return s;
}

net::awaitable<void> Endpoint::no_session(http::Exchange& ex, bool missing, const std::string& why) {
  if (missing) {
    co_await reply_error(ex, bhttp::status::bad_request, code::invalid_request,
                         "Bad Request: Mcp-Session-Id header is required");
    co_return;
  }
  if (why != "not an id this gateway issued")
    log::info("session not resumed", {{"request_id", ex.request_id}, {"reason", why}});
  co_await reply_error(ex, bhttp::status::not_found, code::request_timeout, "Session not found");
}

net::awaitable<std::shared_ptr<Session>> Endpoint::reopen(http::Exchange& ex, const std::string& scope,
                                                         const Caller& caller, bool missing) {
  std::string why;
  std::shared_ptr<Session> s;
  bool busy = false;
  if (!missing) s = co_await hub_.resume_session(std::string(ex.req["Mcp-Session-Id"]), scope, caller, why, busy);
  if (s) {
    log::info("session resumed", {{"request_id", ex.request_id}, {"session", s->id},
                                  {"scope", scope.empty() ? "*" : scope}, {"protocol", s->protocol_version}});
  } else if (busy) {  // shutting down: another instance can open it (the client or its load balancer tries again)
    co_await reply_error(ex, bhttp::status::service_unavailable, code::internal_error,
                         hub_.draining() ? "Gateway is shutting down" : "Too many open sessions; try again later");
  } else {
    co_await no_session(ex, missing, why);
  }
  co_return s;
}

net::awaitable<void> Endpoint::post(http::Exchange& ex, const std::string& scope, const Caller& caller) {
  auto ctype = ex.req[bhttp::field::content_type];
  if (!media_type_is(ctype, "application/json")) {
    co_await reply_error(ex, bhttp::status::unsupported_media_type, code::invalid_request,
                         "Unsupported Media Type: Content-Type must be application/json");
    co_return;
  }
  auto accept = ex.req[bhttp::field::accept];
  if (!header_has_token(accept, "application/json") || !header_has_token(accept, "text/event-stream")) {
    if (!header_has_token(accept, "*/*")) {
      co_await reply_error(ex, bhttp::status::not_acceptable, code::invalid_request,
                           "Not Acceptable: Accept must include application/json and text/event-stream");
      co_return;
    }
  }
  // The usual request, a tools/call, goes without a DOM (see scan_tool_call).
  std::optional<jsonrpc::ToolCall> call;
  if (hub_.scans_tool_calls(scope)) call = jsonrpc::scan_tool_call(ex.req.body());
  jsonrpc::Body body;
  if (!call) body = jsonrpc::parse_body(ex.req.body());
  if (body.error_code) {
    co_await reply_error(ex, bhttp::status::bad_request, body.error_code, body.error);
    co_return;
  }

  // initialize: a new session.
  if (!call && !body.batch) {
    std::string why;
    auto kind = jsonrpc::classify(body.messages[0], &why);
    if (kind == jsonrpc::Kind::invalid) {
      co_await reply_error(ex, bhttp::status::bad_request, code::invalid_request, "Invalid Request: " + why);
      co_return;
    }
    if (kind == jsonrpc::Kind::request && jsonrpc::method_of(body.messages[0].as_object()) == "initialize") {
      auto& msg = body.messages[0].as_object();
      if (hub_.draining()) {
        co_await reply_error(ex, bhttp::status::service_unavailable, code::internal_error, "Gateway is shutting down",
                             msg["id"]);
        co_return;
      }
      auto s = hub_.create_session(scope);
      if (!s) {
        co_await reply_error(ex, bhttp::status::service_unavailable, code::internal_error,
                             "Too many open sessions; try again later", msg["id"]);
        co_return;
      }
      s->owner = caller.owner;
      s->caller = caller;
      json::object params;
      if (auto* p = msg.if_contains("params"); p && p->is_object()) params = p->as_object();
      auto result = co_await hub_.initialize(s, params);
      hub_.seal_session(s);
      std::string session_header = "Mcp-Session-Id: " + s->id + "\r\n";
      log::info("session opened", {{"request_id", ex.request_id}, {"session", s->id},
                                   {"scope", scope.empty() ? "*" : scope}, {"protocol", s->protocol_version},
                                   {"dedicated", s->dedicated_mode}});
      co_await ex.send_json(bhttp::status::ok, to_json(jsonrpc::make_result(msg["id"], std::move(result))),
                            session_header);
      co_return;
    }
  }

  bool missing = false;
  auto s = session_of(ex, scope, caller, missing);
  if (!s) s = co_await reopen(ex, scope, caller, missing);
  if (!s) co_return;
  std::vector<json::value> early;  // answers known before dispatch (invalid batch members)
  std::vector<json::object> requests;
  if (call) {
    note_target(ex, scope, call->name);
  } else {
    if (body.batch && s->protocol_version != "2025-03-26") {
      co_await reply_error(ex, bhttp::status::bad_request, code::invalid_request,
                           "Invalid Request: JSON-RPC batches are not supported in protocol version " +
                               s->protocol_version);
      co_return;
    }
    // Each request of a batch is a call in flight at once: a bound, as for every other queue.
    if (body.messages.size() > kMaxBatch) {
      co_await reply_error(ex, bhttp::status::bad_request, code::invalid_request,
                           "Invalid Request: a batch holds at most " + std::to_string(kMaxBatch) + " messages");
      co_return;
    }

    for (auto& m : body.messages) {
      std::string why;
      auto kind = jsonrpc::classify(m, &why);
      if (kind == jsonrpc::Kind::invalid) {
        json::value id = m.is_object() && m.as_object().contains("id") ? m.as_object().at("id") : json::value(nullptr);
        if (!jsonrpc::valid_id(id)) id = nullptr;
        early.push_back(jsonrpc::make_error(id, code::invalid_request, "Invalid Request: " + why));
      } else if (kind == jsonrpc::Kind::request) {
        if (jsonrpc::method_of(m.as_object()) == "initialize" && body.batch)
          early.push_back(jsonrpc::make_error(m.as_object().at("id"), code::invalid_request,
                                             "initialize must not be part of a batch"));
        else
          requests.push_back(std::move(m.as_object()));
      } else {
        hub_.client_message(s, std::move(m.as_object()));
      }
    }
    // For analytics: which server and tool a single call was about.
    if (requests.size() == 1) {
      auto method = jsonrpc::method_of(requests[0]);
      auto* params = requests[0].if_contains("params");
      auto* name = params && params->is_object() ? params->as_object().if_contains("name") : nullptr;
      if ((method == "tools/call" || method == "prompts/get") && name && name->is_string()) {
        note_target(ex, scope, name->as_string());
      } else if (!scope.empty()) {
        ex.mcp_server = scope;
      }
    }
    if (requests.empty()) {
      if (early.empty()) {
        co_await send_accepted(ex);
      } else {
        auto status = body.batch ? bhttp::status::ok : bhttp::status::bad_request;
        json::value out = body.batch ? json::value(json::array(early.begin(), early.end())) : early.front();
        co_await ex.send_json(status, to_json(out));
      }
      co_return;
    }
  }

  if (hub_.draining()) {  // answers to relayed requests and cancellations above still went through
    co_await reply_error(ex, bhttp::status::service_unavailable, code::internal_error, "Gateway is shutting down");
    co_return;
  }
  if (call) {
    co_await answer_one(ex, s, {}, std::move(call));
    co_return;
  }
  if (!body.batch && requests.size() == 1) {
    co_await answer_one(ex, s, std::move(requests.front()));
    co_return;
  }
  co_await answer_many(ex, s, std::move(requests), std::move(early));
}


namespace {

// Streams the channel's messages as SSE until every answer is in, then the answers, and ends the stream.
// Sets ch->gone when the client is no longer there.
net::awaitable<void> stream_answers(http::Exchange& ex, std::shared_ptr<Channel> ch) {
  if (!co_await ex.begin_stream(sse_header(ex.req))) ch->gone = true;
  while (!ch->gone) {
    while (!ch->messages.empty() && !ch->gone) {
      auto m = std::move(ch->messages.front());
      ch->messages.pop_front();
      ch->queued_bytes -= m.size();
      if (!co_await ex.write(sse::encode(m))) ch->gone = true;
    }
    if (ch->gone || ch->finished == ch->expected) break;
    co_await ch->wake.wait();
    ch->wake.reset();
  }
  if (ch->gone) co_return;
  for (auto& r : ch->responses) co_await ex.write(sse::encode(r));
  co_await ex.end_stream();
}

// The answers when no message had to go first: one JSON body (an array for a batch), or, when every request
// was cancelled, an empty event stream (202 is only for POSTs that held no request).
net::awaitable<void> answer_plain(http::Exchange& ex, std::shared_ptr<Channel> ch, bool batch) {
  if (ch->responses.empty()) {
    bool open = co_await ex.begin_stream(sse_header(ex.req));
    if (open) co_await ex.end_stream();
    co_return;
  }
  if (!batch) {
    co_await ex.send_json(bhttp::status::ok, std::move(ch->responses.front()));
    co_return;
  }
  std::string body = "[";
  for (auto& r : ch->responses) {
    if (body.size() > 1) body += ',';
    body += r;
  }
  body += ']';
  co_await ex.send_json(bhttp::status::ok, std::move(body));
}

}  // namespace

void Endpoint::watch_client(http::Exchange& ex, const std::shared_ptr<Session>& s, const std::shared_ptr<Channel>& ch) {
  ex.on_disconnect([this, s, ch] { hub_.abandon(s, ch); });
}

void Endpoint::finish(http::Exchange& ex, const std::shared_ptr<Session>& s, const std::shared_ptr<Channel>& ch) {
  ex.stop_watching();
  // A call to a server that does not exist or that the caller may not use, or to a tool it may not call,
  // credits none: otherwise anyone could put names of their own in the report's top servers and tools.
  if (!ch->routed && !ex.mcp_tool.empty()) {
    ex.mcp_server.clear();
    ex.mcp_tool.clear();
  }
  if (ch->gone) {  // the dispatchers hold the channel, not this exchange: nothing waits on us
    hub_.abandon(s, ch);
    ex.close_after();
  }
}

net::awaitable<void> Endpoint::answer_one(http::Exchange& ex, std::shared_ptr<Session> s, json::object request,
                                          std::optional<jsonrpc::ToolCall> call) {
  auto exec = co_await net::this_coro::executor;
  auto ch = std::make_shared<Channel>(exec);
  ch->expected = 1;
  // The SSE writer starts only when a related message must go before the answer (rare: most calls are
  // answered with one JSON body, and pay for no writer).
  struct Writer {
    http::Exchange& ex;
    std::shared_ptr<Channel> ch;
    net::any_io_executor exec;
    std::shared_ptr<Event> done;  // set once the writer has ended the stream; null while there is no writer
  } writer{ex, ch, exec, nullptr};
  ch->on_first_message = [w = &writer] {  // (small enough for std::function to keep without allocating)
    w->done = std::make_shared<Event>(w->exec);
    net::co_spawn(w->exec, [&ex = w->ex, ch = w->ch, done = w->done]() -> net::awaitable<void> {
      co_await stream_answers(ex, ch);
      done->set();
    }, net::detached);
  };
  watch_client(ex, s, ch);
  std::optional<jsonrpc::Reply> resp;
  try {
    if (call) resp = co_await hub_.call_tool(s, std::move(*call), ch);
    else resp = co_await hub_.dispatch(s, std::move(request), ch);
  } catch (const std::exception& e) {
    log::error("dispatch failed", {{"request_id", ex.request_id}, {"error", e.what()}});
    resp = jsonrpc::make_error(nullptr, code::internal_error, "Internal error");
  }
  ch->on_first_message = nullptr;  // the lambda refers to this frame
  ch->finish(std::move(resp));
  if (writer.done) co_await writer.done->wait();
  finish(ex, s, ch);
  if (!writer.done && !ch->gone) co_await answer_plain(ex, ch, false);
}

net::awaitable<void> Endpoint::answer_many(http::Exchange& ex, std::shared_ptr<Session> s,
                                           std::vector<json::object> requests, std::vector<json::value> early) {
  auto exec = co_await net::this_coro::executor;
  auto ch = std::make_shared<Channel>(exec);
  for (auto& e : early) ch->responses.push_back(to_json(e));
  ch->expected = requests.size();
  for (auto& r : requests) {
    net::co_spawn(exec, [this, s, ch, r = std::move(r)]() mutable -> net::awaitable<void> {
      std::optional<jsonrpc::Reply> resp;
      try {
        resp = co_await hub_.dispatch(s, std::move(r), ch);
      } catch (const std::exception& e) {
        log::error("dispatch failed", {{"error", e.what()}});
        resp = jsonrpc::make_error(nullptr, code::internal_error, "Internal error");
      }
      ch->finish(std::move(resp));
    }, net::detached);
  }
  watch_client(ex, s, ch);
  // One JSON array unless a related message must go first; then the whole answer is an SSE stream.
  while (!ch->gone && ch->messages.empty() && ch->finished < ch->expected) {
    co_await ch->wake.wait();
    ch->wake.reset();
  }
  bool streamed = !ch->gone && !ch->messages.empty();
  if (streamed) co_await stream_answers(ex, ch);
  finish(ex, s, ch);
  if (!streamed && !ch->gone) co_await answer_plain(ex, ch, true);
}

net::awaitable<void> Endpoint::get(http::Exchange& ex, const std::string& scope, const Caller& caller) {
  if (!header_has_token(ex.req[bhttp::field::accept], "text/event-stream")) {
    co_await reply_error(ex, bhttp::status::not_acceptable, code::invalid_request,
                         "Not Acceptable: Accept must include text/event-stream");
    co_return;
  }
  bool missing = false;
  auto s = session_of(ex, scope, caller, missing);
  if (!s) s = co_await reopen(ex, scope, caller, missing);
  if (!s) co_return;
  if (s->get_attached) {
    co_await reply_error(ex, bhttp::status::conflict, code::invalid_request,
                         "Conflict: only one standalone SSE stream is allowed per session");
    co_return;
  }
  s->get_attached = true;  // before the first co_await: a second GET arriving meanwhile is the one refused
  bool began = co_await ex.begin_stream(sse_header(ex.req));
  if (!began) {
    s->get_attached = false;
    co_return;
  }
  auto exec = co_await net::this_coro::executor;
  if (!s->outbox_ready) s->outbox_ready = std::make_unique<Event>(exec);
  bool gone = false;
  auto on_gone = [s, &gone] {
    gone = true;
    if (s->outbox_ready) s->outbox_ready->set();
  };
  ex.on_disconnect(on_gone, true);  // at once: the session's one stream is free again for a reconnect
  while (!gone && !s->closed && !hub_.draining()) {
    while (!s->outbox.empty() && !gone) {
      auto m = std::move(s->outbox.front());
      s->outbox.pop_front();
      if (!co_await ex.write(sse::encode(m))) gone = true;
    }
    if (gone || s->closed || hub_.draining()) break;
    s->outbox_ready->reset();
    // wake on a message, the session closing, the client leaving, or every 25 s to send a keep-alive comment
    bool woke = co_await s->outbox_ready->wait_until(Clock::now() + std::chrono::seconds(25));
    if (!woke && !gone && !s->closed && !co_await ex.write(": keep-alive\n\n")) gone = true;
    s->last_seen = Clock::now();
  }
  s->get_attached = false;
  ex.stop_watching();
  co_await ex.end_stream();
  ex.close_after();
}

net::awaitable<void> Endpoint::del(http::Exchange& ex, const std::string& scope, const Caller& caller) {
  bool missing = false;
  auto s = session_of(ex, scope, caller, missing);
  std::string sid(ex.req["Mcp-Session-Id"]);
  if (!s) {
    // Not held here: ended from its id (nothing is opened for that) when it is the caller's and not ended.
    std::string why;
    std::optional<SessionTicket> ticket;
    bool store_down = false;
    if (!missing) ticket = co_await hub_.resumable(sid, scope, caller, why, &store_down);
    if (store_down) {  // (a 404 would tell the client the session is gone, and it would not try again)
      log::warn("session end refused: the store cannot be read", {{"request_id", ex.request_id}, {"session", sid}});
      co_await reply_error(ex, bhttp::status::service_unavailable, code::internal_error,
                           "The session's end could not be recorded; it is still open: try again");
      co_return;
    }
    if (!ticket) {
      co_await no_session(ex, missing, why);
      co_return;
    }
  }
  bool ended = co_await hub_.end_session(sid);
  if (!ended) {
    co_await reply_error(ex, bhttp::status::service_unavailable, code::internal_error,
                         "The session's end could not be recorded; it is still open: try again");
    co_return;
  }
  log::info("session closed by client", {{"request_id", ex.request_id}, {"session", sid}});
  http::Response res{bhttp::status::ok, ex.req.version()};
  res.keep_alive(ex.req.keep_alive());
  res.prepare_payload();
  co_await ex.send(std::move(res));
}

}  // namespace gh::mcp
