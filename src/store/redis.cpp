#include "store/redis.hpp"

#include <hiredis/hiredis.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <charconv>
#include <deque>
#include <stdexcept>

#include "core/event.hpp"
#include "core/log.hpp"

namespace gh::store {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// 100 ms, 200 ms, 400 ms … capped at 5 s.
std::chrono::milliseconds reconnect_backoff(int failures) {
  auto ms = 100LL << std::min(std::max(failures - 1, 0), 6);
  return std::chrono::milliseconds(std::min(ms, 5000LL));
}

constexpr auto kConnectTimeout = std::chrono::seconds(2);
constexpr std::size_t kMaxQueuedWhileConnecting = 10'000;

RedisReply convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING: out.type = RedisReply::Type::string; break;
    case REDIS_REPLY_STATUS: out.type = RedisReply::Type::status; break;
    case REDIS_REPLY_ERROR: out.type = RedisReply::Type::error; break;
    case REDIS_REPLY_INTEGER: out.type = RedisReply::Type::integer; break;
    case REDIS_REPLY_ARRAY: out.type = RedisReply::Type::array; break;
    default: out.type = RedisReply::Type::nil; break;
  }
  if (r->type == REDIS_REPLY_INTEGER) out.integer = r->integer;
  if ((r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR) && r->str)
    out.str.assign(r->str, r->len);
  if (r->type == REDIS_REPLY_ARRAY) {
    out.elements.reserve(r->elements);
    for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
  }
  return out;
}

// RESP encoding by hiredis; false if it refused (out of memory).
bool encode(const std::vector<std::string>& args, std::string& out) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  int n = redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), argv.data(), lens.data());
  if (n < 0 || !cmd) return false;
  out.append(cmd, static_cast<std::size_t>(n));
  redisFreeCommand(cmd);
  return true;
}

struct ParsedUrl {
  std::string host = "127.0.0.1";
  std::string port = "6379";
  std::string user, password;
  std::string db;
};

ParsedUrl parse_url(const std::string& url) {
  auto r = boost::urls::parse_uri(url);
  if (!r) throw std::invalid_argument("invalid Redis URL");
  auto u = *r;
  if (u.scheme() != "redis") throw std::invalid_argument("Redis URL must start with redis://");
  ParsedUrl p;
  if (!u.host_address().empty()) p.host = u.host_address();
  if (u.has_port() && !u.port().empty()) p.port = u.port();
  if (p.port.find_first_not_of("0123456789") != std::string::npos || p.port.size() > 5 || std::stoi(p.port) == 0 ||
      std::stoi(p.port) > 65535)
    throw std::invalid_argument("Redis URL: invalid port");
  if (u.has_userinfo()) {
    p.user = u.user();
    if (u.has_password()) p.password = u.password();
    else {  // redis://secret@host: a password alone
      p.password = p.user;
      p.user.clear();
    }
  }
  std::string path = u.path();
  while (!path.empty() && path.front() == '/') path.erase(0, 1);
  if (!path.empty()) {
    int db = 0;
    auto [ptr, ec] = std::from_chars(path.data(), path.data() + path.size(), db);
    if (ec != std::errc() || ptr != path.data() + path.size() || db < 0)
      throw std::invalid_argument("Redis URL: the path must be a database number");
    if (db != 0) p.db = path;
  }
  return p;
}

// Errors that say this server cannot take the limiter's writes now, whatever the command.
bool unusable_server(std::string_view error) {
  for (std::string_view prefix : {"READONLY", "LOADING", "MASTERDOWN", "NOAUTH", "WRONGPASS"})
    if (error.starts_with(prefix)) return true;
  return false;
}

class Client final : public RedisClient {
 public:
  Client(net::any_io_executor ex, ParsedUrl url)
      : ex_(std::move(ex)), url_(std::move(url)), socket_(ex_), resolver_(ex_), deadline_(ex_), reader_(redisReaderCreate()) {}
  ~Client() override {
    boost::system::error_code ec;
    socket_.close(ec);
    if (reader_) redisReaderFree(reader_);
  }

  net::awaitable<std::optional<RedisReply>> command(std::vector<std::string> args,
                                                    std::chrono::milliseconds timeout) override {
    auto self = std::static_pointer_cast<Client>(shared_from_this());
    if (state_ == State::closed || args.empty() || timeout.count() <= 0) co_return std::nullopt;
    if (state_ == State::backoff) {
      if (Clock::now() < retry_at_) co_return std::nullopt;  // disconnected: answer at once
      start_connect();
    } else if (state_ == State::idle) {
      start_connect();
    }
    if (state_ == State::connecting && fifo_.size() >= kMaxQueuedWhileConnecting) co_return std::nullopt;
    auto w = std::make_shared<Waiter>(ex_);
    if (!encode(args, out_)) co_return std::nullopt;
    fifo_.push_back(w);
    if (state_ == State::connected) flush();
    const uint64_t gen = gen_;
    const auto deadline = Clock::now() + timeout;
    bool done = co_await w->done.wait_until(deadline);
    if (!done) {
      w->abandoned = true;
      // A reply still owed on this connection would be read by the next waiter: drop the connection.
      // While connecting, the waiter stays queued and its reply is consumed (and discarded) in order.
      if (state_ == State::connected && gen_ == gen) fail(gen, "command timed out");
      co_return std::nullopt;
    }
    co_return std::move(w->reply);
  }

  bool connected() const override { return state_ == State::connected; }

  void close() override {
    if (state_ == State::closed) return;
    drop_connection();
    state_ = State::closed;
  }

 private:
  enum class State { idle, connecting, connected, backoff, closed };
  struct Waiter {
    explicit Waiter(const net::any_io_executor& ex) : done(ex) {}
    Event done;
    std::optional<RedisReply> reply;
    bool abandoned = false;
  };

  void start_connect() {
    state_ = State::connecting;
    const uint64_t gen = ++gen_;
    auto self = std::static_pointer_cast<Client>(shared_from_this());
    deadline_.expires_after(kConnectTimeout);
    std::weak_ptr<Client> weak = self;
    deadline_.async_wait([weak, gen](boost::system::error_code ec) {
      auto s = weak.lock();
      if (ec || !s || s->gen_ != gen || s->state_ != State::connecting) return;
      s->resolver_.cancel();
      boost::system::error_code ignored;
      s->socket_.close(ignored);  // the pending connect or handshake read fails
    });
    net::co_spawn(ex_, connect(self, gen), net::detached);
  }

  static net::awaitable<void> connect(std::shared_ptr<Client> self, uint64_t gen) {
    std::string err = co_await self->connect_and_handshake(gen);
    if (self->gen_ != gen || self->state_ != State::connecting) co_return;  // closed meanwhile
    self->deadline_.cancel();
    if (!err.empty()) {
      self->fail(gen, err);
      co_return;
    }
    self->state_ = State::connected;
    // failures_ (the backoff) goes back to 0 at the first reply that is not an unusable server's error: a
    // replica that keeps answering READONLY is tried ever less often, not ten times a second.
    net::co_spawn(self->ex_, read_loop(self, gen), net::detached);
    self->flush();
  }

  // Resolves, connects and authenticates; returns an error text, empty on success.
  net::awaitable<std::string> connect_and_handshake(uint64_t gen) {
    std::vector<tcp::endpoint> endpoints;
    boost::system::error_code aec;
    auto addr = net::ip::make_address(url_.host, aec);
    if (!aec) {  // a numeric address: no resolver (whose getaddrinfo runs on an Asio-internal thread)
      endpoints.emplace_back(addr, static_cast<unsigned short>(std::stoi(url_.port)));
    } else {
      auto [rec, results] = co_await resolver_.async_resolve(url_.host, url_.port, net::as_tuple(net::use_awaitable));
      if (rec) co_return "resolve " + url_.host + ": " + rec.message();
      if (gen_ != gen) co_return "superseded";
      for (auto& entry : results) endpoints.push_back(entry.endpoint());
    }
    boost::system::error_code cec = net::error::host_not_found;
    for (auto& ep : endpoints) {
      boost::system::error_code ignored;
      socket_.close(ignored);
      auto [ec] = co_await socket_.async_connect(ep, net::as_tuple(net::use_awaitable));
      cec = ec;
      if (!ec || gen_ != gen) break;
    }
    if (cec) co_return "connect " + url_.host + ":" + url_.port + ": " + cec.message();
    if (gen_ != gen) co_return "superseded";
    boost::system::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    // AUTH and SELECT go first, answered before any queued command is written.
    std::string hello;
    int expect = 0;
    if (!url_.password.empty()) {
      std::vector<std::string> auth{"AUTH"};
      if (!url_.user.empty()) auth.push_back(url_.user);
      auth.push_back(url_.password);
      encode(auth, hello);
      ++expect;
    }
    if (!url_.db.empty()) {
      std::vector<std::string> sel{"SELECT", url_.db};
      encode(sel, hello);
      ++expect;
    }
    if (expect == 0) co_return std::string();
    auto [wec, wn] = co_await net::async_write(socket_, net::buffer(hello), net::as_tuple(net::use_awaitable));
    if (wec) co_return "write: " + wec.message();
    char buf[4096];
    while (expect > 0) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader_, &raw) != REDIS_OK) co_return std::string("protocol error: ") + reader_->errstr;
      if (raw) {
        auto reply = convert(static_cast<redisReply*>(raw));
        freeReplyObject(raw);
        if (reply.type == RedisReply::Type::error) co_return "handshake refused: " + reply.str;
        --expect;
        continue;
      }
      auto [ec, n] = co_await socket_.async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable));
      if (ec) co_return "read: " + ec.message();
      if (gen_ != gen) co_return "superseded";
      redisReaderFeed(reader_, buf, n);
    }
    co_return std::string();
  }

  static net::awaitable<void> read_loop(std::shared_ptr<Client> self, uint64_t gen) {
    std::vector<char> buf(16 * 1024);
    for (;;) {
      auto [ec, n] = co_await self->socket_.async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable));
      if (self->gen_ != gen) co_return;
      if (ec) {
        self->fail(gen, ec == net::error::eof ? std::string("connection closed by Redis") : "read: " + ec.message());
        co_return;
      }
      if (redisReaderFeed(self->reader_, buf.data(), n) != REDIS_OK) {
        self->fail(gen, std::string("protocol error: ") + self->reader_->errstr);
        co_return;
      }
      for (;;) {
        void* raw = nullptr;
        if (redisReaderGetReply(self->reader_, &raw) != REDIS_OK) {
          self->fail(gen, std::string("protocol error: ") + self->reader_->errstr);
          co_return;
        }
        if (!raw) break;
        auto reply = convert(static_cast<redisReply*>(raw));
        freeReplyObject(raw);
        if (self->fifo_.empty()) {
          self->fail(gen, "unexpected reply");
          co_return;
        }
        auto w = std::move(self->fifo_.front());
        self->fifo_.pop_front();
        // A server that is no longer (or not yet) a writable primary — a replica after a failover, one still
        // loading its data — answers every command with an error until the connection is made again, which
        // resolves the host name again (the new primary, under a name that moved to it).
        bool unusable = reply.type == RedisReply::Type::error && unusable_server(reply.str);
        std::string why = unusable ? reply.str : std::string();
        if (!unusable && self->failures_ > 0) {  // (said at the first good reply: a server that takes the
          self->failures_ = 0;                    // connection and refuses every command is not "connected")
          log::info("redis connected", {{"host", self->url_.host}, {"port", self->url_.port}});
        }
        if (!w->abandoned) {
          w->reply = std::move(reply);
          w->done.set();
        }
        if (unusable) {
          self->fail(gen, "Redis answered " + why.substr(0, 200));
          co_return;
        }
      }
    }
  }

  // Writes out_ (in arrival order) unless a write is already running; that one picks up what was added.
  void flush() {
    if (writing_ || out_.empty() || state_ != State::connected) return;
    writing_ = true;
    auto self = std::static_pointer_cast<Client>(shared_from_this());
    net::co_spawn(ex_, write_loop(self, gen_), net::detached);
  }

  static net::awaitable<void> write_loop(std::shared_ptr<Client> self, uint64_t gen) {
    std::string sending;
    while (self->gen_ == gen && !self->out_.empty()) {
      sending.clear();
      sending.swap(self->out_);
      auto [ec, n] = co_await net::async_write(self->socket_, net::buffer(sending), net::as_tuple(net::use_awaitable));
      if (self->gen_ != gen) break;
      if (ec) {
        self->writing_ = false;
        self->fail(gen, "write: " + ec.message());
        co_return;
      }
    }
    if (self->gen_ == gen) self->writing_ = false;
  }

  // Closes the socket and answers every waiter with nullopt.
  void drop_connection() {
    ++gen_;
    boost::system::error_code ec;
    resolver_.cancel();
    deadline_.cancel();
    socket_.close(ec);
    out_.clear();
    writing_ = false;
    if (reader_) redisReaderFree(reader_);
    reader_ = redisReaderCreate();
    auto waiters = std::move(fifo_);
    fifo_.clear();
    for (auto& w : waiters) w->done.set();  // reply stays nullopt
  }

  void fail(uint64_t gen, const std::string& why) {
    if (gen != gen_ || (state_ != State::connecting && state_ != State::connected)) return;
    // Warned once per outage: when a working connection fails, or the first attempt after it does. A server
    // that accepts connections and refuses every command (NOAUTH, a protocol error) fails each attempt with no
    // good reply in between: the repeats are debug lines, not two lines every 5 s for as long as it lasts.
    bool was_connected = state_ == State::connected && failures_ == 0;
    drop_connection();
    ++failures_;
    auto delay = reconnect_backoff(failures_);
    retry_at_ = Clock::now() + delay;
    state_ = State::backoff;
    boost::json::object f{{"host", url_.host}, {"port", url_.port}, {"error", why}, {"retry_in_ms", delay.count()}};
    if (was_connected || failures_ == 1) log::warn("redis connection failed", f);
    else log::debug("redis connection failed", f);
  }

  net::any_io_executor ex_;
  ParsedUrl url_;
  tcp::socket socket_;
  tcp::resolver resolver_;
  net::steady_timer deadline_;  // connect + handshake
  redisReader* reader_;
  State state_ = State::idle;
  uint64_t gen_ = 0;  // bumped on every connection attempt and drop: stale coroutines stop
  int failures_ = 0;
  Clock::time_point retry_at_{};
  std::deque<std::shared_ptr<Waiter>> fifo_;  // one per command sent (or queued), in order
  std::string out_;                           // encoded commands not yet written
  bool writing_ = false;
};

// GCRA exactly as policy::gcra, on Redis's clock. KEYS[1] = TAT key; ARGV = burst (>= 1), interval in µs (>= 1),
// cost (1 to burst + 1). Returns {allowed, remaining, reset_s, retry_after_s}. Times are microseconds (< 2^53,
// exact in Lua numbers).
constexpr const char* kGcraScript = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local burst = tonumber(ARGV[1])
local t = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
local tolerance = (burst - 1) * t
local stored = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local tat = math.max(stored, now)
local allow_at = tat + (n - 1) * t - tolerance
if now < allow_at then
  local retry_at = allow_at
  if n > burst then retry_at = tat end
  return {0, 0, math.floor((tat - now + 999999) / 1000000), math.floor((retry_at - now + 999999) / 1000000)}
end
local new_tat = tat + n * t
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
local slack = now + tolerance - new_tat
local remaining = 0
if slack >= 0 then remaining = math.min(math.floor(slack / t) + 1, burst - 1) end
return {1, remaining, math.floor((new_tat - now + 999999) / 1000000), 0}
)lua";

}  // namespace

void RedisClient::check_url(const std::string& url) { parse_url(url); }

std::shared_ptr<RedisClient> RedisClient::create(net::any_io_executor ex, const std::string& url) {
  return std::make_shared<Client>(std::move(ex), parse_url(url));
}

SharedLimiter::SharedLimiter(std::shared_ptr<RedisClient> redis, policy::LocalLimiter& local,
                             std::chrono::milliseconds timeout)
    : redis_(std::move(redis)), local_(local), timeout_(timeout) {}

net::awaitable<std::optional<policy::RateDecision>> SharedLimiter::in_redis(std::string key, policy::RateLimit limit,
                                                                            std::string& why) {
  const int64_t burst = std::max<int64_t>(limit.burst, 1);
  const int64_t interval = std::max<int64_t>(limit.interval_us(), 1);
  const int64_t cost = std::clamp<int64_t>(limit.cost, 1, burst + 1);
  const auto deadline = Clock::now() + timeout_;
  auto left = [&] {
    auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return std::max(d, std::chrono::milliseconds(0));
  };
  std::optional<RedisReply> reply;
  for (int attempt = 0; attempt < 2 && redis_; ++attempt) {
    if (script_sha_.empty()) {
      std::vector<std::string> load{"SCRIPT", "LOAD", kGcraScript};
      auto budget = left();
      auto loaded = co_await redis_->command(std::move(load), budget);
      if (!loaded) {
        why = "unreachable";
        break;
      }
      if (loaded->type != RedisReply::Type::string) {
        why = loaded->type == RedisReply::Type::error ? loaded->str : std::string("SCRIPT LOAD: unexpected reply");
        break;
      }
      script_sha_ = loaded->str;
    }
    std::vector<std::string> eval{"EVALSHA", script_sha_, "1", "gatehouse:rl:" + key, std::to_string(burst),
                                  std::to_string(interval), std::to_string(cost)};
    auto budget = left();
    if (budget.count() <= 0) {
      why = "timeout";
      break;
    }
    reply = co_await redis_->command(std::move(eval), budget);
    if (reply && reply->type == RedisReply::Type::error && reply->str.starts_with("NOSCRIPT")) {
      script_sha_.clear();  // flushed or a failed-over Redis: load it again
      reply.reset();
      why = "NOSCRIPT";
      continue;
    }
    if (!reply) why = "unreachable";
    break;
  }
  bool valid = reply && reply->type == RedisReply::Type::array && reply->elements.size() == 4 &&
               std::all_of(reply->elements.begin(), reply->elements.end(),
                           [](const RedisReply& e) { return e.type == RedisReply::Type::integer; });
  if (!valid) {
    if (reply && why.empty())
      why = reply->type == RedisReply::Type::error ? reply->str : std::string("unexpected reply to EVALSHA");
    co_return std::nullopt;
  }
  policy::RateDecision d;
  d.limit = burst;
  d.allowed = reply->elements[0].integer != 0;
  d.remaining = reply->elements[1].integer;
  d.reset_s = reply->elements[2].integer;
  d.retry_after_s = reply->elements[3].integer;
  co_return d;
}

void SharedLimiter::mark(bool up, const std::string& why) {
  stats_.redis_up = up;
  if (up && outage_logged_) {
    outage_logged_ = false;
    log::info("rate limiter: Redis reachable again, limiting across instances");
  } else if (!up && !outage_logged_) {
    outage_logged_ = true;
    log::warn("rate limiter: Redis unreachable, limiting per instance", {{"reason", why}});
  }
}

net::awaitable<policy::RateDecision> SharedLimiter::check(std::string key, policy::RateLimit limit, int64_t now_us) {
  std::string why;
  auto d = co_await in_redis(key, limit, why);
  mark(d.has_value(), why);
  if (d) {
    ++stats_.redis_decisions;
    co_return *d;
  }
  ++stats_.fallbacks;
  ++stats_.local_decisions;
  co_return local_.check(key, limit, now_us);
}

net::awaitable<void> SharedLimiter::probe() {
  // The script itself on a key of its own, not a PING: a Redis out of memory answers PING and refuses the
  // script's write, and was reported up between requests.
  std::string why;
  policy::RateLimit probe{60'000'000, 1};
  auto d = co_await in_redis("probe", probe, why);
  mark(d.has_value(), why);
}

}  // namespace gh::store
