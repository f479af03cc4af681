#include "upstream/connection.hpp"

#include <array>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include "core/log.hpp"
#include "core/util.hpp"
#include "jsonrpc/message.hpp"

namespace gh::upstream {

std::string_view to_string(State s) {
  switch (s) {
    case State::idle: return "idle";
    case State::starting: return "starting";
    case State::ready: return "ready";
    case State::backoff: return "backoff";
    case State::closed: return "closed";
  }
  return "idle";
}

namespace {
// 250 ms, 500 ms, 1 s … capped at 30 s.
std::chrono::milliseconds backoff(int failures) {
  auto ms = 250LL << std::min(std::max(failures - 1, 0), 7);
  return std::chrono::milliseconds(std::min(ms, 30000LL));
}
std::optional<uint64_t> as_u64(const json::value& v) {
  if (v.is_int64() && v.as_int64() >= 0) return static_cast<uint64_t>(v.as_int64());
  if (v.is_uint64()) return v.as_uint64();
  return std::nullopt;
}
}  // namespace

Connection::Connection(net::any_io_executor ex, const ServerConfig& cfg, std::map<std::string, std::string> env,
                       std::map<std::string, std::string> headers, json::object caps)
    : ex_(std::move(ex)), cfg_(cfg), env_(std::move(env)), headers_(std::move(headers)), client_caps_(std::move(caps)) {}

Connection::~Connection() = default;

net::awaitable<std::optional<std::string>> Connection::ensure_ready() {
  if (use_if_ready()) co_return std::nullopt;
  if (state_ == State::closed) co_return "connection closed";
  if (state_ == State::starting) {
    auto self = shared_from_this();
    auto ev = ready_;  // a later start() replaces ready_; keep this one alive while waiting
    co_await ev->wait();
    if (state_ == State::ready) co_return std::nullopt;
    co_return last_error_.empty() ? std::string("not ready") : last_error_;
  }
  if (state_ == State::backoff) {
    auto now = Clock::now();
    if (retry_at_ > now) {
      if (retry_at_ - now > std::chrono::seconds(2)) {
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(retry_at_ - now).count() + 1;
        co_return last_error_ + " (retrying in " + std::to_string(secs) + "s)";
      }
      auto self = shared_from_this();
      net::steady_timer t(ex_, retry_at_);
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
      co_return co_await ensure_ready();
    }
  }
  co_return co_await start();
}

net::awaitable<std::optional<std::string>> Connection::handshake() {
  auto self = shared_from_this();
  json::object params;
  params["protocolVersion"] = kLatestProtocol;
  params["capabilities"] = client_caps_;
  params["clientInfo"] = json::object{{"name", "gatehouse"}, {"version", "0.1.0"}};
  CallOptions opts;
  opts.timeout = timeout();
  sending_handshake_ = true;  // call_started sends before its first suspension
  auto call = call_started("initialize", std::move(params), opts, nullptr);
  auto reply = co_await std::move(call);
  auto& resp = reply.object();
  if (auto* e = resp.if_contains("error")) co_return redact("initialize failed: " + to_json(*e));
  auto* r = resp.if_contains("result");
  if (!r || !r->is_object()) co_return "initialize returned no result";
  auto& res = r->as_object();
  auto* pv = res.if_contains("protocolVersion");
  if (!pv || !pv->is_string() || !supported_protocol_version(pv->as_string()))
    co_return "upstream chose an unsupported protocol version";
  protocol_version_ = std::string(pv->as_string());
  if (auto* c = res.if_contains("capabilities"); c && c->is_object()) server_caps_ = c->as_object();
  if (auto* i = res.if_contains("serverInfo")) server_info_ = *i;
  if (auto* ins = res.if_contains("instructions"); ins && ins->is_string()) instructions_ = std::string(ins->as_string());
  co_return std::nullopt;
}

net::awaitable<std::optional<std::string>> Connection::start() {
  auto self = shared_from_this();
  state_ = State::starting;
  ready_ = std::make_shared<Event>(ex_);
  auto started = Clock::now();
  std::optional<std::string> err = co_await start_transport();
  if (!err) err = co_await handshake();
  auto ready = ready_;
  if (state_ != State::starting) {
    // closed (or failed) while starting
    if (!err) err = last_error_.empty() ? std::string("closed while starting") : last_error_;
    ready->set();
    co_return err;
  }
  if (err) {
    last_error_ = *err;
    ++failures_;
    auto delay = backoff(failures_);
    retry_at_ = Clock::now() + delay;
    state_ = State::backoff;
    stop_transport();
    log::warn("upstream start failed", {{"server", cfg_.id}, {"error", *err}, {"retry_in_ms", delay.count()}});
  } else {
    co_await send_ordered(to_json(jsonrpc::make_notification("notifications/initialized", nullptr)));
  }
  if (!err && state_ != State::starting) err = last_error_.empty() ? std::string("closed while starting") : last_error_;
  if (!err) {
    state_ = State::ready;
    ready_at_ = Clock::now();
    last_error_.clear();
    on_ready();
    log::info("upstream ready", {{"server", cfg_.id}, {"transport", to_string(cfg_.transport)},
                                 {"protocol", protocol_version_},
                                 {"ms", std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()}});
  }
  ready->set();
  co_return err;
}

net::awaitable<jsonrpc::Reply> Connection::call(std::string method, json::value params, CallOptions opts,
                                              CallHandle* handle) {
  // Not a coroutine itself: on a ready connection (the usual case) the caller awaits call_started's frame
  // directly, with no frame of this function's or ensure_ready's between.
  if (use_if_ready()) return call_started(std::move(method), std::move(params), std::move(opts), handle);
  return call_when_ready(std::move(method), std::move(params), std::move(opts), handle);
}

net::awaitable<jsonrpc::Reply> Connection::call_when_ready(std::string method, json::value params, CallOptions opts,
                                                         CallHandle* handle) {
  auto self = shared_from_this();
  if (auto err = co_await ensure_ready())
    co_return jsonrpc::make_error(nullptr, jsonrpc::code::internal_error,
                                  "Upstream server '" + cfg_.id + "' is unavailable: " + *err);
  // Cancelled while the connection started (a process spawned, an HTTP session opened): not carried out.
  if (handle && handle->cancelled)
    co_return jsonrpc::make_error(nullptr, jsonrpc::code::internal_error, "The request was cancelled before it was sent");
  co_return co_await call_started(std::move(method), std::move(params), std::move(opts), handle);
}

net::awaitable<jsonrpc::Reply> Connection::call_started(std::string method, json::value params, CallOptions opts,
                                                      CallHandle* handle) {
  auto self = shared_from_this();
  uint64_t id = ++next_id_;
  Pending p;
  p.deadline = Clock::now() + opts.timeout;
  p.sink = std::move(opts.sink);
  p.headers = std::move(opts.headers);
  if (params.is_object()) {
    if (auto* meta = params.as_object().if_contains("_meta"); meta && meta->is_object()) {
      if (auto* tok = meta->as_object().if_contains("progressToken")) {
        p.progress_token = *tok;
        *tok = id;  // unique on this shared session; mapped back in deliver()
      }
    }
  }
  pending_[id] = &p;
  if (handle) handle->upstream_id = id;
  last_used_ = Clock::now();
  send_message(opts.raw_params.empty() ? to_json_request(id, method, params)
                                       : to_json_request_raw(id, method, opts.raw_params),
               id);
  sending_handshake_ = false;
  if (!p.done) {
    watch_deadline(p.deadline);
    co_await net::async_initiate<const net::use_awaitable_t<>&, void()>(
        [&p](auto handler) { p.resume.emplace(std::move(handler)); }, net::use_awaitable);
  }
  pending_.erase(id);
  last_used_ = Clock::now();
  if (p.timed_out) {
    log::warn("upstream call timed out", {{"server", cfg_.id}, {"method", method}, {"timeout_ms", opts.timeout.count()}});
    notify("notifications/cancelled", json::object{{"requestId", id}, {"reason", "timed out at the gateway"}});
    co_return jsonrpc::make_error(nullptr, jsonrpc::code::request_timeout,
                                  "Upstream server '" + cfg_.id + "' did not answer " + method + " within " +
                                      std::to_string(opts.timeout.count()) + " ms");
  }
  if (p.response) co_return std::move(*p.response);
  co_return jsonrpc::make_error(nullptr, jsonrpc::code::internal_error, "No response");
}

void Connection::notify(std::string_view method, json::value params) {
  if (state_ != State::ready) return;
  send_message(to_json(jsonrpc::make_notification(method, std::move(params))), 0);
}

void Connection::finish(Pending& p, bool at_once) {
  p.done = true;
  if (!p.resume) return;  // not waiting yet: it sees `done` before it would
  auto resume = std::move(*p.resume);
  p.resume.reset();
  if (at_once) std::move(resume)();
  else net::post(ex_, [resume = std::move(resume)]() mutable { std::move(resume)(); });
}

void Connection::watch_deadline(Clock::time_point t) {
  if (t >= deadline_armed_) return;
  if (!deadline_timer_) deadline_timer_ = std::make_unique<net::steady_timer>(ex_);
  deadline_armed_ = t;
  deadline_timer_->expires_at(t);
  deadline_timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (auto self = weak.lock(); self && !ec) self->deadline_reached();
  });
}

void Connection::deadline_reached() {
  deadline_armed_ = Clock::time_point::max();
  auto now = Clock::now(), next = Clock::time_point::max();
  for (auto& [id, p] : pending_) {
    if (p->done) continue;
    if (p->deadline <= now) {
      p->timed_out = true;
      finish(*p);  // queued: the caller erases its entry when it runs
    } else {
      next = std::min(next, p->deadline);
    }
  }
  if (next != Clock::time_point::max()) watch_deadline(next);
}

void Connection::cancel(uint64_t id, std::string_view reason) {
  auto it = pending_.find(id);
  if (it == pending_.end() || it->second->done) return;
  notify("notifications/cancelled", json::object{{"requestId", id}, {"reason", reason}});
  it->second->response = jsonrpc::make_error(nullptr, jsonrpc::code::request_timeout, "Request cancelled");
  finish(*it->second);
}

std::string Connection::redact(std::string text) const {
  // One pass per form of each value (as written, and as a JSON string escapes it: "\/" for '/', "\"" …),
  // building the result as it goes: linear in the text, whatever the value or how often it occurs. (A form the
  // same as an earlier one finds nothing left.)
  for (const auto& v : secret_values_) {
    if (v.size() < 4) continue;  // (a value that short would cut ordinary words)
    std::string escaped = to_json(json::value(v));
    escaped = escaped.substr(1, escaped.size() - 2);
    std::string slashed;
    for (char c : escaped) c == '/' ? slashed.append("\\/") : slashed.append(1, c);
    for (const std::string* form : std::array<const std::string*, 3>{&v, &escaped, &slashed}) {
      auto at = text.find(*form);
      if (at == std::string::npos) continue;
      std::string out;
      out.reserve(text.size());
      std::size_t from = 0;
      for (; at != std::string::npos; at = text.find(*form, from)) {
        out.append(text, from, at - from).append("\u2022\u2022\u2022");
        from = at + form->size();
      }
      out.append(text, from, std::string::npos);
      text = std::move(out);
    }
  }
  return text;
}

std::string Connection::quote(std::string_view text) const {
  std::size_t longest = 0;
  for (const auto& v : secret_values_) longest = std::max(longest, v.size());
  auto out = redact(std::string(text.substr(0, 300 + longest)));
  if (out.size() > 300) out.resize(300);
  return out;
}

void Connection::fail_call(uint64_t id, int code, std::string message) {
  auto it = pending_.find(id);
  // A call answered a moment ago is still in pending_ until its caller resumes: keep its answer.
  if (it == pending_.end() || it->second->done) return;
  it->second->response = jsonrpc::make_error(nullptr, code, redact(std::move(message)));
  finish(*it->second);
}

void Connection::transport_failed(std::string why) {
  if (state_ == State::closed || state_ == State::idle) return;
  bool was_ready = state_ == State::ready;
  why = redact(std::move(why));
  last_error_ = why;
  ++generation_;
  for (auto& [id, p] : pending_) {
    if (p->done) continue;
    p->response = jsonrpc::make_error(nullptr, jsonrpc::code::internal_error,
                                      "Upstream server '" + cfg_.id + "' failed: " + why);
    finish(*p);
  }
  if (state_ == State::starting) {
    // start() sees its handshake fail with this reason, and counts the failure once (backoff, log line).
    stop_transport();
    return;
  }
  // A crash after a while of good service restarts quickly (its earlier failures are forgotten); one soon
  // after each start counts as a failed start, so a server that keeps doing that backs off as one that fails.
  if (was_ready && Clock::now() - ready_at_ >= kStableAfter) failures_ = 0;
  ++failures_;
  auto delay = backoff(failures_);
  retry_at_ = Clock::now() + delay;
  state_ = State::backoff;
  stop_transport();
  log::warn("upstream failed", {{"server", cfg_.id}, {"error", why}, {"was_ready", was_ready},
                                {"retry_in_ms", delay.count()}});
}

void Connection::close(std::string_view why) {
  if (state_ == State::closed) return;
  auto prev = state_;
  state_ = State::closed;
  last_error_ = std::string(why);
  for (auto& [id, p] : pending_) {
    if (p->done) continue;
    p->response = jsonrpc::make_error(nullptr, jsonrpc::code::internal_error,
                                      "Upstream server '" + cfg_.id + "' connection closed: " + std::string(why));
    finish(*p);
  }
  if (prev != State::idle && prev != State::backoff) stop_transport();
  if (ready_) ready_->set();
}

bool Connection::deliver_text(std::string& text, uint64_t related, bool at_once) {
  if (auto passed = jsonrpc::Reply::pass_through(text)) {
    auto it = pending_.find(passed->first);
    if (it == pending_.end() || it->second->done) {
      log::debug("upstream response for no pending call", {{"server", cfg_.id}});
      return true;
    }
    it->second->response.emplace(std::move(passed->second));
    finish(*it->second, at_once);  // last, as in deliver()
    return true;
  }
  boost::system::error_code ec;
  auto v = parse_json(text, ec);
  if (ec) {
    // A JavaScript server writes a lone surrogate as \ud800, which the parser refuses: mended to U+FFFD rather
    // than the whole message dropped (its call, a tools/list, waited for its timeout).
    auto mended = mend_lone_surrogates(text);
    if (!mended) return false;
    ec = {};
    v = parse_json(*mended, ec);
    if (ec) return false;
  }
  if (v.is_array())
    for (auto& m : v.as_array()) deliver(std::move(m), related, at_once);
  else
    deliver(std::move(v), related, at_once);
  return true;
}

void Connection::deliver(json::value msg, uint64_t related, bool at_once) {
  std::string why;
  auto kind = jsonrpc::classify(msg, &why);
  if (kind == jsonrpc::Kind::invalid) {
    log::warn("upstream sent an invalid message", {{"server", cfg_.id}, {"error", why}});
    return;
  }
  auto& obj = msg.as_object();
  if (kind == jsonrpc::Kind::response) {
    auto id = as_u64(obj.at("id"));
    auto it = id ? pending_.find(*id) : pending_.end();
    if (it == pending_.end() || it->second->done) {
      log::debug("upstream response for no pending call", {{"server", cfg_.id}});
      return;
    }
    it->second->response.emplace(std::move(obj));  // keeps the parse arena: no copy of the result
    finish(*it->second, at_once);  // last: at once, the caller may already have erased the entry
    return;
  }
  std::shared_ptr<CallSink> sink;
  if (related) {
    if (auto it = pending_.find(related); it != pending_.end()) sink = it->second->sink;
  }
  auto listener = listener_.lock();
  if (kind == jsonrpc::Kind::request) {
    json::value upstream_id(obj.at("id"), json::storage_ptr());
    if (jsonrpc::method_of(obj) == "ping") {  // every MCP peer must answer ping; no need to ask the client
      send_message(to_json(jsonrpc::make_result(upstream_id, json::object{})), 0);
      return;
    }
    std::weak_ptr<Connection> weak = weak_from_this();
    auto reply = [weak, upstream_id, gen = generation_](json::object resp) {
      auto self = weak.lock();
      // after a restart or a new HTTP session, the id belongs to nobody upstream: drop the late reply
      if (!self || self->state_ != State::ready || self->generation_ != gen) return;
      resp["id"] = upstream_id;
      resp.erase("method");
      self->send_message(to_json(resp), 0);
    };
    if (sink) sink->server_request(std::move(obj), std::move(reply));
    else if (listener) listener->unsolicited_request(std::move(obj), std::move(reply));
    else
      reply(jsonrpc::make_error(nullptr, jsonrpc::code::method_not_found,
                                "This gateway session cannot relay server-to-client requests"));
    return;
  }
  auto method = jsonrpc::method_of(obj);
  if (method == "notifications/progress") {
    auto* params = obj.if_contains("params");
    if (!params || !params->is_object()) return;
    auto* tok = params->as_object().if_contains("progressToken");
    auto id = tok ? as_u64(*tok) : std::nullopt;
    auto it = id ? pending_.find(*id) : pending_.end();
    if (it == pending_.end() || !it->second->sink || it->second->progress_token.is_null()) return;
    *tok = it->second->progress_token;
    it->second->sink->notify(std::move(obj));
    return;
  }
  if (method.ends_with("/list_changed")) {
    if (listener) listener->list_changed(method);
    return;
  }
  if (sink) sink->notify(std::move(obj));
  else if (listener) listener->unsolicited(std::move(obj));
}

}  // namespace gh::upstream
