// Remote upstreams: MCP Streamable HTTP and the legacy HTTP+SSE transport (2024-11-05).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url.hpp>

#include <algorithm>

#include "core/budget.hpp"
#include "core/log.hpp"
#include "core/util.hpp"
#include "http/client.hpp"
#include "http/sse.hpp"
#include "jsonrpc/message.hpp"
#include "upstream/connection.hpp"

namespace gh::upstream {

namespace bhttp = boost::beast::http;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);

namespace {

using HttpRequest = http::ClientRequest;

// Delivers every JSON-RPC message of a JSON body (one object or a batch array).
template <typename F>
bool for_each_message(std::string_view body, F&& f) {
  boost::system::error_code ec;
  auto v = parse_json(body, ec);
  if (ec) return false;
  if (v.is_array())
    for (auto& m : v.as_array()) f(std::move(m));
  else
    f(std::move(v));
  return true;
}


bool mentions_session(std::string_view body) {
  std::string lower(body.substr(0, 1000));
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.find("session") != std::string::npos;
}

}  // namespace

class HttpConnection final : public Connection {
 public:
  using Connection::Connection;
  ~HttpConnection() override {
    if (pool_) pool_->close();
    if (stream_pool_) stream_pool_->close();
  }

 protected:
  net::awaitable<std::optional<std::string>> start_transport() override {
    http::Origin origin;
    if (!http::Origin::parse(cfg_.url, origin, target_)) co_return "invalid url " + cfg_.url;
    pool_ = std::make_shared<http::ClientPool>(ex_, origin);
    pool_->set_max_connections(cfg_.max_connections);
    // The standalone GET stream stays open as long as the session: on a connection of its own, so that it
    // never takes one of maxConnections from the calls (with maxConnections 1, every call waited). (A resumed
    // response stream is a call's own and counts as one.)
    stream_pool_ = std::make_shared<http::ClientPool>(ex_, origin, 0);
    stream_pool_->set_max_connections(1);
    configured_headers_.clear();
    for (const auto& [k, v] : headers_) {
      HttpRequest r;
      r.set(k, v);
      configured_headers_ += r.headers;
    }
    post_head_.lines.clear();  // rebuilt with the configured lines on the next call
    session_id_.clear();
    ++epoch_;
    co_return std::nullopt;
  }

  void send_message(std::string text, uint64_t related) override {
    if (!pool_) return;
    auto self = std::static_pointer_cast<HttpConnection>(shared_from_this());
    bool handshake = sending_handshake_;  // the initialize request of handshake(): must not wait for itself
    net::co_spawn(ex_, post(self, std::move(text), related, epoch_, true, handshake), net::detached);
  }

  net::awaitable<void> send_ordered(std::string text) override {  // notifications/initialized
    auto self = std::static_pointer_cast<HttpConnection>(shared_from_this());
    co_await post(self, std::move(text), 0, epoch_, false, true);
  }

  void stop_transport() override {
    ++epoch_;
    if (pool_ && !session_id_.empty()) {
      // Best effort: tell the server the session is over, on a fresh pool that outlives this one.
      auto origin = pool_->origin();
      auto sid = session_id_;
      auto target = target_;
      auto headers = headers_;
      auto ex = ex_;
      net::co_spawn(ex, [ex, origin, sid, target, headers]() -> net::awaitable<void> {
        auto pool = std::make_shared<http::ClientPool>(ex, origin, 1);
        HttpRequest req{bhttp::verb::delete_, target};
        for (const auto& [k, v] : headers) req.set(k, v);
        req.set("Mcp-Session-Id", sid);
        co_await pool->request(std::move(req), Clock::now() + std::chrono::seconds(2));
      }, net::detached);
    }
    if (pool_) pool_->close();
    pool_.reset();
    if (stream_pool_) stream_pool_->close();
    stream_pool_.reset();
    session_id_.clear();
  }

 private:
  HttpRequest make_request(bhttp::verb verb) const {
    HttpRequest req{verb, target_};
    if (verb == bhttp::verb::post) {  // every call: the head's lines are built once per session
      if (post_head_.sid != session_id_ || post_head_.version != protocol_version_ || post_head_.lines.empty()) {
        post_head_.sid = session_id_;
        post_head_.version = protocol_version_;
        HttpRequest r;
        add_session_lines(r, "application/json, text/event-stream");
        r.set("Content-Type", "application/json");
        post_head_.lines = std::move(r.headers);
      }
      req.headers = post_head_.lines;
    } else {
      add_session_lines(req, "text/event-stream");
    }
    return req;
  }
  void add_session_lines(HttpRequest& req, std::string_view accept) const {
    req.headers = configured_headers_;
    req.set("Accept", accept);
    if (!session_id_.empty()) req.set("Mcp-Session-Id", session_id_);
    if (!protocol_version_.empty()) req.set("MCP-Protocol-Version", protocol_version_);
  }

  // POSTs one message. Responses arrive as JSON or as an SSE stream; messages on that stream relate to `related`.
  static net::awaitable<void> post(std::shared_ptr<HttpConnection> self, std::string text, uint64_t related,
                                   uint64_t epoch, bool may_retry, bool handshake) {
    if (!handshake && self->renewing_) {  // a new session is being opened: send with it, not without one
      auto ev = self->renewing_;
      co_await ev->wait();
    }
    if (!self->pool_ || self->epoch_ != epoch) co_return;
    auto req = self->make_request(bhttp::verb::post);
    if (related)
      for (const auto& [k, v] : self->call_headers(related)) req.set(k, v);
    req.body = text;
    std::string sent_session = self->session_id_;
    auto timeout = self->timeout();
    auto deadline = Clock::now() + timeout + std::chrono::seconds(5);
    bool is_initialize = handshake && related != 0;
    bool sse = false;
    sse::Decoder decoder(kMaxMessage);
    std::string json_body;
    auto pool = self->pool_;
    // What of the answer is held while it is read counts against UPSTREAM_MEMORY_LIMIT_MB (core/budget.hpp).
    budget::Share share;
    enum class Refused { no, too_large, memory } refused = Refused::no;  // why the answer was not read to its end
    // The callbacks live in this frame, which outlives the request: handed over by reference, neither
    // std::function allocates (their captures would not fit in its small buffer).
    auto on_body = [&](std::string_view data) -> bool {
      if (self->epoch_ != epoch) return false;
      // (asked with nothing about once a second while the answer is awaited: a call that ended meanwhile —
      // cancelled, timed out — wants none of it, and its connection is given up rather than held to the deadline)
      if (data.empty()) return !related || self->is_pending(related);
      if (sse) {
        bool ok = decoder.feed(data, [&](sse::Event&& ev) {
          if (ev.event != "message" || ev.data.empty()) return;
          if (!self->deliver_text(ev.data, related))
            log::warn("upstream sent an SSE event that is not JSON", {{"server", self->cfg_.id},
                                                                      {"data", self->quote(ev.data)}});
        });
        if (!ok) refused = Refused::too_large;
        else if (!share.resize(decoder.buffered())) refused = Refused::memory;
        // The call answered, the stream has done its work: a server that keeps it open would hold this pool
        // connection until the deadline (the connection is closed, not reused).
        return refused == Refused::no && !(related && !self->is_pending(related));
      }
      if (json_body.size() + data.size() > kMaxMessage) refused = Refused::too_large;
      else if (!share.resize(json_body.size() + data.size())) refused = Refused::memory;
      if (refused != Refused::no) return false;
      json_body.append(data);
      return true;
    };
    auto on_headers = [&](const http::ResponseHead& h) {
      sse = h.status >= 200 && h.status < 300 && h.content_type.find("text/event-stream") != std::string::npos;
      // Take the session id before the body is delivered: the caller resumes on the response and
      // its next message must carry it.
      if (is_initialize && !h.session_id.empty() && self->epoch_ == epoch) self->session_id_ = h.session_id;
    };
    auto res = co_await pool->request(std::move(req), deadline, std::ref(on_body), deadline, kMaxMessage,
                                      std::ref(on_headers));
    if (self->epoch_ != epoch) co_return;
    if (refused != Refused::no) {
      std::string why = refused == Refused::memory
                            ? "too many large answers are being read at once (UPSTREAM_MEMORY_LIMIT_MB); try again"
                            : "its answer is over 64 MiB";
      log::warn("upstream answer not read", {{"server", self->cfg_.id}, {"reason", why},
                                             {"held_bytes", budget::counts().held}});
      if (related) self->fail_call(related, jsonrpc::code::internal_error,
                                   "Upstream server '" + self->cfg_.id + "' answered, but the gateway cannot take it: " + why);
      co_return;
    }
    if (res.ec && res.status == 0) {
      if (related && !self->is_pending(related)) {  // given up (cancelled, timed out): its connection let go
        log::debug("upstream request given up", {{"server", self->cfg_.id}});
        co_return;
      }
      log::warn("upstream request failed", {{"server", self->cfg_.id}, {"error", res.ec.message()}});
      if (related) self->fail_call(related, jsonrpc::code::internal_error,
                                   "Upstream server '" + self->cfg_.id + "' is unreachable: " + res.ec.message());
      if (is_initialize) self->transport_failed("unreachable: " + res.ec.message());
      co_return;
    }
    // The spec says 404 for an unknown session; several servers (the SDK's examples among them) say 400
    // "No valid session ID": both mean the session is gone.
    bool session_lost = res.status == 404 || (res.status == 400 && mentions_session(json_body));
    if (session_lost && !sent_session.empty() && may_retry && !is_initialize) {
      // The upstream forgot our session (restart, expiry): open a new one and send this message again.
      if (co_await self->renew_session(sent_session) && self->epoch_ == epoch) {
        co_await post(self, std::move(text), related, epoch, false, false);
        co_return;
      }
      if (related) self->fail_call(related, jsonrpc::code::internal_error,
                                   "Upstream server '" + self->cfg_.id + "' lost the session and a new one failed");
      co_return;
    }
    // (an answer cut off or unreadable mid-body is no empty answer: its call fails below, saying why)
    if (!res.ec && (res.status == 202 || (res.status >= 200 && res.status < 300 && json_body.empty() && !sse))) co_return;
    if (res.status >= 200 && res.status < 300) {
      if (!sse && !res.ec) {
        // At once: the body is complete and the pool has its connection back; nothing below touches the call.
        if (!self->deliver_text(json_body, related, true)) {
          log::warn("upstream sent a body that is not JSON", {{"server", self->cfg_.id}, {"body", self->quote(json_body)}});
          if (related) self->fail_call(related, jsonrpc::code::internal_error,
                                       "Upstream server '" + self->cfg_.id + "' sent an invalid response");
        }
      }
      if (sse && related && self->is_pending(related) && !decoder.last_event_id().empty())
        co_await resume(self, related, epoch, decoder.last_event_id(), decoder.retry_ms());
      if (res.ec && related)
        self->fail_call(related, jsonrpc::code::internal_error,
                        "Upstream server '" + self->cfg_.id + "' closed the response stream: " + res.ec.message());
      else if (related)  // the stream ended without an answer
        self->fail_call(related, jsonrpc::code::internal_error,
                        "Upstream server '" + self->cfg_.id + "' ended the response without an answer");
      co_return;
    }
    // An HTTP error. A JSON-RPC error body is delivered as is; anything else becomes an error naming the status.
    bool delivered = false;
    if (!json_body.empty() && related) {
      for_each_message(json_body, [&](json::value m) {
        if (m.is_object() && m.as_object().contains("error") && m.as_object().contains("id") &&
            !m.as_object().at("id").is_null()) {
          if (auto* e = m.as_object().at("error").if_object())  // (the server's text about a refused request)
            for (auto field : {"message", "data"})
              if (auto* t = e->if_contains(field); t && t->is_string()) *t = self->redact(std::string(t->as_string()));
          self->deliver(std::move(m), related);
          delivered = true;
        }
      });
    }
    if (!delivered && related)
      self->fail_call(related, jsonrpc::code::internal_error,
                      "Upstream server '" + self->cfg_.id + "' answered HTTP " + std::to_string(res.status) +
                          (json_body.empty() ? "" : ": " + self->quote(json_body)));
    if (is_initialize && !delivered) self->transport_failed("HTTP " + std::to_string(res.status));
  }

  // Single-flight renewal of a session the server answered 404 for; true when a new session is ready.
  net::awaitable<bool> renew_session(std::string old) {
    auto self = std::static_pointer_cast<HttpConnection>(shared_from_this());
    if (renewing_) {
      auto ev = renewing_;
      co_await ev->wait();
      co_return !session_id_.empty();
    }
    if (session_id_ != old) co_return !session_id_.empty();  // already renewed by another call
    log::info("upstream session expired, re-initializing", {{"server", cfg_.id}});
    renewing_ = std::make_shared<Event>(ex_);
    auto ev = renewing_;
    session_id_.clear();
    bump_generation();
    auto err = co_await handshake();
    if (!err) co_await send_ordered(to_json(jsonrpc::make_notification("notifications/initialized", nullptr)));
    else log::warn("upstream session renewal failed", {{"server", cfg_.id}, {"error", *err}});
    renewing_.reset();
    ev->set();
    if (!err && !session_id_.empty()) on_ready();
    co_return !err && !session_id_.empty();
  }

  // The server closed a response stream before answering (SSE polling, SEP-1699): reconnect with GET and
  // Last-Event-ID until the answer arrives, a bounded number of times.
  static net::awaitable<void> resume(std::shared_ptr<HttpConnection> self, uint64_t related, uint64_t epoch,
                                     std::string last_id, int retry_ms) {
    net::steady_timer timer(self->ex_);
    for (int attempt = 0; attempt < 10 && self->epoch_ == epoch && self->is_pending(related); ++attempt) {
      timer.expires_after(std::chrono::milliseconds(std::clamp(retry_ms < 0 ? 1000 : retry_ms, 0, 30000)));
      co_await timer.async_wait(kTuple);
      if (self->epoch_ != epoch || !self->is_pending(related)) co_return;
      auto req = self->make_request(bhttp::verb::get);
      req.set("Last-Event-ID", last_id);
      sse::Decoder decoder(kMaxMessage);
      budget::Share share;  // (what the decoder holds counts against UPSTREAM_MEMORY_LIMIT_MB)
      auto pool = self->pool_;
      if (!pool) co_return;
      auto res = co_await pool->request(
          std::move(req), Clock::now() + std::chrono::seconds(30),
          [&](std::string_view data) -> bool {
            if (self->epoch_ != epoch) return false;
            if (data.empty()) return self->is_pending(related);  // (the pool's once-a-second "still wanted?")
            return decoder.feed(data, [&](sse::Event&& ev) {
              if (ev.event != "message" || ev.data.empty()) return;
              self->deliver_text(ev.data, related);
            }) && share.resize(decoder.buffered());
          },
          Clock::now() + self->timeout());
      if (res.status != 200) co_return;
      if (!decoder.last_event_id().empty()) last_id = decoder.last_event_id();
      if (decoder.retry_ms() >= 0) retry_ms = decoder.retry_ms();
    }
  }

  void on_ready() override {
    if (!session_id_.empty())
      net::co_spawn(ex_, get_stream(std::static_pointer_cast<HttpConnection>(shared_from_this()), epoch_, session_id_),
                    net::detached);
  }

  // The standalone GET stream for server-initiated messages; reconnects with backoff while this upstream
  // session lives (a renewed session starts its own loop).
  static net::awaitable<void> get_stream(std::shared_ptr<HttpConnection> self, uint64_t epoch, std::string session) {
    net::steady_timer timer(self->ex_);
    int failures = 0;
    while (self->stream_pool_ && self->epoch_ == epoch && self->session_id_ == session && self->state() != State::closed) {
      auto req = self->make_request(bhttp::verb::get);
      sse::Decoder decoder(kMaxMessage);
      budget::Share share;  // (what the decoder holds counts against UPSTREAM_MEMORY_LIMIT_MB)
      auto pool = self->stream_pool_;
      auto res = co_await pool->request(
          std::move(req), Clock::now() + std::chrono::seconds(30),
          [&](std::string_view data) -> bool {
            if (self->epoch_ != epoch || self->session_id_ != session) return false;
            if (data.empty()) return true;  // (the pool's once-a-second "still wanted?": fed, it would end a line)
            return decoder.feed(data, [&](sse::Event&& ev) {
              if (ev.event != "message" || ev.data.empty()) return;
              self->deliver_text(ev.data, 0);
            }) && share.resize(decoder.buffered());
          });
      if (self->epoch_ != epoch || self->session_id_ != session) co_return;
      if (res.status >= 400 && res.status < 500) co_return;  // no standalone stream (405), or not for us
      failures = res.status == 200 && !res.ec ? 0 : failures + 1;
      timer.expires_after(std::chrono::milliseconds(std::min(500LL << std::min(failures, 6), 30000LL)));
      co_await timer.async_wait(kTuple);
    }
  }

  std::shared_ptr<http::ClientPool> pool_, stream_pool_;  // calls; the standalone GET stream
  std::string target_;
  std::string session_id_;
  std::string configured_headers_;  // the server's own headers as request lines
  struct PostHead {
    std::string sid, version, lines;  // lines: configured + Accept, session, version, Content-Type
  };
  mutable PostHead post_head_;
  std::shared_ptr<Event> renewing_;
  uint64_t epoch_ = 0;
};

class SseConnection final : public Connection {
 public:
  using Connection::Connection;
  ~SseConnection() override {
    if (stream_pool_) stream_pool_->close();
    if (post_pool_) post_pool_->close();
  }

 protected:
  net::awaitable<std::optional<std::string>> start_transport() override {
    if (!http::Origin::parse(cfg_.url, origin_, target_)) co_return "invalid url " + cfg_.url;
    stream_pool_ = std::make_shared<http::ClientPool>(ex_, origin_, 1);
    post_pool_.reset();
    ++epoch_;
    endpoint_ready_ = std::make_shared<Event>(ex_);
    auto self = std::static_pointer_cast<SseConnection>(shared_from_this());
    auto ready = endpoint_ready_;
    net::co_spawn(ex_, stream(self, epoch_), net::detached);
    auto timeout = this->timeout();
    if (!co_await ready->wait_until(Clock::now() + timeout)) co_return "no endpoint event on the SSE stream";
    if (!post_pool_) co_return stream_error_.empty() ? std::string("SSE stream closed") : stream_error_;
    co_return std::nullopt;
  }

  void send_message(std::string text, uint64_t related) override {
    if (!post_pool_) return;
    auto self = std::static_pointer_cast<SseConnection>(shared_from_this());
    net::co_spawn(ex_, post(self, std::move(text), related, epoch_), net::detached);
  }

  void stop_transport() override {
    ++epoch_;
    if (stream_pool_) stream_pool_->close();
    if (post_pool_) post_pool_->close();
    stream_pool_.reset();
    post_pool_.reset();
    if (endpoint_ready_) endpoint_ready_->set();
  }

 private:
  static net::awaitable<void> stream(std::shared_ptr<SseConnection> self, uint64_t epoch) {
    HttpRequest req{bhttp::verb::get, self->target_};
    for (const auto& [k, v] : self->headers_) req.set(k, v);
    req.set("Accept", "text/event-stream");
    sse::Decoder decoder(kMaxMessage);
    budget::Share share;  // (what the decoder holds counts against UPSTREAM_MEMORY_LIMIT_MB)
    auto ready = self->endpoint_ready_;
    auto pool = self->stream_pool_;
    auto res = co_await pool->request(
        std::move(req), Clock::now() + std::chrono::seconds(30), [&](std::string_view data) -> bool {
          if (self->epoch_ != epoch) return false;
          if (data.empty()) return true;  // (the pool's once-a-second "still wanted?": fed, it would end a line)
          return share.resize(decoder.buffered() + data.size()) && decoder.feed(data, [&](sse::Event&& ev) {
            if (ev.event == "endpoint") {
              boost::urls::url base(self->cfg_.url);
              auto ref = boost::urls::parse_uri_reference(trim(ev.data));
              if (!ref) return;
              boost::urls::url dest;
              if (!boost::urls::resolve(base, *ref, dest)) return;
              http::Origin origin;
              if (!http::Origin::parse(dest.buffer(), origin, self->post_target_)) return;
              // Messages (and the configured headers: credentials) go only where the stream came from, as
              // the MCP SDK requires; an endpoint elsewhere would be a server steering them to any host.
              const auto& own = self->origin_;
              if (origin.tls != own.tls || !iequals(origin.host, own.host) || origin.port != own.port) {
                log::error("upstream's SSE endpoint is on another origin; refused",
                           {{"server", self->cfg_.id}, {"endpoint", dest.buffer()}});
                self->stream_error_ = "SSE endpoint on another origin";
                ready->set();  // the start fails now, not at its timeout
                return;
              }
              self->post_pool_ = std::make_shared<http::ClientPool>(self->ex_, origin);
              self->post_pool_->set_max_connections(self->cfg_.max_connections);
              ready->set();
            } else if (ev.event == "message" && !ev.data.empty()) {
              if (!self->deliver_text(ev.data, 0))
                log::warn("upstream sent an SSE event that is not JSON", {{"server", self->cfg_.id}});
            }
          });
        });
    if (self->epoch_ != epoch) co_return;
    self->stream_error_ = res.ec ? res.ec.message() : "HTTP " + std::to_string(res.status);
    ready->set();
    self->transport_failed("SSE stream ended (" + self->stream_error_ + ")");
  }

  static net::awaitable<void> post(std::shared_ptr<SseConnection> self, std::string text, uint64_t related,
                                   uint64_t epoch) {
    if (!self->post_pool_ || self->epoch_ != epoch) co_return;
    HttpRequest req{bhttp::verb::post, self->post_target_};
    for (const auto& [k, v] : self->headers_) req.set(k, v);
    req.set("Content-Type", "application/json");
    if (related)
      for (const auto& [k, v] : self->call_headers(related)) req.set(k, v);
    req.body = std::move(text);
    auto pool = self->post_pool_;
    auto res = co_await pool->request(std::move(req), Clock::now() + std::chrono::seconds(30), {},
                                                  Clock::now() + std::chrono::seconds(30), 1 << 20);
    if (self->epoch_ != epoch) co_return;
    if ((res.ec || res.status >= 300) && related)
      self->fail_call(related, jsonrpc::code::internal_error,
                      "Upstream server '" + self->cfg_.id + "' refused the message: " +
                          (res.ec ? res.ec.message() : "HTTP " + std::to_string(res.status)));
  }

  std::shared_ptr<http::ClientPool> stream_pool_, post_pool_;
  std::shared_ptr<Event> endpoint_ready_;
  http::Origin origin_;  // the SSE URL's, parsed at start
  std::string target_, post_target_, stream_error_;
  uint64_t epoch_ = 0;
};

std::shared_ptr<Connection> make_stdio_connection(net::any_io_executor ex, const ServerConfig& cfg,
                                                  std::map<std::string, std::string> env, json::object caps);

std::shared_ptr<Connection> make_connection(net::any_io_executor ex, const ServerConfig& cfg,
                                            std::map<std::string, std::string> env,
                                            std::map<std::string, std::string> headers, json::object caps) {
  switch (cfg.transport) {
    case Transport::stdio: return make_stdio_connection(std::move(ex), cfg, std::move(env), std::move(caps));
    case Transport::streamable_http:
      return std::make_shared<HttpConnection>(std::move(ex), cfg, std::move(env), std::move(headers), std::move(caps));
    case Transport::sse:
      return std::make_shared<SseConnection>(std::move(ex), cfg, std::move(env), std::move(headers), std::move(caps));
  }
  return nullptr;
}

}  // namespace gh::upstream
