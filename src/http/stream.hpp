// A TCP socket with a deadline that a periodic watchdog enforces (Server::watchdog, ClientPool::watchdog).
// Beast's tcp_stream arms and cancels a timer around every read and write; with thousands of requests a
// second that timer traffic was a large share of the gateway's CPU. A coarse (1 s) watchdog costs nothing
// per operation: expires_after() only stores a time point.
#pragma once
#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <utility>

namespace gh::http {

namespace net = boost::asio;

// Read buffers (Beast's flat_buffer). Beast reads max(512, the buffer's free capacity) bytes per call and never
// grows a buffer that its parser consumes as it reads: a 10 KB body took 20 recv calls. Before a body, room
// for it: its Content-Length, at most 32 KiB (what a request head may already hold: a client's claim of a
// large body costs no more memory than a large head), 16 KiB when the length is unknown (chunked, SSE).
// After a message, a buffer grown past 16 KiB is given back, so idle connections keep little.
template <class Buffer, class Length>
void make_room_for_body(Buffer& b, const Length& content_length) {
  std::size_t want = content_length ? static_cast<std::size_t>(std::min<std::uint64_t>(*content_length, 32768)) : 16384;
  want = std::min(want, b.max_size() - std::min(b.max_size(), b.size()));  // (reserve past max_size throws)
  if (b.capacity() - b.size() < want) b.reserve(b.size() + want);
}
// A connection's read buffer holds a message head and a read's worth of what follows, never more: bodies
// stream through it (the parsers hand body bytes on as they arrive), so only a head, a chunk header with its
// extensions, or a trailer section could grow it, and one that never ends now fails Beast's read with
// http::error::buffer_overflow instead of growing the buffer without bound.
inline std::size_t read_buffer_limit(std::size_t max_head_bytes) { return max_head_bytes + 128 * 1024; }
template <class Buffer>
void release_large(Buffer& b) {
  if (b.capacity() > 16384) b.shrink_to_fit();
}

class Stream {
 public:
  using Clock = std::chrono::steady_clock;
  using executor_type = net::ip::tcp::socket::executor_type;
  using lowest_layer_type = net::ip::tcp::socket::lowest_layer_type;  // for ssl::stream<Stream&>

  explicit Stream(net::ip::tcp::socket s) : socket_(std::move(s)) {}
  explicit Stream(const net::any_io_executor& ex) : socket_(ex) {}

  net::ip::tcp::socket& socket() { return socket_; }
  executor_type get_executor() { return socket_.get_executor(); }
  lowest_layer_type& lowest_layer() { return socket_.lowest_layer(); }

  void expires_after(Clock::duration d) { deadline_ = Clock::now() + d; }
  void expires_at(Clock::time_point t) { deadline_ = t; }
  void expires_never() { deadline_ = Clock::time_point::max(); }
  // Called by a watchdog: past its deadline, the socket's operations are cancelled and it is shut down.
  bool enforce(Clock::time_point now) {
    if (now < deadline_) return false;
    timed_out_ = true;
    deadline_ = Clock::time_point::max();
    boost::system::error_code ec;
    socket_.cancel(ec);
    socket_.shutdown(net::socket_base::shutdown_both, ec);
    return true;
  }
  bool timed_out() const { return timed_out_; }

  // A watch for the peer going away that the watchdog starts on its next round (Exchange::on_disconnect):
  // most calls are answered well within a round and never pay for arming and cancelling a socket wait.
  std::function<void()> start_watch;
  void close() {
    boost::system::error_code ec;
    socket_.shutdown(net::socket_base::shutdown_both, ec);
    socket_.close(ec);
  }

  // AsyncReadStream, AsyncWriteStream, SyncReadStream (for parsing bytes already buffered).
  template <typename Buffers, typename Token>
  auto async_read_some(const Buffers& b, Token&& t) {
    return socket_.async_read_some(b, std::forward<Token>(t));
  }
  template <typename Buffers, typename Token>
  auto async_write_some(const Buffers& b, Token&& t) {
    return socket_.async_write_some(b, std::forward<Token>(t));
  }
  // Writes what the socket takes now, without waiting: how much (0 when it would block or failed — the
  // asynchronous write of the rest reports the error). An asynchronous write that completes at once still
  // has its completion queued, and on a single thread every such trip through the scheduler is another
  // epoll_wait; a hot-path write goes through here first.
  template <typename Buffers>
  std::size_t write_now(const Buffers& b) {
    boost::system::error_code ec;
    if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
    return ec ? 0 : socket_.write_some(b, ec);
  }
  template <typename Buffers>
  std::size_t read_some(const Buffers& b) { return socket_.read_some(b); }
  template <typename Buffers>
  std::size_t read_some(const Buffers& b, boost::system::error_code& ec) { return socket_.read_some(b, ec); }

 private:
  net::ip::tcp::socket socket_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
};

}  // namespace gh::http
