// RedisClient and SharedLimiter against a real redis-server, started per test on a free port.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "core/event.hpp"
#include "store/redis.hpp"

using namespace gh;
namespace net = boost::asio;
using namespace std::chrono_literals;
using store::RedisReply;

namespace {

int free_port() {
  net::io_context io;
  net::ip::tcp::acceptor a(io, net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

bool port_open(int port) {
  net::io_context io;
  net::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)), ec);
  return !ec;
}

int64_t wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Runs one coroutine to completion on io (other work, such as a client's reader, stays queued).
template <class T>
T run(net::io_context& io, net::awaitable<T> task) {
  std::optional<T> result;
  std::exception_ptr error;
  net::co_spawn(io, std::move(task), [&](std::exception_ptr e, T v) {
    error = e;
    result = std::move(v);
    io.stop();
  });
  io.restart();
  io.run();
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

net::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  net::steady_timer t(co_await net::this_coro::executor, d);
  co_await t.async_wait(net::use_awaitable);
}

class RedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (system("command -v redis-server >/dev/null 2>&1") != 0) GTEST_SKIP() << "redis-server not installed";
    char tmpl[] = "/tmp/gh-redis-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    port_ = free_port();
    start_redis();
    url_ = "redis://127.0.0.1:" + std::to_string(port_);
    std::mt19937_64 rng(std::random_device{}());
    prefix_ = "t" + std::to_string(rng());
  }
  void TearDown() override {
    stop_redis();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  void start_redis() {
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      std::string port = std::to_string(port_);
      std::string log = dir_ + "/redis.log";
      execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", dir_.c_str(), "--loglevel", "warning", "--logfile", log.c_str(), "--enable-debug-command", "local",
             static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 500 && !port_open(port_); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(port_open(port_)) << "redis-server did not start";
  }
  void stop_redis() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  net::io_context io_;
  std::string dir_, url_, prefix_;
  int port_ = 0;
  pid_t pid_ = -1;
};

net::awaitable<std::optional<RedisReply>> cmd(std::shared_ptr<store::RedisClient> c, std::vector<std::string> args) {
  co_return co_await c->command(std::move(args), 2000ms);
}

}  // namespace

TEST_F(RedisTest, Commands) {
  auto c = store::RedisClient::create(io_.get_executor(), url_);
  EXPECT_FALSE(c->connected());
  std::string k = prefix_ + ":k";
  auto set = run(io_, cmd(c, {"SET", k, "hello world"}));
  ASSERT_TRUE(set);
  EXPECT_EQ(set->type, RedisReply::Type::status);
  EXPECT_EQ(set->str, "OK");
  EXPECT_TRUE(c->connected());
  auto get = run(io_, cmd(c, {"GET", k}));
  ASSERT_TRUE(get);
  EXPECT_EQ(get->type, RedisReply::Type::string);
  EXPECT_EQ(get->str, "hello world");
  auto nil = run(io_, cmd(c, {"GET", prefix_ + ":missing"}));
  ASSERT_TRUE(nil);
  EXPECT_EQ(nil->type, RedisReply::Type::nil);
  auto incr = run(io_, cmd(c, {"INCR", prefix_ + ":n"}));
  ASSERT_TRUE(incr);
  EXPECT_EQ(incr->type, RedisReply::Type::integer);
  EXPECT_EQ(incr->integer, 1);
  incr = run(io_, cmd(c, {"INCRBY", prefix_ + ":n", "41"}));
  ASSERT_TRUE(incr);
  EXPECT_EQ(incr->integer, 42);
  // An error reply is a reply (the connection stays up).
  auto err = run(io_, cmd(c, {"INCR", k}));
  ASSERT_TRUE(err);
  EXPECT_EQ(err->type, RedisReply::Type::error);
  EXPECT_NE(err->str.find("not an integer"), std::string::npos) << err->str;
  EXPECT_TRUE(c->connected());
  // Binary-safe arguments and an array reply.
  std::string bin("a\0b\r\nc", 6);
  auto push = run(io_, cmd(c, {"RPUSH", prefix_ + ":l", "x", bin, ""}));
  ASSERT_TRUE(push);
  EXPECT_EQ(push->integer, 3);
  auto range = run(io_, cmd(c, {"LRANGE", prefix_ + ":l", "0", "-1"}));
  ASSERT_TRUE(range);
  ASSERT_EQ(range->type, RedisReply::Type::array);
  ASSERT_EQ(range->elements.size(), 3u);
  EXPECT_EQ(range->elements[0].str, "x");
  EXPECT_EQ(range->elements[1].str, bin);
  EXPECT_EQ(range->elements[2].str, "");
  c->close();
  EXPECT_FALSE(c->connected());
  EXPECT_FALSE(run(io_, cmd(c, {"PING"})));  // closed for good
}

TEST_F(RedisTest, UrlOptions) {
  auto c = store::RedisClient::create(io_.get_executor(), url_ + "/3");
  ASSERT_TRUE(run(io_, cmd(c, {"SET", prefix_ + ":db", "1"})));
  auto db0 = store::RedisClient::create(io_.get_executor(), url_);
  auto in0 = run(io_, cmd(db0, {"EXISTS", prefix_ + ":db"}));
  ASSERT_TRUE(in0);
  EXPECT_EQ(in0->integer, 0);
  auto in3 = run(io_, cmd(c, {"EXISTS", prefix_ + ":db"}));
  ASSERT_TRUE(in3);
  EXPECT_EQ(in3->integer, 1);
  // A host name goes through the resolver.
  auto named = store::RedisClient::create(io_.get_executor(), "redis://localhost:" + std::to_string(port_) + "/3");
  auto in3n = run(io_, cmd(named, {"EXISTS", prefix_ + ":db"}));
  ASSERT_TRUE(in3n);
  EXPECT_EQ(in3n->integer, 1);
  // AUTH from the URL; a wrong password is a failed connection.
  ASSERT_TRUE(run(io_, cmd(c, {"CONFIG", "SET", "requirepass", "s3cret"})));
  auto authed = store::RedisClient::create(io_.get_executor(), "redis://:s3cret@127.0.0.1:" + std::to_string(port_) + "/3");
  auto in3a = run(io_, cmd(authed, {"EXISTS", prefix_ + ":db"}));
  ASSERT_TRUE(in3a);
  EXPECT_EQ(in3a->integer, 1);
  auto wrong = store::RedisClient::create(io_.get_executor(), "redis://:nope@127.0.0.1:" + std::to_string(port_));
  EXPECT_FALSE(run(io_, cmd(wrong, {"PING"})));
  EXPECT_FALSE(wrong->connected());
  for (auto& x : {c, db0, named, authed, wrong}) x->close();
  EXPECT_THROW(store::RedisClient::create(io_.get_executor(), "http://localhost"), std::invalid_argument);
  EXPECT_THROW(store::RedisClient::create(io_.get_executor(), "redis://localhost/x"), std::invalid_argument);
  EXPECT_THROW(store::RedisClient::create(io_.get_executor(), "redis://localhost:99999"), std::invalid_argument);
}

TEST_F(RedisTest, PipelinedCommandsKeepOrder) {
  auto c = store::RedisClient::create(io_.get_executor(), url_);
  constexpr int N = 500;
  std::vector<std::optional<RedisReply>> echo(N), incr(N);
  int finished = 0;
  std::string counter = prefix_ + ":ctr";
  auto body = [&]() -> net::awaitable<int> {
    auto ex = co_await net::this_coro::executor;
    Event all_done(ex);
    for (int i = 0; i < N; ++i) {
      auto one = [&, i]() -> net::awaitable<void> {
        std::vector<std::string> e{"ECHO", "v" + std::to_string(i)};
        std::vector<std::string> n{"INCR", counter};
        auto r1 = co_await c->command(std::move(e), 5000ms);
        echo[i] = std::move(r1);
        auto r2 = co_await c->command(std::move(n), 5000ms);
        incr[i] = std::move(r2);
        if (++finished == N) all_done.set();
      };
      net::co_spawn(ex, one, net::detached);
    }
    co_await all_done.wait_until(std::chrono::steady_clock::now() + 20s);
    co_return finished;
  };
  ASSERT_EQ(run(io_, body()), N);
  std::vector<bool> seen(N + 1);
  for (int i = 0; i < N; ++i) {
    ASSERT_TRUE(echo[i]) << i;
    EXPECT_EQ(echo[i]->str, "v" + std::to_string(i));
    ASSERT_TRUE(incr[i]) << i;
    ASSERT_EQ(incr[i]->type, RedisReply::Type::integer);
    ASSERT_GE(incr[i]->integer, 1);
    ASSERT_LE(incr[i]->integer, N);
    EXPECT_FALSE(seen[incr[i]->integer]);
    seen[incr[i]->integer] = true;
  }
  // The INCRs were sent in the order the ECHO replies came back, i.e. in spawn order.
  for (int i = 0; i < N; ++i) EXPECT_EQ(incr[i]->integer, i + 1) << i;
  c->close();
}

TEST_F(RedisTest, UnreachableAnswersAtOnce) {
  int dead_port = free_port();
  auto c = store::RedisClient::create(io_.get_executor(), "redis://127.0.0.1:" + std::to_string(dead_port));
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(run(io_, cmd(c, {"PING"})));  // connection refused
  EXPECT_FALSE(run(io_, cmd(c, {"PING"})));  // in backoff: no attempt at all
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
  EXPECT_FALSE(c->connected());
  c->close();
}

TEST_F(RedisTest, TimeoutDropsConnection) {
  auto c = store::RedisClient::create(io_.get_executor(), url_);
  ASSERT_TRUE(run(io_, cmd(c, {"PING"})));
  // DEBUG SLEEP holds the server longer than the command timeout.
  auto slow = [&]() -> net::awaitable<std::optional<RedisReply>> {
    std::vector<std::string> a{"DEBUG", "SLEEP", "0.3"};
    co_return co_await c->command(std::move(a), 50ms);
  };
  auto t0 = std::chrono::steady_clock::now();
  auto r = run(io_, slow());
  if (r && r->type == RedisReply::Type::error) GTEST_SKIP() << "DEBUG disabled: " << r->str;
  EXPECT_FALSE(r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 250ms);
  EXPECT_FALSE(c->connected());
  // Back after the backoff, with replies in order again.
  std::optional<RedisReply> echo;
  auto poll = [&]() -> net::awaitable<int> {
    for (int i = 0; i < 100; ++i) {
      std::vector<std::string> a{"ECHO", "again"};
      echo = co_await c->command(std::move(a), 1000ms);
      if (echo) co_return i;
      co_await sleep_for(50ms);
    }
    co_return -1;
  };
  EXPECT_GE(run(io_, poll()), 0);
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->str, "again");
  c->close();
}

TEST_F(RedisTest, SharedLimiterBurst) {
  auto c = store::RedisClient::create(io_.get_executor(), url_);
  policy::LocalLimiter local;
  store::SharedLimiter lim(c, local, 1000ms);
  policy::RateLimit l{60, 5};
  auto body = [&]() -> net::awaitable<std::vector<policy::RateDecision>> {
    std::vector<policy::RateDecision> out;
    for (int i = 0; i < 20; ++i) out.push_back(co_await lim.check(prefix_, l, wall_us()));
    co_return out;
  };
  auto ds = run(io_, body());
  int allowed = 0;
  for (std::size_t i = 0; i < ds.size(); ++i) {
    EXPECT_EQ(ds[i].limit, 5);
    if (ds[i].allowed) {
      EXPECT_EQ(ds[i].remaining, 4 - allowed) << i;
      EXPECT_EQ(ds[i].reset_s, allowed + 1) << i;
      ++allowed;
    } else {
      EXPECT_EQ(ds[i].remaining, 0);
      EXPECT_GE(ds[i].retry_after_s, 1);
      EXPECT_LE(ds[i].retry_after_s, 1);
      EXPECT_EQ(ds[i].reset_s, 5);
    }
  }
  EXPECT_EQ(allowed, 5);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(ds[i].allowed) << i;
  EXPECT_EQ(lim.stats().redis_decisions, 20u);
  EXPECT_EQ(lim.stats().fallbacks, 0u);
  EXPECT_EQ(local.keys(), 0u);
  EXPECT_TRUE(lim.stats().redis_up);
  // The TAT key expires just past the TAT (5 s ahead).
  auto ttl = run(io_, cmd(c, {"PTTL", "gatehouse:rl:" + prefix_}));
  ASSERT_TRUE(ttl);
  EXPECT_GT(ttl->integer, 4000);
  EXPECT_LE(ttl->integer, 5001);
  c->close();
}

TEST_F(RedisTest, SharedLimiterChargesACostAsTheLocalOne) {
  auto c = store::RedisClient::create(io_.get_executor(), url_);
  policy::LocalLimiter local;
  store::SharedLimiter lim(c, local, 1000ms);
  auto body = [&]() -> net::awaitable<std::vector<policy::RateDecision>> {
    std::vector<policy::RateDecision> out;
    for (int64_t cost : {3, 3, 6, 2}) {
      policy::RateLimit l{60, 5};
      l.cost = cost;
      out.push_back(co_await lim.check(prefix_, l, wall_us()));
    }
    co_return out;
  };
  auto ds = run(io_, body());
  ASSERT_EQ(ds.size(), 4u);
  EXPECT_TRUE(ds[0].allowed);
  EXPECT_EQ(ds[0].remaining, 2);
  EXPECT_FALSE(ds[1].allowed);  // 3 with 2 left
  EXPECT_EQ(ds[1].retry_after_s, 1);
  EXPECT_FALSE(ds[2].allowed);  // more than the burst
  EXPECT_EQ(ds[2].retry_after_s, 3);  // when the allowance is whole again
  EXPECT_TRUE(ds[3].allowed);
  EXPECT_EQ(ds[3].remaining, 0);
  EXPECT_EQ(lim.stats().fallbacks, 0u);
  c->close();
}

TEST_F(RedisTest, SharedLimiterReloadsScript) {
  auto c = store::RedisClient::create(io_.get_executor(), url_);
  policy::LocalLimiter local;
  store::SharedLimiter lim(c, local, 1000ms);
  policy::RateLimit l{60, 5};
  EXPECT_TRUE(run(io_, lim.check(prefix_, l, wall_us())).allowed);
  ASSERT_TRUE(run(io_, cmd(c, {"SCRIPT", "FLUSH"})));
  auto d = run(io_, lim.check(prefix_, l, wall_us()));  // NOSCRIPT, loaded again
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 3);
  EXPECT_EQ(lim.stats().redis_decisions, 2u);
  EXPECT_EQ(lim.stats().fallbacks, 0u);
  c->close();
}

TEST_F(RedisTest, SharedLimiterSharedAcrossInstances) {
  auto c1 = store::RedisClient::create(io_.get_executor(), url_);
  auto c2 = store::RedisClient::create(io_.get_executor(), url_);
  policy::LocalLimiter local1, local2;
  store::SharedLimiter a(c1, local1, 1000ms), b(c2, local2, 1000ms);
  policy::RateLimit l{60, 5};
  auto body = [&]() -> net::awaitable<int> {
    int allowed = 0;
    for (int i = 0; i < 10; ++i) {
      auto da = co_await a.check(prefix_, l, wall_us());
      auto db = co_await b.check(prefix_, l, wall_us());
      allowed += da.allowed + db.allowed;
    }
    co_return allowed;
  };
  EXPECT_EQ(run(io_, body()), 5);
  EXPECT_EQ(a.stats().redis_decisions, 10u);
  EXPECT_EQ(b.stats().redis_decisions, 10u);
  c1->close();
  c2->close();
}

TEST_F(RedisTest, SharedLimiterFallsBackAndRecovers) {
  auto c = store::RedisClient::create(io_.get_executor(), url_);
  policy::LocalLimiter local;
  constexpr auto timeout = 200ms;
  store::SharedLimiter lim(c, local, timeout);
  policy::RateLimit l{60, 5};
  auto d = run(io_, lim.check(prefix_, l, wall_us()));
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(lim.stats().redis_decisions, 1u);
  EXPECT_TRUE(lim.stats().redis_up);

  stop_redis();
  for (int i = 0; i < 10; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    d = run(io_, lim.check(prefix_, l, wall_us()));
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_LT(took, timeout + 100ms) << i;
    EXPECT_EQ(d.limit, 5);
  }
  EXPECT_EQ(lim.stats().redis_decisions, 1u);
  EXPECT_EQ(lim.stats().fallbacks, 10u);
  EXPECT_EQ(lim.stats().local_decisions, 10u);
  EXPECT_FALSE(lim.stats().redis_up);
  EXPECT_EQ(local.keys(), 1u);

  start_redis();
  auto poll = [&]() -> net::awaitable<int> {
    for (int i = 0; i < 200; ++i) {
      auto before = lim.stats().redis_decisions;
      co_await lim.check(prefix_ + ":after", l, wall_us());
      if (lim.stats().redis_decisions > before) co_return i;
      co_await sleep_for(50ms);
    }
    co_return -1;
  };
  EXPECT_GE(run(io_, poll()), 0);
  EXPECT_TRUE(lim.stats().redis_up);
  EXPECT_TRUE(c->connected());
  // The restarted Redis has no script cache (and no keys): it was loaded again and counts from a full burst.
  d = run(io_, lim.check(prefix_ + ":fresh", l, wall_us()));
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 4);
  c->close();
}

TEST_F(RedisTest, SharedLimiterSlowRedisFallsBackWithinTimeout) {
  auto c = store::RedisClient::create(io_.get_executor(), url_);
  auto blocker = store::RedisClient::create(io_.get_executor(), url_);
  policy::LocalLimiter local;
  constexpr auto timeout = 100ms;
  store::SharedLimiter lim(c, local, timeout);
  policy::RateLimit l{60, 5};
  ASSERT_TRUE(run(io_, lim.check(prefix_, l, wall_us())).allowed);  // connected, script loaded
  auto body = [&]() -> net::awaitable<std::optional<RedisReply>> {
    auto ex = co_await net::this_coro::executor;
    auto sleep = [blocker]() -> net::awaitable<void> {
      std::vector<std::string> a{"DEBUG", "SLEEP", "0.5"};
      co_await blocker->command(std::move(a), 5000ms);
    };
    net::co_spawn(ex, sleep, net::detached);
    co_await sleep_for(20ms);  // the server is now busy
    std::vector<std::string> ping{"PING"};
    auto t0 = std::chrono::steady_clock::now();
    co_await lim.check(prefix_, l, wall_us());
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, timeout - 5ms);
    EXPECT_LT(took, timeout + 100ms);
    co_return co_await blocker->command(std::move(ping), 5000ms);
  };
  auto pong = run(io_, body());
  ASSERT_TRUE(pong);  // (the fixture enables DEBUG)
  EXPECT_EQ(pong->str, "PONG");
  EXPECT_EQ(lim.stats().fallbacks, 1u);
  EXPECT_FALSE(lim.stats().redis_up);
  EXPECT_FALSE(c->connected());  // the timed-out connection was dropped
  c->close();
  blocker->close();
}
