#include "policy/ratelimit.hpp"

#include <algorithm>

namespace gh::policy {

RateDecision gcra(const RateLimit& limit, int64_t now_us, int64_t& tat_us) {
  RateDecision d;
  d.limit = std::max<int64_t>(limit.burst, 1);
  const int64_t t = std::max<int64_t>(limit.interval_us(), 1);
  const int64_t n = std::clamp<int64_t>(limit.cost, 1, d.limit + 1);  // (past the burst it never fits anyway)
  const int64_t tolerance = (d.limit - 1) * t;  // how far ahead of now the TAT may run
  int64_t tat = std::max(tat_us, now_us);
  int64_t allow_at = tat + (n - 1) * t - tolerance;
  if (now_us < allow_at) {
    d.allowed = false;
    d.remaining = 0;
    // (a cost over the burst: when the allowance is whole again, to be told the same)
    d.retry_after_s = ((n > d.limit ? tat : allow_at) - now_us + 999'999) / 1'000'000;
    d.reset_s = (tat - now_us + 999'999) / 1'000'000;
    return d;
  }
  tat_us = tat + n * t;
  d.allowed = true;
  // Requests that still fit now: how much of the tolerance is unused, in intervals.
  int64_t slack = now_us + tolerance - tat_us;
  d.remaining = slack < 0 ? 0 : std::min(slack / t + 1, d.limit - 1);
  d.reset_s = (tat_us - now_us + 999'999) / 1'000'000;
  return d;
}

RateDecision LocalLimiter::check(std::string_view key, const RateLimit& limit, int64_t now_us) {
  auto it = tat_.find(key);
  if (it == tat_.end()) {
    if (tat_.size() >= max_keys_) sweep(now_us);
    if (tat_.size() >= max_keys_) {  // still full: decide without remembering (fails open, counted by the caller)
      int64_t tat = 0;
      return gcra(limit, now_us, tat);
    }
    it = tat_.emplace(std::string(key), Entry{}).first;
  }
  auto d = gcra(limit, now_us, it->second.tat_us);
  it->second.full_at_us = it->second.tat_us;
  return d;
}

void LocalLimiter::sweep(int64_t now_us) {
  std::erase_if(tat_, [&](auto& kv) { return kv.second.full_at_us <= now_us; });
}

}  // namespace gh::policy
