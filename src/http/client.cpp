#include "http/client.hpp"
#include "core/util.hpp"
#include "http/body.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/url/parse.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <optional>

namespace gh::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using net::ip::tcp;
constexpr auto kTuple = net::as_tuple(net::use_awaitable);
constexpr auto kMaxIdle = std::chrono::seconds(60);  // a pooled connection idle longer is not used again

void ClientRequest::set(std::string_view name, std::string_view value) {
  auto clean = [this](std::string_view t) {
    // (not find_first_of("\r\n"): libstdc++ makes that a memchr call per character)
    // NUL too: a peer may end the line there.
    if (std::none_of(t.begin(), t.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; })) {
      headers.append(t);
      return;
    }
    for (char c : t)
      if (c != '\r' && c != '\n' && c != '\0') headers.push_back(c);
  };
  if (headers.capacity() < 256) headers.reserve(256);
  clean(name);
  headers.append(": ", 2);
  clean(value);
  headers.append("\r\n", 2);
}

bool Origin::parse(std::string_view url, Origin& out, std::string& target) {
  auto u = boost::urls::parse_uri(url);
  if (!u) return false;
  if (u->scheme() == "https") out.tls = true;
  else if (u->scheme() == "http") out.tls = false;
  else return false;
  out.host = std::string(u->host_address());
  // A host is letters, digits and punctuation: a percent-encoded NUL or space would be cut or sent as it is.
  if (out.host.empty() || std::any_of(out.host.begin(), out.host.end(), [](unsigned char c) { return c <= 0x20 || c >= 0x7f; }))
    return false;
  if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']')
    out.host = out.host.substr(1, out.host.size() - 2);
  out.port = u->has_port() ? std::string(u->port()) : (out.tls ? "443" : "80");
  target = std::string(u->encoded_path());
  if (target.empty()) target = "/";
  if (u->has_query()) target += "?" + std::string(u->encoded_query());
  return true;
}

net::ssl::context& client_tls_context() {
  static net::ssl::context ctx = [] {
    net::ssl::context c(net::ssl::context::tls_client);
    c.set_default_verify_paths();
    c.set_verify_mode(net::ssl::verify_peer);
    return c;
  }();
  return ctx;
}

struct ClientPool::Conn {
  explicit Conn(const net::any_io_executor& ex) : plain(ex) {}
  Stream plain;                                     // the TCP connection (under TLS when tls is set)
  std::unique_ptr<net::ssl::stream<Stream&>> tls;
  beast::flat_buffer buffer{read_buffer_limit(64 * 1024)};  // (a head's limit: see the parsers below)
  std::chrono::steady_clock::time_point idle_since;  // when it went back into the pool
  // The request's body callback while it is busy: asked with an empty view once a second whether the answer is
  // still wanted (a call cancelled or timed out upstream frees its connection, not at the request's deadline).
  const std::function<bool(std::string_view)>* on_body = nullptr;
  void close() { plain.close(); }
  // Whether the server has closed it (or sent something unasked) while it sat in the pool. A system call, so
  // asked only of a connection idle for a while.
  bool closed_by_server() {
    char c;
    ssize_t n = ::recv(plain.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
  }
};

ClientPool::ClientPool(net::any_io_executor ex, Origin origin, std::size_t max_idle)
    : ex_(std::move(ex)), origin_(std::move(origin)), max_idle_(max_idle) {
  bool v6 = origin_.host.find(':') != std::string::npos;
  std::string host = v6 ? "[" + origin_.host + "]" : origin_.host;
  host_header_ = origin_.port == (origin_.tls ? "443" : "80") ? host : host + ":" + origin_.port;
}

ClientPool::~ClientPool() { close(); }

struct ClientPool::Waiter {
  net::steady_timer timer;
  bool woken = false;
};

void ClientPool::wake_one() {
  if (waiting_.empty()) return;
  auto* w = waiting_.front();
  waiting_.pop_front();
  w->woken = true;
  w->timer.cancel();
}

std::unique_ptr<ClientPool::Conn> ClientPool::take_idle() {
  while (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    auto idle = std::chrono::steady_clock::now() - conn->idle_since;
    // Not one idle longer than a minute: a NAT or load balancer may have dropped it without a word (no FIN to
    // see), and a POST on it would wait for its whole timeout.
    if (idle < kMaxIdle && (idle < std::chrono::milliseconds(100) || !conn->closed_by_server())) return conn;
    conn->close();
  }
  return nullptr;
}

void ClientPool::close() {
  closed_ = true;
  while (!waiting_.empty()) wake_one();
  for (auto& c : idle_) c->close();
  idle_.clear();
  for (auto* c : busy_) c->close();
}

net::awaitable<std::unique_ptr<ClientPool::Conn>> ClientPool::connect(std::chrono::steady_clock::time_point deadline,
                                                                      boost::system::error_code& ec) {
  tcp::resolver resolver(ex_);
  auto [rec, results] = co_await resolver.async_resolve(origin_.host, origin_.port, kTuple);
  if (rec) {
    ec = rec;
    co_return nullptr;
  }
  auto conn = std::make_unique<Conn>(ex_);
  if (origin_.tls) {
    conn->tls = std::make_unique<net::ssl::stream<Stream&>>(conn->plain, client_tls_context());
    boost::system::error_code not_ip;
    net::ip::make_address(origin_.host, not_ip);
    // SNI carries host names only (RFC 6066); an IP literal is checked against the certificate's IP SANs.
    if (not_ip && !SSL_set_tlsext_host_name(conn->tls->native_handle(), origin_.host.c_str())) {
      ec = net::error::invalid_argument;
      co_return nullptr;
    }
    conn->tls->set_verify_callback(net::ssl::host_name_verification(origin_.host));
  }
  // Watched while connecting, like any busy connection.
  busy_.push_back(conn.get());
  struct Unbusy {
    std::vector<Conn*>& busy;
    Conn* c;
    ~Unbusy() { std::erase(busy, c); }
  } unbusy{busy_, conn.get()};
  start_watchdog();
  conn->plain.expires_at(deadline);
  auto [cec, ep] = co_await net::async_connect(conn->plain.socket(), results, kTuple);
  if (cec) {
    ec = conn->plain.timed_out() ? net::error::timed_out : cec;
    co_return nullptr;
  }
  conn->plain.socket().set_option(tcp::no_delay(true), cec);
  // TCP keepalive: a long-lived stream (an upstream's GET stream) whose peer vanished is noticed within ~90 s.
  conn->plain.socket().set_option(net::socket_base::keep_alive(true), cec);
  int fd = conn->plain.socket().native_handle(), idle_s = 60, interval_s = 10, probes = 3;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
  if (conn->tls) {
    auto [hec] = co_await conn->tls->async_handshake(net::ssl::stream_base::client, kTuple);
    if (hec) {
      ec = conn->plain.timed_out() ? net::error::timed_out : hec;
      co_return nullptr;
    }
  }
  conn->plain.expires_never();
  co_return conn;
}

void ClientPool::start_watchdog() {
  if (watchdog_running_) return;
  watchdog_running_ = true;
  net::co_spawn(ex_, [self = shared_from_this()]() -> net::awaitable<void> {
    net::steady_timer timer(self->ex_);
    while (!self->closed_ && !self->busy_.empty()) {
      timer.expires_after(std::chrono::seconds(1));
      co_await timer.async_wait(kTuple);
      auto now = Stream::Clock::now();
      for (auto* c : self->busy_) {
        if (c->on_body && *c->on_body && !(*c->on_body)(std::string_view())) c->plain.expires_at(now);
        c->plain.enforce(now);
      }
    }
    self->watchdog_running_ = false;
  }, net::detached);
}

namespace {

// Where an answer's body goes: to the caller's callback as it arrives, or into ClientResponse::body.
struct BodySink {
  const std::function<bool(std::string_view)>& on_body;
  std::string& out;
  std::size_t max_body;
  bool stopped = false;  // the callback asked for no more

  // False when reading must stop (ec says why).
  bool take(std::string_view data, boost::system::error_code& ec) {
    if (on_body) {
      if (!on_body(data)) {
        stopped = true;
        ec = net::error::operation_aborted;
        return false;
      }
    } else if (out.size() + data.size() > max_body) {
      ec = bhttp::error::body_limit;
      return false;
    } else {
      out.append(data);
    }
    return true;
  }
};

// For the answers parse_response_head leaves to Beast: a response parser that keeps only what ResponseHead
// needs and hands body bytes straight to the sink (no header fields stored, no body buffer filled and copied).
class SinkParser final : public bhttp::basic_parser<false> {
 public:
  explicit SinkParser(BodySink& sink) : sink_(sink) {}
  ResponseHead head() const { return {status_, content_type_, session_id_}; }

 private:
  void on_request_impl(bhttp::verb, beast::string_view, beast::string_view, int, beast::error_code&) override {}
  void on_response_impl(int code, beast::string_view, int, beast::error_code&) override {
    status_ = static_cast<unsigned>(code);
  }
  void on_field_impl(bhttp::field name, beast::string_view name_string, beast::string_view value,
                     beast::error_code&) override {
    if (name == bhttp::field::content_type) content_type_.assign(value.data(), value.size());
    else if (beast::iequals(name_string, "mcp-session-id")) session_id_.assign(value.data(), value.size());
  }
  void on_header_impl(beast::error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, beast::error_code&) override {}
  std::size_t on_body_impl(beast::string_view body, beast::error_code& ec) override {
    sink_.take({body.data(), body.size()}, ec);
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, beast::error_code& ec) override {
    sink_.take({body.data(), body.size()}, ec);
    return body.size();
  }
  void on_finish_impl(beast::error_code&) override {}
  BodySink& sink_;
  unsigned status_ = 0;
  std::string content_type_, session_id_;
};

// The body of an answer whose head parse_response_head read: `length` bytes, some maybe in `buffer` already.
template <typename S>
net::awaitable<boost::system::error_code> read_sized_body(S& s, beast::flat_buffer& buffer, std::uint64_t length,
                                                          BodySink& sink) {
  boost::system::error_code ec;
  for (;;) {
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(length, buffer.size()));
    bool more = n == 0 || sink.take({static_cast<const char*>(buffer.data().data()), n}, ec);
    buffer.consume(n);
    length -= n;
    if (!more || length == 0) co_return ec;
    make_room_for_body(buffer, std::optional<std::uint64_t>(length));
    auto [rec, got] = co_await s.async_read_some(buffer.prepare(beast::read_size(buffer, 65536)), kTuple);
    if (rec) co_return rec == net::error::eof ? bhttp::error::partial_message : rec;
    buffer.commit(got);
  }
}

template <typename S>
net::awaitable<void> run_request(S& s, Stream& low, beast::flat_buffer& buffer, const std::string& head,
                                 const std::string& body, bool head_request, ClientResponse& out, bool& reusable,
                                 std::chrono::steady_clock::time_point deadline,
                                 const std::function<bool(std::string_view)>& on_body,
                                 std::chrono::steady_clock::time_point body_deadline, std::size_t max_body,
                                 const std::function<void(const ResponseHead&)>& on_headers) {
  reusable = false;
  low.expires_at(deadline);
  beast::buffers_suffix<std::array<net::const_buffer, 2>> bufs{{net::buffer(head), net::buffer(body)}};
  if constexpr (std::is_same_v<S, Stream>) bufs.consume(s.write_now(bufs));
  if (net::buffer_size(bufs) != 0) {
    auto [wec, wn] = co_await net::async_write(s, bufs, kTuple);
    if (wec) {
      out.ec = wec;
      co_return;
    }
  }
  auto body_phase = [&] {
    if (body_deadline != std::chrono::steady_clock::time_point::max()) low.expires_at(body_deadline);
    else low.expires_never();
  };
  BodySink sink{on_body, out.body, max_body};
  // The usual answer: its head in one read, in the shape parse_response_head knows. Any other goes to Beast's
  // parser, which reads on from the bytes already buffered.
  if (buffer.size() == 0) {
    auto [rec, got] = co_await s.async_read_some(buffer.prepare(beast::read_size(buffer, 65536)), kTuple);
    if (rec) {
      out.ec = rec == net::error::eof ? bhttp::error::end_of_stream : rec;
      co_return;
    }
    buffer.commit(got);
  }
  ResponseHead rh;
  std::uint64_t length = 0;
  bool keep_alive = false;
  std::size_t n = 0;
  std::optional<SinkParser> parser;  // for the answers parse_response_head leaves to Beast
  // Interim answers (100 Continue, 102 Processing, 103 Early Hints) come before the final one on the same
  // connection: skipped. Taken for the answer, the real one would be read as the next request's. (As many as
  // come before the deadline, which bounds the wait.)
  for (int interim = 0;; ++interim) {
    if (interim > 0 && buffer.size() == 0) {
      auto [rec, got] = co_await s.async_read_some(buffer.prepare(beast::read_size(buffer, 65536)), kTuple);
      if (rec) {
        out.ec = rec == net::error::eof ? bhttp::error::end_of_stream : rec;
        co_return;
      }
      buffer.commit(got);
    }
    std::string_view buffered(static_cast<const char*>(buffer.data().data()), buffer.size());
    n = head_request ? 0 : parse_response_head(buffered, rh, length, keep_alive);
    if (!n) {
      parser.emplace(sink);
      parser->body_limit(boost::none);
      parser->header_limit(64 * 1024);
      if (head_request) parser->skip(true);
      auto [hec, hn] = co_await bhttp::async_read_header(s, buffer, *parser, kTuple);
      if (hec) {
        out.ec = hec;
        co_return;
      }
      rh = parser->head();
    }
    if (rh.status < 100 || rh.status >= 200 || rh.status == 101) break;
    buffer.consume(n);  // (Beast's parser took its head from the buffer itself)
    parser.reset();
  }
  out.status = rh.status;
  if (on_headers) on_headers(rh);
  buffer.consume(n);  // (a head parse_response_head read: rh's views are not used past here)
  body_phase();
  boost::system::error_code ec;
  if (n) {
    ec = co_await read_sized_body(s, buffer, length, sink);
  } else if (!parser->is_done()) {
    bool parsed = false;
    if constexpr (std::is_same_v<S, Stream>) parsed = parse_buffered_body(s, buffer, *parser, ec);  // (TLS: no sync read)
    if (!parsed) {
      make_room_for_body(buffer, parser->content_length());
      std::tie(ec, std::ignore) = co_await bhttp::async_read(s, buffer, *parser, kTuple);
    }
  }
  if (ec && !sink.stopped) {
    out.ec = ec;
    co_return;
  }
  low.expires_never();
  // Bytes after the answer are no answer to anything this connection will send: not reused (they would be
  // read as the next request's answer).
  reusable = !sink.stopped && (n ? keep_alive : parser->is_done() && parser->keep_alive()) && buffer.size() == 0 &&
             out.status >= 200;
  release_large(buffer);
}

}  // namespace

net::awaitable<ClientResponse> ClientPool::request(ClientRequest req,
                                                   std::chrono::steady_clock::time_point deadline,
                                                   std::function<bool(std::string_view)> on_body,
                                                   std::chrono::steady_clock::time_point body_deadline,
                                                   std::size_t max_body,
                                                   std::function<void(const ResponseHead&)> on_headers) {
  auto self = shared_from_this();
  ClientResponse out;
  if (closed_) {
    out.ec = net::error::operation_aborted;
    co_return out;
  }
  using namespace std::string_view_literals;
  std::string head;
  head.reserve(96 + req.target.size() + host_header_.size() + req.headers.size());
  append_all(head, bhttp::to_string(req.method), " "sv, req.target, " HTTP/1.1\r\nHost: "sv, host_header_, "\r\n"sv);
  if (!req.body.empty() || req.method == bhttp::verb::post || req.method == bhttp::verb::put)
    append_all(head, "Content-Length: "sv, Decimal(req.body.size()), "\r\n"sv);
  append_all(head, req.headers, "\r\n"sv);
  bool head_request = req.method == bhttp::verb::head;
  // A pooled connection may have been closed by the server while idle. One idle for 100 ms or more is
  // checked first (under load connections come back sooner and pay nothing). A request that fails on a
  // pooled one without an answer is sent again on a fresh one only if its method is idempotent: a POST (every
  // MCP message) may have been carried out before the connection dropped, and must not run twice.
  const bool idempotent = req.method != bhttp::verb::post && req.method != bhttp::verb::patch;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<Conn> conn = take_idle();
    bool pooled = conn != nullptr;
    // Past max_conns_ (a server that answers slowly, or that sends requests whose answers are POSTs it never
    // completes), new connections wait for one to come back rather than use up the process's descriptors.
    while (!conn && busy_.size() + connecting_ >= max_conns_) {
      Waiter w{net::steady_timer(ex_, deadline)};
      auto at = waiting_.insert(waiting_.end(), &w);
      co_await w.timer.async_wait(kTuple);
      if (!w.woken) waiting_.erase(at);  // (wake_one takes the one it wakes off the list)
      if (closed_ || std::chrono::steady_clock::now() >= deadline) {
        out.ec = closed_ ? net::error::operation_aborted : net::error::timed_out;
        co_return out;
      }
      conn = take_idle();
      pooled = conn != nullptr;
    }
    if (!conn) {
      boost::system::error_code ec;
      ++connecting_;
      conn = co_await connect(deadline, ec);
      --connecting_;
      if (!conn) {
        wake_one();  // its room is free again
        out.ec = ec;
        co_return out;
      }
    }
    busy_.push_back(conn.get());
    conn->on_body = &on_body;
    start_watchdog();
    bool reusable = false;
    out = ClientResponse{};
    if (conn->tls)
      co_await run_request(*conn->tls, conn->plain, conn->buffer, head, req.body, head_request, out, reusable, deadline, on_body,
                           body_deadline, max_body, on_headers);
    else
      co_await run_request(conn->plain, conn->plain, conn->buffer, head, req.body, head_request, out, reusable, deadline, on_body,
                           body_deadline, max_body, on_headers);
    busy_.erase(std::find(busy_.begin(), busy_.end(), conn.get()));
    conn->on_body = nullptr;
    wake_one();  // a connection (or room for one) is free
    if (reusable && !closed_ && idle_.size() < max_idle_) {
      conn->idle_since = std::chrono::steady_clock::now();
      idle_.push_back(std::move(conn));
    } else {
      conn->close();
    }
    bool stale = pooled && idempotent && out.status == 0 &&
                 (out.ec == bhttp::error::end_of_stream || out.ec == net::error::connection_reset ||
                  out.ec == net::error::eof || out.ec == net::error::broken_pipe);
    if (!stale) break;
    // The server closed a kept-alive connection (restart, idle timeout): its siblings are likely dead too,
    // so the retry goes on a new connection.
    for (auto& c : idle_) c->close();
    idle_.clear();
  }
  co_return out;
}

}  // namespace gh::http
