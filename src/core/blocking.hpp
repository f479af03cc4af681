// A small thread pool for blocking work (database calls, password hashing, file I/O), so that io threads
// never wait on it. `co_await pool.run(fn)` runs fn there and resumes the caller on its own executor;
// exceptions thrown by fn are rethrown in the caller.
// Pass a named function object (`auto job = [...]{...}; co_await pool.run(std::move(job));`), not a lambda
// written inside the co_await: GCC 12 destroys such temporaries twice (seen as a double free of captures).
#pragma once
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <latch>
#include <memory>
#include <type_traits>

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#include <utility>

namespace gh {

class BlockingPool {
 public:
  // How the threads are scheduled next to the io thread. `nice` > 0: a little behind it. `Idle`: Linux's
  // SCHED_IDLE class, which runs only on a core nothing else wants and never preempts other work; for
  // background work that can wait (the analytics writer), so that on a busy machine every core the
  // request path can use stays with it.
  enum class Class { normal, idle };
  // `name` (at most 15 characters) names the threads, as `top -H`, `ps -L` and /proc/<pid>/task/*/comm show
  // them.
  explicit BlockingPool(std::size_t threads, int nice = 0, Class cls = Class::normal, const char* name = nullptr)
      : pool_(threads) {
    if (nice == 0 && cls == Class::normal && !name) return;
    // One job per thread, held until all have started, so that each thread sets its own name and scheduling.
    auto started = std::make_shared<std::latch>(static_cast<std::ptrdiff_t>(threads));
    for (std::size_t i = 0; i < threads; ++i)
      boost::asio::post(pool_, [started, nice, cls, name] {
        if (name) ::pthread_setname_np(::pthread_self(), name);
        if (nice) ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice);
        if (cls == Class::idle) {
          sched_param sp{};
          ::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &sp);
        }
        started->arrive_and_wait();
      });
    started->wait();
  }
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
