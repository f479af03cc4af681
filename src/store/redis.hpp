// A small Redis client on Asio (RESP over one TCP connection, pipelined; hiredis only formats commands and
// parses replies), and the shared rate limiter that runs GCRA atomically in Redis with the local limiter as
// fallback while Redis is unreachable.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policy/ratelimit.hpp"

namespace gh::store {

// A reply, flattened to what the gateway uses.
struct RedisReply {
  enum class Type { nil, integer, string, status, error, array } type = Type::nil;
  int64_t integer = 0;
  std::string str;  // string, status or error text
  std::vector<RedisReply> elements;
};

class RedisClient : public std::enable_shared_from_this<RedisClient> {
 public:
  // url: redis://[:password@]host[:port][/db]. Connects lazily and reconnects with backoff after failures.
  static std::shared_ptr<RedisClient> create(boost::asio::any_io_executor ex, const std::string& url);
  // Throws std::invalid_argument saying what is wrong with `url` (as create() would).
  static void check_url(const std::string& url);
  virtual ~RedisClient() = default;
  // Sends one command; nullopt if not connected, the connection failed, or `timeout` passed (never throws).
  virtual boost::asio::awaitable<std::optional<RedisReply>> command(std::vector<std::string> args,
                                                                   std::chrono::milliseconds timeout) = 0;
  virtual bool connected() const = 0;
  virtual void close() = 0;
};

struct SharedLimiterStats {
  uint64_t redis_decisions = 0, local_decisions = 0, fallbacks = 0;  // fallbacks: decisions made locally because Redis failed
  bool redis_up = false;
};

// GCRA in Redis (one Lua script, Redis's own clock, so every instance agrees), falling back to `local`
// when Redis does not answer within `timeout` (logged once per outage, counted).
class SharedLimiter {
 public:
  SharedLimiter(std::shared_ptr<RedisClient> redis, policy::LocalLimiter& local,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(50));
  boost::asio::awaitable<policy::RateDecision> check(std::string key, policy::RateLimit limit, int64_t now_us);
  // The script on a key of its own (the housekeeping tick): redis_up follows Redis also while no request is limited.
  boost::asio::awaitable<void> probe();
  const SharedLimiterStats& stats() const { return stats_; }

 private:
  // The decision in Redis; nullopt (and why) when Redis did not make it.
  boost::asio::awaitable<std::optional<policy::RateDecision>> in_redis(std::string key, policy::RateLimit limit,
                                                                       std::string& why);
  void mark(bool up, const std::string& why);  // redis_up, and one log line per outage and recovery
  std::shared_ptr<RedisClient> redis_;
  policy::LocalLimiter& local_;
  std::chrono::milliseconds timeout_;
  std::string script_sha_;
  SharedLimiterStats stats_;
  bool outage_logged_ = false;
};

}  // namespace gh::store
