// A one-shot event for coroutines on a single-threaded io_context: set() wakes every waiter.
// Any number of wait() callers, but wait_until() with a finite deadline is for a single waiter.
#pragma once
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace gh {

class Event {
 public:
  explicit Event(const boost::asio::any_io_executor& ex) : timer_(ex, boost::asio::steady_timer::time_point::max()) {}
  void set() {
    set_ = true;
    timer_.cancel();
  }
  bool is_set() const { return set_; }
  void reset() { set_ = false; }
  // Waits until set() or the deadline; returns whether the event is set.
  boost::asio::awaitable<bool> wait_until(boost::asio::steady_timer::time_point deadline) {
    while (!set_) {
      if (timer_.expiry() != deadline) timer_.expires_at(deadline);  // resetting would wake other waiters
      auto [ec] = co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
      if (!ec) break;  // deadline reached
    }
    co_return set_;
  }
  boost::asio::awaitable<void> wait() {
    co_await wait_until(boost::asio::steady_timer::time_point::max());
  }

 private:
  boost::asio::steady_timer timer_;
  bool set_ = false;
};

}  // namespace gh
