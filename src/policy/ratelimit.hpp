// Rate limiting with GCRA (the generic cell rate algorithm, equivalent to a token bucket): a limit of N per
// minute lets a caller send up to `burst` requests at once, then one every 60/N seconds. Pure and clock-
// injected; the shared limiter in store/redis.hpp (SharedLimiter) applies the same arithmetic atomically in
// Redis, and falls back to this one while Redis is unreachable.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gh::policy {

struct RateLimit {
  int64_t per_minute = 100;
  int64_t burst = 100;  // requests allowed at once (>= 1)
  int64_t cost = 1;     // requests this check charges (a JSON-RPC batch's count); more than `burst` never fits
  // Emission interval in microseconds.
  int64_t interval_us() const { return per_minute > 0 ? 60'000'000 / per_minute : 0; }
};

struct RateDecision {
  bool allowed = true;
  int64_t limit = 0;          // RateLimit-Limit: the burst
  int64_t remaining = 0;      // RateLimit-Remaining: requests that could be sent now
  int64_t reset_s = 0;        // RateLimit-Reset: seconds until the bucket is full again
  int64_t retry_after_s = 0;  // Retry-After (when refused): seconds until the next request is allowed
};

// The GCRA step: given the stored theoretical arrival time `tat_us` (0 = unknown key) and `now_us`, decides
// and returns the new TAT to store (unchanged when refused).
RateDecision gcra(const RateLimit& limit, int64_t now_us, int64_t& tat_us);

// An in-process limiter: one TAT per key. Bounded: keys idle past their full refill are forgotten by
// sweep(); past `max_keys` new keys evict by sweep first, then are refused tracking (allowed, counted).
class LocalLimiter {
 public:
  // Its clock (microseconds): steady, so that a wall clock stepped back (NTP, an operator) does not leave every
  // recent caller refused until it catches up. (Redis decides by its own clock.)
  static int64_t clock_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  explicit LocalLimiter(std::size_t max_keys = 1'000'000) : max_keys_(max_keys) {}
  RateDecision check(std::string_view key, const RateLimit& limit, int64_t now_us);
  void sweep(int64_t now_us);
  std::size_t keys() const { return tat_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct Entry {
    int64_t tat_us = 0;
    int64_t full_at_us = 0;  // when it no longer matters (TAT passed)
  };
  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> tat_;
  std::size_t max_keys_;
};

}  // namespace gh::policy
