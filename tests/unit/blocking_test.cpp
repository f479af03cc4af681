// BlockingPool: its threads' names and scheduling (what `top -H` shows and an operator's cgroup can select).
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <pthread.h>
#include <sched.h>

#include <string>

#include "core/blocking.hpp"

namespace net = boost::asio;

namespace {
struct Seen {
  std::string name;
  int policy = -1;
};

Seen seen_on(gh::BlockingPool& pool) {
  Seen s;
  net::io_context io;
  net::co_spawn(io, [&]() -> net::awaitable<void> {
    auto job = [&s] {
      char buf[16] = {};
      ::pthread_getname_np(::pthread_self(), buf, sizeof buf);
      s.name = buf;
      s.policy = ::sched_getscheduler(0);  // this thread's
    };
    co_await pool.run(std::move(job));
  }, net::detached);
  io.run();
  return s;
}
}  // namespace

TEST(BlockingPool, NamesItsThreadsAndSetsTheirClass) {
  gh::BlockingPool idle(1, 0, gh::BlockingPool::Class::idle, "gh-test-idle");
  auto s = seen_on(idle);
  EXPECT_EQ(s.name, "gh-test-idle");
  EXPECT_EQ(s.policy, SCHED_IDLE);

  gh::BlockingPool named(2, 0, gh::BlockingPool::Class::normal, "gh-test-pool");
  s = seen_on(named);
  EXPECT_EQ(s.name, "gh-test-pool");
  EXPECT_EQ(s.policy, SCHED_OTHER);
}

TEST(BlockingPool, AnUnnamedPoolKeepsTheProcessName) {
  char mine[16] = {};
  ::pthread_getname_np(::pthread_self(), mine, sizeof mine);
  gh::BlockingPool plain(1);
  EXPECT_EQ(seen_on(plain).name, std::string(mine));
}

TEST(BlockingPool, ACgroupItCannotJoinIsReportedAndTheThreadsStillWork) {
  gh::BlockingPool pool(2, 0, gh::BlockingPool::Class::idle, "gh-test-cg", "/nonexistent-cgroup-dir");
  EXPECT_NE(pool.cgroup_error().find("/nonexistent-cgroup-dir"), std::string::npos) << pool.cgroup_error();
  EXPECT_EQ(seen_on(pool).name, "gh-test-cg");  // started, named, and running jobs
  gh::BlockingPool none(1, 0, gh::BlockingPool::Class::idle, "gh-test-none");
  EXPECT_EQ(none.cgroup_error(), "");
}
