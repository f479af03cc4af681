// HTTP/1.1 server on Boost.Beast coroutines. A handler sees an Exchange (request + ways to answer),
// never a socket; every read and write has a deadline; bodies and headers are bounded.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include "http/request.hpp"
#include "http/stream.hpp"

namespace gh::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

using Response = bhttp::response<bhttp::string_body>;
using RequestParser = bhttp::request_parser<bhttp::string_body>;

// Which requests the server does not read whole: for them the handler gets the connection with the body
// still on the wire (Exchange::wire()), to relay it as it arrives (the reverse proxy). Decided on the head.
using RawRoute = std::function<bool(const Request&)>;

struct ServerLimits {
  std::size_t max_body_bytes = 4 * 1024 * 1024;
  std::size_t max_header_bytes = 32 * 1024;  // room for large Entra tokens (many groups) in one header
  std::chrono::seconds idle_timeout{75};    // keep-alive wait for the next request
  std::chrono::seconds read_timeout{30};    // reading one request once it started
  std::chrono::seconds write_timeout{30};   // each write
  std::size_t raw_max_body_bytes = 100 * 1024 * 1024;  // a raw-route request's declared Content-Length
  std::size_t max_connections = std::size_t(1) << 20;  // open client connections; past it a new one gets a 503
};

// Client connections of every Server in the process (for the metrics).
struct ConnectionCounts {
  std::size_t open = 0;
  uint64_t refused = 0;  // turned away at max_connections
};
ConnectionCounts connection_counts();

// A raw-route request's connection: the head is parsed (into Exchange::req, whose body stays empty), the
// body is not. Whoever reads the body sets body_done once the parser is done; otherwise the
// connection closes after the exchange, as unread body bytes would be taken for the next request. A
// handler that writes its answer itself calls Exchange::wrote_response().
struct Wire {
  Stream& stream;
  beast::flat_buffer& buffer;  // bytes read past the head (the body's beginning) are here
  RequestParser& parser;       // header done; may be converted (moved) into a parser of another body type
  bool body_done = false;
  bool upgraded = false;       // the connection was handed over (WebSocket): it closes after the exchange
  std::size_t bytes_in = 0;
  // The client sent `Expect: 100-continue` and waits for 100 before its body: sent by send_continue() when the
  // handler is about to read the body, so that a refusal before that goes out instead (RFC 9110 §10.1.1).
  bool expect_continue = false;
};
net::awaitable<void> send_continue(Wire& wire, std::chrono::seconds timeout);

// What a handler keeps from one request of a keep-alive connection to the next (the API key it verified
// last); it goes with the connection.
struct ConnectionMemo {
  virtual ~ConnectionMemo() = default;
};

// One request and its answer. Either send() once, or begin_stream() + write()* + end_stream().
class Exchange {
 public:
  Exchange(Stream& stream, Request& req, std::string request_id, std::string client_ip,
           const ServerLimits& limits, Wire* wire = nullptr, std::unique_ptr<ConnectionMemo>* memo = nullptr);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  Request& req;
  const std::string request_id;
  const std::string client_ip;
  // What the request was about, when it was an MCP call (for analytics).
  std::string mcp_server, mcp_tool;

  net::awaitable<void> send(Response res);
  // A JSON answer written without building a Beast message (the hot path). `extra` holds whole header
  // lines ("Name: value\r\n"), or is empty.
  net::awaitable<void> send_json(bhttp::status status, std::string body, std::string_view extra = {});
  // Starts a chunked streaming response with the given status and headers. Returns false if the peer is gone.
  net::awaitable<bool> begin_stream(bhttp::response_header<> header);
  net::awaitable<bool> write(std::string_view data);
  net::awaitable<void> end_stream();
  // Calls `cb` once if the client closes the connection while the answer is pending. The watch starts with
  // the watchdog's next round (so it is noticed within about a second, and the many calls answered sooner
  // never arm one), or `at_once` for long-lived answers (streams, proxied requests).
  void on_disconnect(std::function<void()> cb, bool at_once = false);
  void stop_watching();

  bool responded() const { return responded_; }
  bool streaming() const { return streaming_; }
  bool broken() const { return broken_; }
  // Close the connection after this exchange.
  void close_after() { close_after_ = true; }
  bool close_requested() const { return close_after_ || broken_; }
  std::size_t bytes_out() const { return bytes_out_; }
  int status() const { return status_; }

  // Non-null for a raw-route request (see RawRoute).
  Wire* wire() const { return wire_; }
  // The connection's memo slot (null outside a server connection, e.g. in tests).
  std::unique_ptr<ConnectionMemo>* memo() const { return memo_; }
  // For a handler that wrote (or is writing) the answer on wire()->stream itself: what it sent.
  void wrote_response(int status) {
    responded_ = true;
    status_ = status;
  }
  void count_bytes_out(std::size_t n) { bytes_out_ += n; }

 private:
  Stream& stream_;
  const ServerLimits& limits_;
  Wire* wire_ = nullptr;
  std::unique_ptr<ConnectionMemo>* memo_ = nullptr;
  bool responded_ = false, streaming_ = false, broken_ = false, close_after_ = false;
  bool unframed_ = false;  // a stream to an HTTP/1.0 client: no chunks, ended by closing
  struct Watch {
    bool active = true, armed = false;
    std::function<void()> cb;
  };
  void arm_watch();
  void poll_hangup();  // after a pipelined request arrived: whether the client has gone (each watchdog round)
  std::shared_ptr<Watch> watching_;
  std::size_t bytes_out_ = 0;
  int status_ = 0;
};

using Handler = std::function<net::awaitable<void>(Exchange&)>;

class Server {
 public:
  // With `raw_route`, the requests it selects reach `handler` with their body unread (Exchange::wire()).
  Server(net::io_context& io, ServerLimits limits, Handler handler, RawRoute raw_route = {});
  ~Server();
  // Binds and listens; returns the bound port.
  uint16_t listen(const std::string& host, uint16_t port);
  void start();
  // Keep serving, but close each connection after its current response (load balancers see 503s and leave).
  void drain() { draining_ = true; }
  // Stop accepting and close connections that are between requests.
  void stop_accepting();
  // Close every connection now.
  void close_all();
  std::size_t connections() const { return conns_.size(); }
  std::size_t busy_connections() const;

 private:
  struct Conn {
    Stream* stream = nullptr;
    bool busy = false;
  };
  net::awaitable<void> accept_loop();
  net::awaitable<void> watchdog();
  net::awaitable<void> serve(net::ip::tcp::socket socket);
  // Runs the handler for one exchange and makes sure an answer went out; returns whether the connection
  // must close afterwards.
  net::awaitable<bool> run_exchange(Exchange& ex);
  // A request that parse_request_head left to Beast's parser: read whole into `req`, or (a raw route) its
  // exchange held here with the body on the wire, or refused.
  enum class Read { request, handled, stop };
  net::awaitable<Read> read_with_beast(Stream& stream, beast::flat_buffer& buffer, Request& req,
                                       const std::string& client_ip, std::unique_ptr<ConnectionMemo>& memo);
  // One raw-route exchange; returns whether the connection can carry another request.
  net::awaitable<bool> serve_raw(Stream& stream, beast::flat_buffer& buffer, RequestParser& parser, Request& req,
                                 const std::string& client_ip, std::unique_ptr<ConnectionMemo>& memo,
                                 bool expect_continue);

  net::io_context& io_;
  ServerLimits limits_;
  Handler handler_;
  RawRoute raw_route_;
  net::ip::tcp::acceptor acceptor_;
  std::list<Conn> conns_;
  bool stopping_ = false;
  bool draining_ = false;
  std::string id_prefix_;
  uint64_t next_id_ = 0;
};

}  // namespace gh::http
