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

#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <string>
#include <type_traits>

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#include <utility>

#include "core/cgroup.hpp"

namespace gh {

class BlockingPool {
 public:
  // How the threads are scheduled next to the io thread. `nice` > 0: a little behind it. `Idle`: Linux's
  // SCHED_IDLE class, which runs only on a core nothing else wants and never preempts other work; for
  // background work that can wait (the analytics writer), so that on a busy machine every core the
  // request path can use stays with it.
  enum class Class { normal, idle };
  // `name` (at most 15 characters) names the threads, as `top -H`, `ps -L` and /proc/<pid>/task/*/comm show
  // them. `cgroup`, when not empty, is the directory of a cgroup each thread moves into (cgroup::join); a
  // thread that cannot stays where it is, and cgroup_error() says why.
  explicit BlockingPool(std::size_t threads, int nice = 0, Class cls = Class::normal, const char* name = nullptr,
                        std::string cgroup = {})
      : pool_(threads) {
    if (nice == 0 && cls == Class::normal && !name && cgroup.empty()) return;
    // One job per thread, held until all have started, so that each thread sets its own name and scheduling.
    auto started = std::make_shared<std::latch>(static_cast<std::ptrdiff_t>(threads));
    for (std::size_t i = 0; i < threads; ++i)
      boost::asio::post(pool_, [this, started, nice, cls, name, cgroup] {
        if (name) ::pthread_setname_np(::pthread_self(), name);
        if (nice) ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice);
        if (cls == Class::idle) {
          sched_param sp{};
          ::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &sp);
        }
        if (!cgroup.empty()) {
          auto error = cgroup::join(cgroup);
          if (!error.empty() && !cgroup_failed_.exchange(true)) cgroup_error_ = std::move(error);
        }
        started->arrive_and_wait();
      });
    started->wait();
  }
  // After construction: "" when every thread joined the constructor's cgroup (or none was asked for).
  const std::string& cgroup_error() const { return cgroup_error_; }
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
  // At shutdown: drops the jobs not started and waits at most `limit` for those running (a store call held
  // behind a lock); false when they have not ended by then.
  bool stop_and_join_for(std::chrono::milliseconds limit);

 private:
  std::atomic<bool> cgroup_failed_{false};
  std::string cgroup_error_;  // written by the first thread that failed, before the constructor returns
  boost::asio::thread_pool pool_;
};

}  // namespace gh
