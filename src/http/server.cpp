#include "http/server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

#include <poll.h>
#include <charconv>
#include <sys/socket.h>

#include "core/log.hpp"
#include "http/body.hpp"
#include "http/head.hpp"
#include "http/wire.hpp"
#include "core/util.hpp"
#include "jsonrpc/message.hpp"

namespace gh::http {

using net::as_tuple;
using net::use_awaitable;
constexpr auto kTuple = as_tuple(use_awaitable);


Exchange::Exchange(Stream& stream, Request& r, std::string rid, std::string ip, const ServerLimits& limits,
                   Wire* wire, std::unique_ptr<ConnectionMemo>* memo)
    : req(r),
      request_id(std::move(rid)),
      client_ip(std::move(ip)),
      stream_(stream),
      limits_(limits),
      wire_(wire),
      memo_(memo) {}

Exchange::~Exchange() { stop_watching(); }

net::awaitable<void> Exchange::send(Response res) {
  stop_watching();
  if (responded_) co_return;
  responded_ = true;
  status_ = res.result_int();
  res.set("X-Request-Id", request_id);
  if (wire_ && !wire_->body_done) close_after_ = true;  // a body left unread: the connection cannot go on
  if (close_after_) res.keep_alive(false);
  if (!res.keep_alive()) close_after_ = true;
  // HEAD: the fields a GET would get (its Content-Length too), never a body (RFC 9110 §9.3.2).
  std::string_view body = req.method() == bhttp::verb::head ? std::string_view() : std::string_view(res.body());
  bytes_out_ += body.size();
  stream_.expires_after(limits_.write_timeout);
  std::string head = response_head(res);
  std::array<net::const_buffer, 2> bufs{net::buffer(head), net::buffer(body.data(), body.size())};
  auto [ec, n] = co_await net::async_write(stream_, bufs, kTuple);
  stream_.expires_never();
  if (ec) broken_ = true;
}

net::awaitable<void> Exchange::send_json(bhttp::status status, std::string body, std::string_view extra) {
  stop_watching();
  if (responded_) co_return;
  responded_ = true;
  status_ = static_cast<int>(status);
  if (!req.keep_alive() || (wire_ && !wire_->body_done)) close_after_ = true;
  using namespace std::string_view_literals;
  std::string head;
  head.reserve(160 + extra.size());
  append_all(head, req.version() == 10 ? "HTTP/1.0 "sv : "HTTP/1.1 "sv, Decimal(status_), " "sv,
             bhttp::obsolete_reason(status),
             "\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nX-Request-Id: "sv, request_id,
             "\r\nContent-Length: "sv, Decimal(body.size()),
             close_after_             ? "\r\nConnection: close\r\n"sv
             : req.version() == 10    ? "\r\nConnection: keep-alive\r\n"sv
                                      : "\r\n"sv,
             extra, "\r\n"sv);
  if (req.method() == bhttp::verb::head) body.clear();  // (its length is in the head)
  bytes_out_ += body.size();
  beast::buffers_suffix<std::array<net::const_buffer, 2>> bufs{{net::buffer(head), net::buffer(body)}};
  bufs.consume(stream_.write_now(bufs));
  if (net::buffer_size(bufs) == 0) co_return;
  stream_.expires_after(limits_.write_timeout);
  auto [ec, n] = co_await net::async_write(stream_, bufs, kTuple);
  stream_.expires_never();
  if (ec) broken_ = true;
}

net::awaitable<bool> Exchange::begin_stream(bhttp::response_header<> header) {
  if (responded_) co_return false;
  responded_ = streaming_ = true;
  status_ = header.result_int();
  bhttp::response<bhttp::empty_body> res{std::move(header)};
  res.set("X-Request-Id", request_id);
  // HTTP/1.0 knows no chunks: the body runs until the connection closes.
  unframed_ = req.version() < 11;
  if (unframed_) {
    close_after();
    res.keep_alive(false);
  } else {
    res.chunked(true);
  }
  bhttp::response_serializer<bhttp::empty_body> sr{res};
  stream_.expires_after(limits_.write_timeout);
  auto [ec, n] = co_await bhttp::async_write_header(stream_, sr, kTuple);
  stream_.expires_never();
  if (ec) broken_ = true;
  co_return !broken_;
}

net::awaitable<bool> Exchange::write(std::string_view data) {
  if (broken_ || !streaming_) co_return false;
  bytes_out_ += data.size();
  stream_.expires_after(limits_.write_timeout);
  boost::system::error_code ec;
  if (unframed_) std::tie(ec, std::ignore) = co_await net::async_write(stream_, net::buffer(data.data(), data.size()), kTuple);
  else std::tie(ec, std::ignore) = co_await net::async_write(stream_, bhttp::make_chunk(net::buffer(data.data(), data.size())), kTuple);
  stream_.expires_never();
  if (ec) broken_ = true;
  co_return !broken_;
}

net::awaitable<void> Exchange::end_stream() {
  stop_watching();
  if (broken_ || !streaming_) co_return;
  streaming_ = false;
  if (unframed_) co_return;  // (the connection's close ends it)
  stream_.expires_after(limits_.write_timeout);
  auto [ec, n] = co_await net::async_write(stream_, bhttp::make_chunk_last(), kTuple);
  stream_.expires_never();
  if (ec) broken_ = true;
}

void Exchange::on_disconnect(std::function<void()> cb, bool at_once) {
  stop_watching();
  watching_ = std::make_shared<Watch>();
  watching_->cb = std::move(cb);
  // Armed now, or by the server's watchdog (Server::watchdog) if the answer is still pending then; the
  // watchdog's hook is cleared by stop_watching(), so while it is set this exchange is alive.
  if (at_once) arm_watch();
  else stream_.start_watch = [this] { arm_watch(); };
}

void Exchange::arm_watch() {
  auto w = watching_;
  if (!w || !w->active) return;
  w->armed = true;
  auto& sock = stream_.socket();
  sock.async_wait(net::socket_base::wait_read, [this, w, &sock](boost::system::error_code ec) {
    if (!w->active) return;  // the exchange finished or stopped watching (while active, it is alive)
    if (!ec) {
      char c;
      ssize_t n = ::recv(sock.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) {  // a pipelined request, not a disconnect: it stays unread, so the socket stays readable
        w->armed = false;
        stream_.start_watch = [this] { poll_hangup(); };  // the server's watchdog, every second
        return;
      }
    } else if (ec == net::error::operation_aborted) {
      return;
    }
    w->active = false;
    auto cb = std::move(w->cb);
    cb();
  });
}

void Exchange::poll_hangup() {
  auto w = watching_;
  if (!w || !w->active) return;
  // POLLRDHUP: the client shut its side down, even with a pipelined request still unread.
  pollfd p{stream_.socket().native_handle(), POLLRDHUP, 0};
  if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
    w->active = false;
    auto cb = std::move(w->cb);
    cb();
    return;
  }
  stream_.start_watch = [this] { poll_hangup(); };
}

void Exchange::stop_watching() {
  stream_.start_watch = nullptr;
  if (!watching_) return;
  bool cancel = watching_->active && watching_->armed;
  watching_->active = false;
  watching_->cb = nullptr;
  watching_.reset();
  if (cancel) {
    boost::system::error_code ec;
    stream_.socket().cancel(ec);
  }
}

namespace {
ConnectionCounts counts;  // (the io thread's)

// A connection past max_connections: a 503 and a close, written without waiting (a new connection's send
// buffer is empty). What the client already sent is read first, so that the close does not reset the
// connection and lose the answer.
void refuse_connection(net::ip::tcp::socket& socket) {
  static const std::string answer = [] {
    std::string body = jsonrpc::error_text(nullptr, jsonrpc::code::internal_error, "Too many connections; retry later");
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
           "Connection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }();
  boost::system::error_code ec;
  socket.non_blocking(true, ec);
  char sink[16384];
  socket.read_some(net::buffer(sink), ec);
  socket.write_some(net::buffer(answer), ec);
  socket.shutdown(net::socket_base::shutdown_send, ec);
  socket.close(ec);
}
}  // namespace

ConnectionCounts connection_counts() { return counts; }

Server::Server(net::io_context& io, ServerLimits limits, Handler handler, RawRoute raw_route)
    : io_(io), limits_(limits), handler_(std::move(handler)), raw_route_(std::move(raw_route)), acceptor_(io),
      id_prefix_(random_hex(4)) {}

Server::~Server() = default;

uint16_t Server::listen(const std::string& host, uint16_t port) {
  net::ip::tcp::endpoint ep{net::ip::make_address(host), port};
  acceptor_.open(ep.protocol());
  acceptor_.set_option(net::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen(net::socket_base::max_listen_connections);
  return acceptor_.local_endpoint().port();
}

void Server::start() {
  net::co_spawn(io_, accept_loop(), net::detached);
  net::co_spawn(io_, watchdog(), net::detached);
}

net::awaitable<void> Server::watchdog() {
  net::steady_timer timer(io_);
  while (!stopping_ || !conns_.empty()) {
    timer.expires_after(std::chrono::seconds(1));
    co_await timer.async_wait(kTuple);
    auto now = Stream::Clock::now();
    for (auto& c : conns_) {
      if (!c.stream) continue;
      c.stream->enforce(now);
      if (auto start = std::exchange(c.stream->start_watch, nullptr)) start();
    }
  }
}

net::awaitable<void> Server::accept_loop() {
  net::steady_timer pause(io_);
  std::size_t failures = 0, refused = 0;  // since the last line logged about each
  auto last_logged = Stream::Clock::time_point{}, last_refusal_logged = last_logged;
  while (!stopping_) {
    auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
    if (ec) {
      if (ec == net::error::operation_aborted || stopping_) co_return;
      // Out of file descriptors (or memory) the pending connection stays queued and the next accept fails at
      // once: wait a moment for connections to close, and say so once a second, not once a try.
      ++failures;
      if (auto now = Stream::Clock::now(); now - last_logged >= std::chrono::seconds(1)) {
        log::warn("accept failed; pausing accepts", {{"error", ec.message()}, {"failures", failures}});
        last_logged = now;
        failures = 0;
      }
      pause.expires_after(std::chrono::milliseconds(50));
      co_await pause.async_wait(kTuple);
      continue;
    }
    if (counts.open >= limits_.max_connections) {
      refuse_connection(socket);
      ++counts.refused;
      ++refused;
      if (auto now = Stream::Clock::now(); now - last_refusal_logged >= std::chrono::seconds(1)) {
        log::warn("connections refused: at the limit", {{"max_connections", limits_.max_connections}, {"refused", refused}});
        last_refusal_logged = now;
        refused = 0;
      }
      continue;
    }
    ++counts.open;  // until serve() ends
    socket.set_option(net::ip::tcp::no_delay(true), ec);
    net::co_spawn(io_, serve(std::move(socket)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::error("connection failed", {{"error", ex.what()}});
      }
    });
  }
}

std::size_t Server::busy_connections() const {
  std::size_t n = 0;
  for (const auto& c : conns_) n += c.busy;
  return n;
}

void Server::stop_accepting() {
  stopping_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto& c : conns_)
    if (!c.busy && c.stream) c.stream->socket().shutdown(net::socket_base::shutdown_both, ec);
}

void Server::close_all() {
  boost::system::error_code ec;
  for (auto& c : conns_)
    if (c.stream) c.stream->socket().shutdown(net::socket_base::shutdown_both, ec);
}

namespace {
Response error_response(unsigned version, bhttp::status status, int code, std::string_view message) {
  Response res{status, version};
  res.set(bhttp::field::content_type, "application/json");
  res.body() = jsonrpc::error_text(nullptr, code, message);
  res.keep_alive(false);
  res.prepare_payload();
  return res;
}

// The answer to a request that is not read: the connection closes after it.
net::awaitable<void> refuse(Stream& stream, const ServerLimits& limits, unsigned version, bhttp::status status,
                            std::string_view message) {
  auto res = error_response(version, status, jsonrpc::code::invalid_request, message);
  stream.expires_after(limits.write_timeout);
  co_await bhttp::async_write(stream, res, kTuple);
}

net::awaitable<void> refuse_large_body(Stream& stream, const ServerLimits& limits, const std::string& client_ip,
                                       unsigned version, std::string_view target, std::size_t limit,
                                       std::optional<std::uint64_t> content_length = std::nullopt) {
  boost::json::object fields{{"client_ip", client_ip}, {"target", target}};
  if (content_length) fields["content_length"] = *content_length;
  log::info("request body too large", fields);
  co_await refuse(stream, limits, version, bhttp::status::payload_too_large,
                  "Request body too large (limit " + std::to_string(limit) + " bytes)");
}
// A request that could not be read to its end: the client went away (nothing to answer), took longer than the
// read timeout (logged; the watchdog has shut the connection, as nginx's client timeouts do), or sent bytes
// that are not HTTP (400, logged).
net::awaitable<void> refuse_unreadable(Stream& stream, const ServerLimits& limits, const std::string& client_ip,
                                       boost::system::error_code ec, std::string_view part) {
  if (stream.timed_out()) {
    log::info("request not received in time; connection closed", {{"client_ip", client_ip}, {"reading", part}});
  } else if (ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message &&
             ec != net::error::connection_reset && ec != net::error::operation_aborted && ec != net::error::eof) {
    log::info("bad http request", {{"client_ip", client_ip}, {"reading", part}, {"error", ec.message()}});
    co_await refuse(stream, limits, 11, bhttp::status::bad_request, "Malformed HTTP request");
  }
}
// A request in absolute-form ("GET http://host/path", RFC 9112 §3.2.2: a forward proxy's form, which an origin
// server must accept) becomes the origin-form it stands for: its host replaces Host (and is checked as Host is),
// and what is routed, checked and passed on is the path. False for any other form ("*", "host:port", other
// schemes, user info) and when Host is repeated (which a proxy in front might have read instead).
bool to_origin_form(Request& req) {
  auto u = boost::urls::parse_absolute_uri(req.target());
  if (!u || req.repeated(Request::Name::host) || !u->has_authority() || u->has_userinfo() || u->encoded_host().empty() ||
      (u->scheme_id() != boost::urls::scheme::http && u->scheme_id() != boost::urls::scheme::https))
    return false;
  std::string target = u->encoded_path().empty() ? "/" : std::string(u->encoded_path());
  if (u->has_query()) target.append("?").append(u->encoded_query());
  std::string host(u->encoded_host_and_port());  // copies: the view is into the request's own text
  req.target(target);
  req.set(bhttp::field::host, host);
  return true;
}
}  // namespace

net::awaitable<Server::Read> Server::read_with_beast(Stream& stream, beast::flat_buffer& buffer, Request& req,
                                                     const std::string& client_ip,
                                                     std::unique_ptr<ConnectionMemo>& memo) {
  RequestParser parser;
  parser.header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
  // A raw route's limit may be larger; it is known only once the head is read (the parser checks a
  // Content-Length against body_limit at the end of the head).
  parser.body_limit(raw_route_ ? std::max(limits_.max_body_bytes, limits_.raw_max_body_bytes) : limits_.max_body_bytes);
  auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
  if (ec) {
    if (ec == bhttp::error::header_limit) {
      log::info("request headers too large", {{"client_ip", client_ip}, {"limit", limits_.max_header_bytes}});
      co_await refuse(stream, limits_, 11, bhttp::status::request_header_fields_too_large, "Request headers too large");
    } else if (ec == bhttp::error::body_limit) {  // a Content-Length over the largest limit, seen with the head
      req.assign(parser.get(), parser.keep_alive());
      std::optional<std::uint64_t> claimed;
      auto text = req[bhttp::field::content_length];
      if (std::uint64_t v; std::from_chars(text.data(), text.data() + text.size(), v).ec == std::errc{}) claimed = v;
      co_await refuse_large_body(stream, limits_, client_ip, 11, req.target(),
                                 raw_route_ && raw_route_(req) ? limits_.raw_max_body_bytes : limits_.max_body_bytes,
                                 claimed);
    } else {
      co_await refuse_unreadable(stream, limits_, client_ip, ec, "head");
    }
    co_return Read::stop;
  }
  req.assign(parser.get(), parser.keep_alive());
  if (!req.target().starts_with('/') && !to_origin_form(req)) {
    log::info("bad http request", {{"client_ip", client_ip}, {"error", "request target not a path nor an http(s) URL"},
                                   {"target", req.target().substr(0, 200)}});
    co_await refuse(stream, limits_, req.version(), bhttp::status::bad_request,
                    "The request target must be a path or an http(s) URL (with one Host)");
    co_return Read::stop;
  }
  // RFC 9112 §6.3: a Transfer-Encoding whose last coding is not chunked leaves the body's end unknown (400,
  // and the connection closes); §6.1: a coding the server does not know is answered 501, and an HTTP/1.0
  // message with Transfer-Encoding has faulty framing (400). Beast 1.81 reads the first as a request without
  // a body, and would take what follows for the next request.
  if (auto te = req[bhttp::field::transfer_encoding]; !te.empty() || req.repeated(Request::Name::transfer_encoding)) {
    bool only_chunked = !req.repeated(Request::Name::transfer_encoding);
    for (auto coding : bhttp::token_list{te}) only_chunked = only_chunked && beast::iequals(coding, "chunked");
    bool chunked_1_1 = parser.chunked() && req.version() >= 11;
    if (!chunked_1_1 || !only_chunked) {
      log::info("bad http request", {{"client_ip", client_ip}, {"error", "unsupported Transfer-Encoding"},
                                     {"transfer_encoding", te}, {"version", req.version()}});
      co_await refuse(stream, limits_, req.version(),
                      chunked_1_1 ? bhttp::status::not_implemented : bhttp::status::bad_request,
                      chunked_1_1 ? "Transfer-Encoding not supported (only chunked)"
                      : req.version() < 11 ? "Transfer-Encoding is not HTTP/1.0"
                                           : "Transfer-Encoding must end with chunked");
      co_return Read::stop;
    }
  }
  auto cl = parser.content_length();
  bool raw = raw_route_ && raw_route_(req);
  if (raw_route_ && !raw) parser.body_limit(limits_.max_body_bytes);
  std::size_t body_limit = raw ? limits_.raw_max_body_bytes : limits_.max_body_bytes;
  if (cl && *cl > body_limit) {
    co_await refuse_large_body(stream, limits_, client_ip, req.version(), req.target(), body_limit, *cl);
    co_return Read::stop;
  }
  bool expect_continue = beast::iequals(req[bhttp::field::expect], "100-continue") && !parser.is_done();
  if (raw)  // (its handler sends the 100 when it reads the body)
    co_return co_await serve_raw(stream, buffer, parser, req, client_ip, memo, expect_continue) ? Read::handled : Read::stop;
  if (expect_continue) {
    bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, req.version()};
    stream.expires_after(limits_.write_timeout);
    co_await bhttp::async_write(stream, cont, kTuple);
  }
  stream.expires_after(limits_.read_timeout);
  if (!parse_buffered_body(stream, buffer, parser, ec) && !parser.is_done()) {
    make_room_for_body(buffer, cl);
    std::tie(ec, n) = co_await bhttp::async_read(stream, buffer, parser, kTuple);
  }
  if (ec) {
    if (ec == bhttp::error::body_limit)
      co_await refuse_large_body(stream, limits_, client_ip, req.version(), req.target(), limits_.max_body_bytes);
    else
      co_await refuse_unreadable(stream, limits_, client_ip, ec, "body");
    co_return Read::stop;
  }
  req.body() = std::move(parser.get().body());
  co_return Read::request;
}


net::awaitable<bool> Server::serve_raw(Stream& stream, beast::flat_buffer& buffer, RequestParser& parser,
                                       Request& req, const std::string& client_ip,
                                       std::unique_ptr<ConnectionMemo>& memo, bool expect_continue) {
  stream.expires_never();  // (the head's deadline is spent: the handler sets its own for each read and write)
  Wire wire{stream, buffer, parser};  // req holds the head only; the body stays on the wire for the handler
  wire.body_done = parser.is_done();
  wire.expect_continue = expect_continue;
  Exchange ex(stream, req, id_prefix_ + "-" + std::to_string(++next_id_), client_ip, limits_, &wire, &memo);
  bool close = co_await run_exchange(ex);
  co_return !(close || !wire.body_done || wire.upgraded || stream.timed_out());
}

net::awaitable<void> send_continue(Wire& wire, std::chrono::seconds timeout) {
  if (!std::exchange(wire.expect_continue, false)) co_return;
  bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, 11};
  wire.stream.expires_after(timeout);
  co_await bhttp::async_write(wire.stream, cont, kTuple);
}

net::awaitable<bool> Server::run_exchange(Exchange& ex) {
  if (draining_) ex.close_after();
  try {
    co_await handler_(ex);
  } catch (const std::exception& e) {
    log::error("handler failed", {{"request_id", ex.request_id}, {"error", e.what()}});
  }
  if (!ex.responded())
    co_await ex.send(error_response(ex.req.version(), bhttp::status::internal_server_error,
                                    jsonrpc::code::internal_error, "Internal error"));
  if (ex.streaming()) co_await ex.end_stream();
  co_return ex.close_requested() || !ex.req.keep_alive() || draining_;
}

net::awaitable<void> Server::serve(net::ip::tcp::socket socket) {
  std::string client_ip;
  {
    boost::system::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    if (!ec) client_ip = ep.address().to_string();
  }
  Stream stream(std::move(socket));
  auto self = conns_.insert(conns_.end(), Conn{&stream, false});
  struct Remove {
    std::list<Conn>& l;
    std::list<Conn>::iterator it;
    ~Remove() {
      l.erase(it);
      --counts.open;
    }
  } remove{conns_, self};

  beast::flat_buffer buffer(read_buffer_limit(limits_.max_header_bytes));
  std::unique_ptr<ConnectionMemo> memo;
  Request req;  // one per connection: its buffers keep their capacity from one request to the next
  bool linger = true;  // closed by the gateway, perhaps with request bytes unread (see below)
  while (!stopping_) {
    self->busy = false;
    release_large(buffer);
    if (req.body().capacity() > 65536) std::string().swap(req.body());  // a large body's memory, not kept idle
    stream.expires_after(limits_.idle_timeout);
    // The usual request: its head arrives in one read, in the shape parse_request_head knows, and it is not
    // for a raw route. Any other takes Beast's parser, which reads on from the bytes already buffered.
    if (buffer.size() == 0) {
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(beast::read_size(buffer, 65536)), kTuple);
      if (ec) {  // the client went away or stayed idle too long
        linger = false;
        break;
      }
      buffer.commit(n);
    }
    self->busy = true;
    std::string_view buffered(static_cast<const char*>(buffer.data().data()), buffer.size());
    std::uint64_t content_length = 0;
    std::size_t head = parse_request_head(buffered, req, content_length);
    bool fast = head && head <= limits_.max_header_bytes && !(raw_route_ && raw_route_(req));
    if (fast) {
      if (content_length > limits_.max_body_bytes) {
        co_await refuse_large_body(stream, limits_, client_ip, req.version(), req.target(), limits_.max_body_bytes,
                                   content_length);
        break;
      }
      buffer.consume(head);
      auto& body = req.body();
      auto now = static_cast<std::size_t>(std::min<std::uint64_t>(content_length, buffer.size()));
      body.assign(static_cast<const char*>(buffer.data().data()), now);
      buffer.consume(now);
      if (now < content_length) {
        // The body's memory grows with the bytes that arrive (at most doubling), not with the length claimed:
        // a client that claims the largest body and sends nothing holds 64 KiB, not the limit.
        stream.expires_after(limits_.read_timeout);
        boost::system::error_code ec;
        for (std::size_t got = now; got < content_length && !ec;) {
          auto want = static_cast<std::size_t>(std::min<std::uint64_t>(content_length, std::max(2 * got, got + 65536)));
          body.resize(want);
          std::tie(ec, std::ignore) = co_await net::async_read(stream, net::buffer(body.data() + got, want - got), kTuple);
          got = want;
        }
        if (ec) {
          co_await refuse_unreadable(stream, limits_, client_ip, ec, "body");
          break;
        }
        // Room for the next request of this size to arrive in one read.
        make_room_for_body(buffer, std::optional<std::uint64_t>(head + content_length));
      }
    } else if (auto read = co_await read_with_beast(stream, buffer, req, client_ip, memo); read != Read::request) {
      if (read == Read::stop) break;
      continue;  // a raw-route exchange took place
    }
    stream.expires_never();
    std::string rid = id_prefix_ + "-" + std::to_string(++next_id_);
    bool close = false;
    {
      Exchange ex(stream, req, std::move(rid), client_ip, limits_, nullptr, &memo);
      close = co_await run_exchange(ex);
    }
    if (close) break;
  }
  boost::system::error_code ec;
  stream.socket().shutdown(net::socket_base::shutdown_send, ec);
  if (linger && !stopping_ && !ec) {
    self->busy = false;  // stop_accepting() cuts the wait short
    // A lingering close (as nginx's): a socket closed with unread bytes (a refused request's body, an upload
    // the upstream never took) is reset, and the reset can destroy the answer before the client reads it. So
    // read and drop what still comes, until the client closes too, for at most 2 s and 4 MiB.
    stream.expires_after(std::chrono::seconds(2));
    std::array<char, 16384> sink;
    for (std::size_t dropped = 0; dropped < (4u << 20);) {
      auto [rec, n] = co_await stream.async_read_some(net::buffer(sink), kTuple);
      if (rec) break;
      dropped += n;
    }
  }
  stream.close();
}

}  // namespace gh::http
