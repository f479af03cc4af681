#include <gtest/gtest.h>

#include "policy/ratelimit.hpp"

using namespace gh;
using policy::RateLimit;

namespace {
constexpr int64_t kSec = 1'000'000;
constexpr int64_t kT0 = 1'700'000'000LL * kSec;  // an injected "now"
}  // namespace

TEST(RateLimitGcra, BurstThenRefused) {
  RateLimit lim{60, 5};  // one per second, five at once
  int64_t tat = 0;
  for (int i = 0; i < 5; ++i) {
    auto d = policy::gcra(lim, kT0, tat);
    EXPECT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.limit, 5);
    EXPECT_EQ(d.remaining, 4 - i) << i;
    EXPECT_EQ(d.reset_s, i + 1) << i;  // full again after (i+1) intervals
    EXPECT_EQ(d.retry_after_s, 0);
  }
  EXPECT_EQ(tat, kT0 + 5 * kSec);
  auto d = policy::gcra(lim, kT0, tat);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.retry_after_s, 1);
  EXPECT_EQ(d.reset_s, 5);
  EXPECT_EQ(tat, kT0 + 5 * kSec);  // a refusal does not move the TAT
}

TEST(RateLimitGcra, CostChargesSeveralAtOnce) {
  RateLimit lim{60, 5};
  int64_t tat = 0;
  lim.cost = 3;
  auto d = policy::gcra(lim, kT0, tat);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 2);
  EXPECT_EQ(tat, kT0 + 3 * kSec);
  d = policy::gcra(lim, kT0, tat);  // 3 more with 2 left: refused, nothing charged, one more second needed
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_s, 1);
  EXPECT_EQ(tat, kT0 + 3 * kSec);
  EXPECT_TRUE(policy::gcra(lim, kT0 + kSec, tat).allowed);
  lim.cost = 6;  // more than the burst: never, and the retry names when the allowance is whole again
  int64_t fresh = 0;
  d = policy::gcra(lim, kT0, fresh);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(fresh, 0);
  lim.cost = 5;
  EXPECT_TRUE(policy::gcra(lim, kT0, fresh).allowed);
  lim.cost = 6;
  d = policy::gcra(lim, kT0, fresh);
  EXPECT_EQ(d.retry_after_s, 5);
}

TEST(RateLimitGcra, SteadyRateAfterBurst) {
  RateLimit lim{60, 5};
  int64_t tat = 0;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(policy::gcra(lim, kT0, tat).allowed);
  // Half an interval later: still refused, next one in 0.5 s (rounded up to 1).
  auto d = policy::gcra(lim, kT0 + kSec / 2, tat);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_s, 1);
  // Then exactly one per second.
  for (int s = 1; s <= 10; ++s) {
    int64_t now = kT0 + s * kSec;
    auto ok = policy::gcra(lim, now, tat);
    EXPECT_TRUE(ok.allowed) << s;
    EXPECT_EQ(ok.remaining, 0) << s;
    EXPECT_EQ(ok.reset_s, 5) << s;
    auto no = policy::gcra(lim, now + 1, tat);
    EXPECT_FALSE(no.allowed) << s;
    EXPECT_EQ(no.retry_after_s, 1) << s;
  }
}

TEST(RateLimitGcra, RefillsAfterTimePasses) {
  RateLimit lim{60, 5};
  int64_t tat = 0;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(policy::gcra(lim, kT0, tat).allowed);
  // 2.5 s later two requests fit (two and a half intervals freed, whole ones count).
  int64_t now = kT0 + 5 * kSec / 2;
  auto d = policy::gcra(lim, now, tat);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 1);
  d = policy::gcra(lim, now, tat);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_FALSE(policy::gcra(lim, now, tat).allowed);
  // Long idle: the whole burst again, as for a new key.
  now += 3600 * kSec;
  d = policy::gcra(lim, now, tat);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 4);
  EXPECT_EQ(d.reset_s, 1);
}

TEST(RateLimitGcra, EdgeLimits) {
  int64_t tat = 0;
  RateLimit one{60, 1};
  auto d = policy::gcra(one, kT0, tat);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0);
  d = policy::gcra(one, kT0, tat);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_s, 1);
  // burst 0 is treated as 1
  tat = 0;
  RateLimit zero{60, 0};
  EXPECT_TRUE(policy::gcra(zero, kT0, tat).allowed);
  EXPECT_FALSE(policy::gcra(zero, kT0, tat).allowed);
  // 6 per minute: one every 10 s
  tat = 0;
  RateLimit slow{6, 2};
  EXPECT_TRUE(policy::gcra(slow, kT0, tat).allowed);
  EXPECT_TRUE(policy::gcra(slow, kT0, tat).allowed);
  d = policy::gcra(slow, kT0, tat);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_s, 10);
  EXPECT_EQ(d.reset_s, 20);
}

TEST(RateLimitLocal, KeysAreIndependent) {
  policy::LocalLimiter lim;
  RateLimit l{60, 2};
  EXPECT_TRUE(lim.check("a", l, kT0).allowed);
  EXPECT_TRUE(lim.check("a", l, kT0).allowed);
  EXPECT_FALSE(lim.check("a", l, kT0).allowed);
  EXPECT_TRUE(lim.check("b", l, kT0).allowed);
  EXPECT_EQ(lim.keys(), 2u);
}

TEST(RateLimitLocal, SweepForgetsIdleKeys) {
  policy::LocalLimiter lim;
  RateLimit l{60, 5};
  lim.check("a", l, kT0);                  // TAT kT0 + 1 s
  for (int i = 0; i < 3; ++i) lim.check("b", l, kT0);  // TAT kT0 + 3 s
  lim.sweep(kT0 + kSec - 1);
  EXPECT_EQ(lim.keys(), 2u);
  lim.sweep(kT0 + kSec);
  EXPECT_EQ(lim.keys(), 1u);  // a is full again: forgotten
  lim.sweep(kT0 + 3 * kSec);
  EXPECT_EQ(lim.keys(), 0u);
  // Forgetting a full key changes nothing: the whole burst is there.
  auto d = lim.check("b", l, kT0 + 3 * kSec);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 4);
}

TEST(RateLimitLocal, BoundedKeys) {
  policy::LocalLimiter lim(2);
  RateLimit l{60, 1};
  EXPECT_TRUE(lim.check("a", l, kT0).allowed);
  EXPECT_TRUE(lim.check("b", l, kT0).allowed);
  EXPECT_TRUE(lim.check("c", l, kT0).allowed);  // not tracked: fails open
  EXPECT_EQ(lim.keys(), 2u);
  EXPECT_FALSE(lim.check("a", l, kT0).allowed);
  // Once a and b are idle, a new key evicts them by sweeping.
  EXPECT_TRUE(lim.check("c", l, kT0 + 2 * kSec).allowed);
  EXPECT_EQ(lim.keys(), 1u);
}
