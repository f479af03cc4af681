// HTTP/1.1 client with a keep-alive connection pool per origin (http and https), streaming bodies.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "http/head.hpp"  // ResponseHead
#include "http/stream.hpp"

namespace gh::http {

namespace net = boost::asio;

struct Origin {
  bool tls = false;
  std::string host;
  std::string port;
  // Parses scheme://host[:port]/path; returns the target (path + query) in `target`.
  static bool parse(std::string_view url, Origin& out, std::string& target);
};

// An outgoing request. Host and Content-Length are added by the pool; `headers` holds whole lines.
struct ClientRequest {
  boost::beast::http::verb method = boost::beast::http::verb::get;
  std::string target = "/";
  std::string headers;
  std::string body;
  // Appends "name: value"; CR and LF in either are dropped (no header injection from configuration).
  void set(std::string_view name, std::string_view value);
};

struct ClientResponse {
  boost::system::error_code ec;  // transport error (connect, read, write, timeout)
  unsigned status = 0;
  std::string body;  // only when no body callback was given
};

// Always owned by a shared_ptr: a request in flight keeps its pool alive even if the owner drops it.
class ClientPool : public std::enable_shared_from_this<ClientPool> {
 public:
  ClientPool(net::any_io_executor ex, Origin origin, std::size_t max_idle = 64);
  ~ClientPool();
  // At most this many connections at once (in use or idle); a request beyond waits for one until its deadline.
  void set_max_connections(std::size_t n) { max_conns_ = n; }

  // Sends `req` (Host, Content-Length filled in). With `on_body`, body bytes are passed as they arrive and
  // reading stops early when it returns false; it is also asked with an empty view about once a second while
  // the request is under way, and false then abandons it (the connection is closed). Interim 1xx answers are
  // skipped; a connection idle in the pool for a minute is not used again. `deadline` bounds connect + send + headers; `body_deadline`
  // bounds the body (use time_point::max() for long-lived streams). `max_body` bounds a buffered body.
  net::awaitable<ClientResponse> request(
      ClientRequest req,
      std::chrono::steady_clock::time_point deadline,
      std::function<bool(std::string_view)> on_body = {},
      std::chrono::steady_clock::time_point body_deadline = std::chrono::steady_clock::time_point::max(),
      std::size_t max_body = 64 * 1024 * 1024,
      std::function<void(const ResponseHead&)> on_headers = {});

  // Closes idle connections and makes in-flight ones fail.
  void close();
  const Origin& origin() const { return origin_; }

 private:
  struct Conn;
  net::awaitable<std::unique_ptr<Conn>> connect(std::chrono::steady_clock::time_point deadline,
                                                boost::system::error_code& ec);
  void start_watchdog();  // enforces the deadlines of busy connections, once a second, while there are any
  net::any_io_executor ex_;
  Origin origin_;
  std::string host_header_;
  std::size_t max_idle_;
  std::vector<std::unique_ptr<Conn>> idle_;
  std::vector<Conn*> busy_;
  std::size_t max_conns_ = 512;
  std::size_t connecting_ = 0;  // connections being made (counted against max_conns_ with busy_)
  struct Waiter;
  std::list<Waiter*> waiting_;  // requests waiting for a connection, first come first served
  void wake_one();
  // The most recently pooled connection the server has not closed (checked after 100 ms idle), or null.
  std::unique_ptr<Conn> take_idle();
  bool closed_ = false;
  bool watchdog_running_ = false;
};

net::ssl::context& client_tls_context();

}  // namespace gh::http
