#include "http/proxy.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <stdexcept>

#include <optional>
#include <tuple>

#include "core/log.hpp"
#include "core/util.hpp"

namespace gh::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using net::ip::tcp;

namespace {

constexpr auto kTuple = net::as_tuple(net::use_awaitable);
constexpr std::size_t kPiece = 64 * 1024;  // the relay's buffer: what one read may pass on

// Tokens of a Connection header name more hop-by-hop fields.
bool listed_in(std::string_view connection, std::string_view name) {
  for (auto token : bhttp::token_list(connection))
    if (beast::iequals(token, name)) return true;
  return false;
}

// Hop-by-hop fields (RFC 9110 §7.6.1) and the framing, which the relay sets itself.
bool hop_by_hop(bhttp::field f, std::string_view name, std::string_view connection) {
  switch (f) {
    case bhttp::field::host:  // end-to-end whatever Connection lists
      return false;
    case bhttp::field::connection:
    case bhttp::field::keep_alive:
    case bhttp::field::te:
    case bhttp::field::trailer:
    case bhttp::field::transfer_encoding:
    case bhttp::field::content_length:
    case bhttp::field::upgrade:
      return true;
    default:
      break;
  }
  if (name.size() >= 6 && beast::iequals(name.substr(0, 6), "proxy-")) return true;
  return !connection.empty() && listed_in(connection, name);
}

// A response's list field, its lines as one list (RFC 9110 §5.3; Request::list for a request's): a second
// Connection line names hop-by-hop fields too.
std::string every_line(const bhttp::fields& fields, bhttp::field name) {
  std::string out;
  for (const auto& f : fields)
    if (f.name() == name) out.append(out.empty() ? "" : ",").append(f.value());
  return out;
}

// Whether a target's path has a "." or ".." segment — also written %2e, or ended by an encoded or back slash
// (%2f, %5c, \\), which servers such as nginx decode before they resolve dots: put after OPENWEBUI_URL's base
// path, a server that resolves them would take the request out of that path, to another application on its host.
bool has_dot_segment(std::string_view target) {
  auto path = target.substr(0, target.find('?'));
  std::string plain;
  plain.reserve(path.size());
  for (std::size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '%' && i + 2 < path.size()) {
      char hi = path[i + 1], lo = static_cast<char>(std::tolower(static_cast<unsigned char>(path[i + 2])));
      if (hi == '2' && lo == 'e') c = '.';
      else if ((hi == '2' && lo == 'f') || (hi == '5' && lo == 'c')) c = '/';
      if (c != '%') i += 2;
    } else if (c == '\\') {
      c = '/';
    }
    plain += c;
  }
  for (auto segment : split(plain, '/'))
    if (segment == "." || segment == "..") return true;
  return false;
}

bool websocket_upgrade(const Request& req) {
  return req.method() == bhttp::verb::get && beast::iequals(req[bhttp::field::upgrade], "websocket") &&
         listed_in(req[bhttp::field::connection], "upgrade");
}

std::string without_crlf(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v)
    if (c != '\r' && c != '\n') out.push_back(c);
  return out;
}

// Copies bytes from `from` to `to` until either side ends or goes idle; then shuts both sockets, which ends
// the opposite pump too. Every byte moved pushes both deadlines out by `idle`.
template <class From, class To>
net::awaitable<void> pump(From& from, To& to, Stream& a, Stream& b, std::chrono::seconds idle, std::size_t& moved) {
  auto buf = std::make_unique<char[]>(kPiece);
  for (;;) {
    auto [rec, n] = co_await from.async_read_some(net::buffer(buf.get(), kPiece), kTuple);
    if (n > 0) {
      a.expires_after(idle);
      b.expires_after(idle);
      auto [wec, wn] = co_await net::async_write(to, net::buffer(buf.get(), n), kTuple);
      if (wec) break;
      moved += n;
    }
    if (rec) break;
  }
  boost::system::error_code ec;
  a.socket().shutdown(net::socket_base::shutdown_both, ec);
  b.socket().shutdown(net::socket_base::shutdown_both, ec);
  a.socket().cancel(ec);
  b.socket().cancel(ec);
}

}  // namespace

struct ReverseProxy::Upstream {
  explicit Upstream(const net::any_io_executor& ex) : plain(ex) {}
  Stream plain;  // the TCP connection (under TLS when tls is set)
  std::unique_ptr<net::ssl::stream<Stream&>> tls;
  beast::flat_buffer buffer{read_buffer_limit(64 * 1024)};  // (the response head's limit, below)
};

ReverseProxy::ReverseProxy(net::any_io_executor ex, ProxyOptions options)
    : ex_(std::move(ex)), options_(std::move(options)), alive_(std::make_shared<bool>(true)) {
  std::string path;
  if (!Origin::parse(options_.url, origin_, path)) throw std::invalid_argument("not an http(s) URL: " + options_.url);
  base_path_ = path.substr(0, path.find('?'));
  while (!base_path_.empty() && base_path_.back() == '/') base_path_.pop_back();
}

ReverseProxy::~ReverseProxy() { *alive_ = false; }

void ReverseProxy::watch(Stream* s) {
  watched_.push_back(s);
  if (watchdog_running_) return;
  watchdog_running_ = true;
  net::co_spawn(ex_, [this, alive = alive_]() -> net::awaitable<void> {
    net::steady_timer timer(ex_);
    while (*alive && !watched_.empty()) {
      timer.expires_after(std::chrono::seconds(1));
      co_await timer.async_wait(kTuple);
      if (!*alive) co_return;
      auto now = Stream::Clock::now();
      for (auto* s : watched_) s->enforce(now);
    }
    if (*alive) watchdog_running_ = false;
  }, net::detached);
}

void ReverseProxy::unwatch(Stream* s) { std::erase(watched_, s); }

net::awaitable<void> ReverseProxy::fail(Exchange& ex, bool timeout, std::string_view stage,
                                        const boost::system::error_code& ec) {
  log::warn(options_.name + " is not reachable",
            {{"request_id", ex.request_id}, {"url", options_.url}, {"stage", stage},
             {"error", timeout ? std::string("timed out") : ec.message()}});
  if (ex.responded()) {  // the head went out already: all we can do is cut the answer short
    ex.close_after();
    co_return;
  }
  auto status = timeout ? bhttp::status::gateway_timeout : bhttp::status::bad_gateway;
  std::string message = timeout ? options_.name + " did not answer in time" : options_.name + " is not reachable";
  if (ex.req[bhttp::field::accept].find("text/html") != std::string_view::npos) {
    Response res{status, ex.req.version()};
    res.set(bhttp::field::content_type, "text/html; charset=utf-8");
    res.set(bhttp::field::cache_control, "no-store");
    res.set(bhttp::field::retry_after, "5");
    res.body() = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + message +
                 "</title>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                 "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;"
                 "color:#222}h1{font-size:1.4rem}p{line-height:1.5}code{color:#666}</style></head>\n<body><h1>" +
                 message + "</h1>\n<p>Gatehouse is running, but the chat application behind it " +
                 (timeout ? std::string("did not answer in time") : std::string("cannot be reached right now")) +
                 ". Please try again in a moment; if this persists, tell your administrator.</p>\n"
                 "<p><code>" + std::to_string(static_cast<int>(status)) + " · request " + ex.request_id +
                 "</code></p></body></html>\n";
    res.keep_alive(ex.req.keep_alive());
    res.prepare_payload();
    co_await ex.send(std::move(res));
  } else {
    boost::json::object err{{"code", timeout ? "gateway_timeout" : "bad_gateway"}, {"message", message}};
    std::string body = gh::to_json(boost::json::object{{"error", std::move(err)}});
    co_await ex.send_json(status, std::move(body), "Retry-After: 5\r\n");
  }
}

net::awaitable<void> ReverseProxy::forward(Exchange& ex, const HeaderList& extra, std::span<const std::string_view> drop) {
  Upstream conn(ex_);
  watch(&conn.plain);
  struct Unwatch {
    ReverseProxy& p;
    Stream* s;
    ~Unwatch() { p.unwatch(s); }
  } unwatch{*this, &conn.plain};
  // The client-disconnect watch set in relay() points at `conn`: it ends before `conn` does.
  struct StopWatching {
    Exchange& ex;
    ~StopWatching() { ex.stop_watching(); }
  } stop_watching{ex};

  if (has_dot_segment(ex.req.target())) {
    log::info("proxied request refused: a dot segment in its path", {{"request_id", ex.request_id}});
    auto body = boost::json::serialize(boost::json::object{
        {"error", boost::json::object{{"code", "bad_request"}, {"message", "A path segment may not be . or .."}}}});
    co_await ex.send_json(bhttp::status::bad_request, std::move(body));
    co_return;
  }
  conn.plain.expires_after(options_.connect_timeout);
  tcp::resolver resolver(ex_);
  auto [rec, endpoints] = co_await resolver.async_resolve(origin_.host, origin_.port, kTuple);
  if (rec) {
    co_await fail(ex, false, "resolve", rec);
    co_return;
  }
  auto [cec, ep] = co_await net::async_connect(conn.plain.socket(), endpoints, kTuple);
  if (cec) {
    co_await fail(ex, conn.plain.timed_out(), "connect", cec);
    co_return;
  }
  conn.plain.socket().set_option(tcp::no_delay(true), cec);
  if (origin_.tls) {
    conn.tls = std::make_unique<net::ssl::stream<Stream&>>(conn.plain, client_tls_context());
    boost::system::error_code not_ip;
    net::ip::make_address(origin_.host, not_ip);
    if (not_ip) SSL_set_tlsext_host_name(conn.tls->native_handle(), origin_.host.c_str());
    conn.tls->set_verify_callback(net::ssl::host_name_verification(origin_.host));
    auto [hec] = co_await conn.tls->async_handshake(net::ssl::stream_base::client, kTuple);
    if (hec) {
      co_await fail(ex, conn.plain.timed_out(), "tls", hec);
      co_return;
    }
    co_await relay(ex, extra, drop, *conn.tls, conn);
  } else {
    co_await relay(ex, extra, drop, conn.plain, conn);
  }
  conn.plain.close();
}

template <class S>
net::awaitable<void> ReverseProxy::relay(Exchange& ex, const HeaderList& extra, std::span<const std::string_view> drop,
                                        S& up, Upstream& conn) {
  auto& wire = *ex.wire();
  const Request& req = ex.req;
  bool ws = websocket_upgrade(req);

  // The upstream request: the client's head minus hop-by-hop fields and whatever `extra` replaces.
  bhttp::request<bhttp::buffer_body> m;
  m.method_string(req.method_string());
  m.target(base_path_ + std::string(req.target()));  // (an origin-form target: the server made it one)
  m.version(11);
  std::string connection_lines;
  auto connection = req.list(Request::Name::connection, connection_lines);
  for (const auto& f : req) {
    auto name = f.name_string();
    if (hop_by_hop(f.name(), name, connection) || f.name() == bhttp::field::expect) continue;
    bool replaced = false;
    for (const auto& [n, v] : extra) replaced = replaced || beast::iequals(n, name);
    for (auto n : drop) replaced = replaced || beast::iequals(n, name);
    if (!replaced) m.insert(name, f.value());
  }
  for (const auto& [n, v] : extra) m.set(without_crlf(n), without_crlf(v));
  if (ws) {
    m.set(bhttp::field::connection, "Upgrade");
    m.set(bhttp::field::upgrade, req[bhttp::field::upgrade]);
  } else {
    m.set(bhttp::field::connection, "close");  // one upstream connection per request
  }
  if (!wire.body_done) {
    if (wire.parser.chunked()) m.chunked(true);
    else if (auto cl = wire.parser.content_length()) m.content_length(*cl);
  }

  // Head, then the body piece by piece as it arrives (Beast's relay pattern, with buffer_body both ways).
  bhttp::request_parser<bhttp::buffer_body> in{std::move(wire.parser)};
  in.body_limit(options_.max_body_bytes);
  bhttp::request_serializer<bhttp::buffer_body> sr{m};
  conn.plain.expires_after(options_.read_timeout);
  auto [hec, hn] = co_await bhttp::async_write_header(up, sr, kTuple);
  if (hec) {
    co_await fail(ex, conn.plain.timed_out(), "send", hec);
    co_return;
  }
  auto buf = std::make_unique<char[]>(kPiece);
  if (!in.is_done()) make_room_for_body(wire.buffer, in.content_length());
  if (!in.is_done()) co_await send_continue(wire, options_.write_timeout);  // the upstream took the head: go on
  while (!sr.is_done()) {
    if (!in.is_done()) {
      in.get().body().data = buf.get();
      in.get().body().size = kPiece;
      wire.stream.expires_after(options_.body_timeout);
      auto [ec, n] = co_await bhttp::async_read_some(wire.stream, wire.buffer, in, kTuple);
      wire.stream.expires_never();
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec == bhttp::error::body_limit) {
        log::info("proxied request body too large", {{"request_id", ex.request_id}, {"limit", options_.max_body_bytes}});
        std::string body = gh::to_json(boost::json::object{
            {"error", boost::json::object{{"code", "payload_too_large"},
                                          {"message", "Request body too large (limit " +
                                                          std::to_string(options_.max_body_bytes) + " bytes)"}}}});
        co_await ex.send_json(bhttp::status::payload_too_large, std::move(body));
        co_return;
      }
      if (ec && ec.category() == bhttp::make_error_code(bhttp::error::bad_chunk).category() &&
          ec != bhttp::error::partial_message && ec != bhttp::error::end_of_stream) {
        // Not HTTP (a bad chunk, an endless chunk header or trailer): 400, as the gateway's own routes answer.
        log::info("bad http request", {{"request_id", ex.request_id}, {"reading", "proxied body"}, {"error", ec.message()}});
        ex.close_after();
        std::string body = gh::to_json(boost::json::object{
            {"error", boost::json::object{{"code", "bad_request"}, {"message", "Malformed HTTP request body"}}}});
        co_await ex.send_json(bhttp::status::bad_request, std::move(body));
        co_return;
      }
      if (ec) {  // the client went away or stalled mid-upload: nobody to answer
        log::info("client stopped sending a proxied request body",
                  {{"request_id", ex.request_id}, {"error", ec.message()}, {"received", wire.bytes_in}});
        ex.wrote_response(wire.stream.timed_out() ? 408 : 499);
        ex.close_after();
        co_return;
      }
      std::size_t got = kPiece - in.get().body().size;
      wire.bytes_in += got;
      if (got == 0 && !in.is_done()) continue;
      m.body().data = got ? buf.get() : nullptr;
      m.body().size = got;
      m.body().more = !in.is_done();
    } else {
      m.body().data = nullptr;
      m.body().size = 0;
      m.body().more = false;
    }
    conn.plain.expires_after(options_.read_timeout);
    auto [wec, wn] = co_await bhttp::async_write(up, sr, kTuple);
    if (wec == bhttp::error::need_buffer) wec = {};
    if (wec) {
      co_await fail(ex, conn.plain.timed_out(), "send", wec);
      co_return;
    }
  }
  wire.body_done = in.is_done();
  // A client that leaves while the upstream is still thinking or streaming (a stopped chat) closes the upstream
  // connection too, so Open WebUI sees the disconnect at once instead of at its next write.
  bool client_gone = false;
  auto cut_upstream = [&conn, &client_gone] {
    client_gone = true;
    boost::system::error_code e;
    conn.plain.socket().cancel(e);
    conn.plain.socket().shutdown(net::socket_base::shutdown_both, e);
  };
  if (!ws) ex.on_disconnect(cut_upstream, true);

  // The response head. A timeout here is the upstream thinking for too long (PROXY_READ_TIMEOUT_S). Interim
  // answers (100 Continue, 102, 103 Early Hints) are read past, not relayed: the final one follows them
  // (RFC 9110 §15.2); 101 is final.
  std::optional<bhttp::response_parser<bhttp::buffer_body>> final_head;
  boost::system::error_code rhec;
  for (int interim = 0;; ++interim) {
    auto& p = final_head.emplace();
    p.header_limit(64 * 1024);
    p.body_limit(boost::none);
    if (req.method() == bhttp::verb::head) p.skip(true);
    conn.plain.expires_after(options_.read_timeout);
    std::tie(rhec, std::ignore) = co_await bhttp::async_read_header(up, conn.buffer, p, kTuple);
    unsigned st = rhec ? 0 : p.get().result_int();
    if (rhec || st / 100 != 1 || st == 101) break;
    if (interim == 32) {  // an upstream that sends nothing else
      rhec = bhttp::error::bad_status;
      break;
    }
  }
  auto& rp = *final_head;
  if (rhec && client_gone) {
    log::info("client left before " + options_.name + " answered", {{"request_id", ex.request_id}});
    ex.wrote_response(499);
    ex.close_after();
    co_return;
  }
  if (rhec) {
    co_await fail(ex, conn.plain.timed_out(), "response", rhec);
    co_return;
  }
  const auto& head = rp.get();
  unsigned status = head.result_int();
  if (status == 101 && !ws) {  // a switch nobody asked for: the bytes that follow are no HTTP answer
    co_await fail(ex, false, "response", bhttp::error::bad_status);
    co_return;
  }
  bool upgrade = ws && status == 101;

  bhttp::response<bhttp::buffer_body> out;
  out.version(req.version());
  out.result(status);
  out.reason(head.reason());
  auto up_connection = every_line(head, bhttp::field::connection);
  for (const auto& f : head)
    if (!hop_by_hop(f.name(), f.name_string(), up_connection)) out.insert(f.name_string(), f.value());
  if (out.find("X-Request-Id") == out.end()) out.set("X-Request-Id", ex.request_id);
  bool bodiless = req.method() == bhttp::verb::head || status / 100 == 1 || status == 204 || status == 304;
  bool keep = req.keep_alive() && !ex.close_requested() && wire.body_done && !upgrade;
  if (upgrade) {
    out.set(bhttp::field::connection, "Upgrade");
    out.set(bhttp::field::upgrade, head[bhttp::field::upgrade]);
  } else {
    if (bodiless) {
      if (auto cl = head[bhttp::field::content_length]; !cl.empty() && status != 204) out.set(bhttp::field::content_length, cl);
    } else if (auto cl = rp.content_length()) {
      out.content_length(*cl);
    } else if (req.version() >= 11) {
      out.chunked(true);  // each piece goes out as one chunk, as soon as it arrives
    } else {
      keep = false;  // an HTTP/1.0 client: the body ends when the connection does
    }
    out.keep_alive(keep);
    if (!keep) ex.close_after();
  }
  bhttp::response_serializer<bhttp::buffer_body> csr{out};
  wire.stream.expires_after(options_.write_timeout);
  auto [whec, whn] = co_await bhttp::async_write_header(wire.stream, csr, kTuple);
  wire.stream.expires_never();
  ex.wrote_response(static_cast<int>(status));
  if (whec) {
    ex.close_after();
    co_return;
  }
  if (upgrade) {
    co_await tunnel(ex, up, conn);
    co_return;
  }
  if (bodiless) co_return;

  make_room_for_body(conn.buffer, rp.content_length());
  while (!rp.is_done()) {
    rp.get().body().data = buf.get();
    rp.get().body().size = kPiece;
    conn.plain.expires_after(options_.read_timeout);
    auto [ec, n] = co_await bhttp::async_read_some(up, conn.buffer, rp, kTuple);
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec && client_gone) {
      log::info("client left during a proxied response", {{"request_id", ex.request_id}, {"sent", ex.bytes_out()}});
      ex.close_after();
      co_return;
    }
    if (ec) {
      log::warn(options_.name + " response broken off",
                {{"request_id", ex.request_id}, {"error", conn.plain.timed_out() ? std::string("timed out") : ec.message()},
                 {"sent", ex.bytes_out()}});
      ex.close_after();
      co_return;
    }
    std::size_t got = kPiece - rp.get().body().size;
    if (got == 0 && !rp.is_done()) continue;
    out.body().data = got ? buf.get() : nullptr;
    out.body().size = got;
    out.body().more = !rp.is_done();
    wire.stream.expires_after(options_.write_timeout);
    auto [wec, wn] = co_await bhttp::async_write(wire.stream, csr, kTuple);
    wire.stream.expires_never();
    if (wec == bhttp::error::need_buffer) wec = {};
    if (wec) {  // the client went away
      ex.close_after();
      co_return;
    }
    ex.count_bytes_out(got);
  }
  if (!csr.is_done()) {
    out.body().data = nullptr;
    out.body().size = 0;
    out.body().more = false;
    wire.stream.expires_after(options_.write_timeout);
    auto [wec, wn] = co_await bhttp::async_write(wire.stream, csr, kTuple);
    wire.stream.expires_never();
    if (wec) ex.close_after();
  }
}

template <class S>
net::awaitable<void> ReverseProxy::tunnel(Exchange& ex, S& up, Upstream& conn) {
  auto& wire = *ex.wire();
  ex.stop_watching();  // the pumps read the client socket themselves
  wire.upgraded = true;
  ex.close_after();
  auto idle = options_.read_timeout;
  // Bytes that arrived behind either head already belong to the other side.
  wire.stream.expires_after(options_.write_timeout);
  conn.plain.expires_after(options_.write_timeout);
  if (conn.buffer.size() > 0) {
    auto [ec, n] = co_await net::async_write(wire.stream, conn.buffer.data(), kTuple);
    if (ec) co_return;
    ex.count_bytes_out(n);
    conn.buffer.consume(n);
  }
  if (wire.buffer.size() > 0) {
    auto [ec, n] = co_await net::async_write(up, wire.buffer.data(), kTuple);
    if (ec) co_return;
    wire.bytes_in += n;
    wire.buffer.consume(n);
  }
  wire.stream.expires_after(idle);
  conn.plain.expires_after(idle);
  // Two pumps: upstream → client in a spawned coroutine, client → upstream here. The first to end shuts both
  // sockets, which ends the other; this frame (which owns the sockets) waits for the spawned one.
  std::size_t down = 0, up_bytes = 0;
  bool down_done = false;
  net::steady_timer done(ex_);
  done.expires_at(net::steady_timer::time_point::max());
  auto downstream = pump(up, wire.stream, wire.stream, conn.plain, idle, down);
  auto on_done = [&down_done, &done](std::exception_ptr) {
    down_done = true;
    done.cancel();
  };
  net::co_spawn(ex_, std::move(downstream), on_done);
  co_await pump(wire.stream, up, wire.stream, conn.plain, idle, up_bytes);
  if (!down_done) co_await done.async_wait(kTuple);
  ex.count_bytes_out(down);
  wire.bytes_in += up_bytes;
  wire.stream.expires_never();
}

}  // namespace gh::http
