// A small thread pool for blocking work (database calls, password hashing, file I/O), so that io threads
// never wait on it. `co_await pool.run(fn)` runs fn there and resumes the caller on its own executor;
// exceptions thrown by fn are rethrown in the caller.
// Pass a named function object (`auto job = [...]{...}; co_await pool.run(std::move(job));`), not a lambda
// written inside the co_await: GCC 12 destroys such temporaries twice (seen as a double free of captures).
#pragma once
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <type_traits>
#include <utility>

namespace gh {

class BlockingPool {
 public:
  explicit BlockingPool(std::size_t threads) : pool_(threads) {}
  ~BlockingPool() { pool_.join(); }

  template <class F>
  boost::asio::awaitable<std::invoke_result_t<F&>> run(F f) {
    using R = std::invoke_result_t<F&>;
    return boost::asio::co_spawn(
        pool_.get_executor(),
        [f = std::move(f)]() mutable -> boost::asio::awaitable<R> {
          if constexpr (std::is_void_v<R>) {
            f();
            co_return;
          } else {
            co_return f();
          }
        },
        boost::asio::use_awaitable);
  }

  // Fire and forget (errors are the function's business).
  template <class F>
  void post(F f) { boost::asio::post(pool_, std::move(f)); }

  void join() { pool_.join(); }

 private:
  boost::asio::thread_pool pool_;
};

}  // namespace gh
