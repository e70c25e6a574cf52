// Tests of the per-key token-bucket rate limiter with an injected clock.
#include "gateway/ratelimit.h"

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace strata::gateway {
namespace {

using Clock = RateLimiter::Clock;
using namespace std::chrono_literals;

const Clock::time_point kT0 = Clock::time_point{} + 1000h;

TEST(RateLimiter, RequestBurstThenRefill) {
  RateLimiter rl;
  KeyLimits l{.requests_per_minute = 5};
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(rl.Acquire("k", l, 0, kT0).allowed) << i;
  RateDecision d = rl.Acquire("k", l, 0, kT0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, "requests per minute");
  EXPECT_NEAR(d.retry_after_s, 12.0, 1e-9);  // one request per 12 s
  // Half way: still refused, with half the wait.
  d = rl.Acquire("k", l, 0, kT0 + 6s);
  EXPECT_FALSE(d.allowed);
  EXPECT_NEAR(d.retry_after_s, 6.0, 1e-9);
  EXPECT_TRUE(rl.Acquire("k", l, 0, kT0 + 12s).allowed);
  EXPECT_FALSE(rl.Acquire("k", l, 0, kT0 + 12s).allowed);
  // A long idle period refills only up to the burst (a minute's allowance).
  int ok = 0;
  for (int i = 0; i < 20; ++i) ok += rl.Acquire("k", l, 0, kT0 + 1h).allowed;
  EXPECT_EQ(ok, 5);
}

TEST(RateLimiter, RefusalTakesNothing) {
  RateLimiter rl;
  KeyLimits l{.requests_per_minute = 60};
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(rl.Acquire("k", l, 0, kT0).allowed);
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(rl.Acquire("k", l, 0, kT0).allowed);
  // Refused attempts did not dig a hole: one second later one request is due.
  RateDecision d = rl.Acquire("k", l, 0, kT0 + 1s);
  EXPECT_TRUE(d.allowed);
}

TEST(RateLimiter, KeysAreIndependentAndZeroIsUnlimited) {
  RateLimiter rl;
  KeyLimits l{.requests_per_minute = 1};
  EXPECT_TRUE(rl.Acquire("a", l, 0, kT0).allowed);
  EXPECT_FALSE(rl.Acquire("a", l, 0, kT0).allowed);
  EXPECT_TRUE(rl.Acquire("b", l, 0, kT0).allowed);
  KeyLimits none;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(rl.Acquire("c", none, 1000000, kT0).allowed);
}

TEST(RateLimiter, TokensReserveSettleAndRefund) {
  RateLimiter rl;
  KeyLimits l{.tokens_per_minute = 1000};
  EXPECT_TRUE(rl.Acquire("k", l, 600, kT0).allowed);  // 400 left
  RateDecision d = rl.Acquire("k", l, 600, kT0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, "tokens per minute");
  EXPECT_NEAR(d.retry_after_s, 200.0 * 60 / 1000, 1e-9);  // 200 missing at 1000/min
  // The first request used only 100 of its 600: 500 come back (900 available).
  rl.Settle("k", l, 600, 100, kT0);
  EXPECT_TRUE(rl.Acquire("k", l, 600, kT0).allowed);  // 300 left
  EXPECT_TRUE(rl.Acquire("k", l, 300, kT0).allowed);  // 0 left
  EXPECT_FALSE(rl.Acquire("k", l, 1, kT0).allowed);
  // Refunds never exceed the bucket.
  rl.Settle("k", l, 5000, 0, kT0);
  EXPECT_TRUE(rl.Acquire("k", l, 1000, kT0).allowed);
  EXPECT_FALSE(rl.Acquire("k", l, 1, kT0).allowed);
}

TEST(RateLimiter, UsingMoreThanReservedIsDebt) {
  RateLimiter rl;
  KeyLimits l{.tokens_per_minute = 600};              // 10 tokens/s
  ASSERT_TRUE(rl.Acquire("k", l, 100, kT0).allowed);  // 500 left
  rl.Settle("k", l, 100, 900, kT0);                   // used 800 more: -300
  RateDecision d = rl.Acquire("k", l, 50, kT0);
  EXPECT_FALSE(d.allowed);
  EXPECT_NEAR(d.retry_after_s, 35.0, 1e-9);  // (50 + 300) / 10
  EXPECT_FALSE(rl.Acquire("k", l, 50, kT0 + 34s).allowed);
  EXPECT_TRUE(rl.Acquire("k", l, 50, kT0 + 35s).allowed);
}

TEST(RateLimiter, EstimateAboveTheMinuteWaitsForAFullBucket) {
  RateLimiter rl;
  KeyLimits l{.tokens_per_minute = 1000};
  ASSERT_TRUE(rl.Acquire("k", l, 10, kT0).allowed);
  RateDecision d = rl.Acquire("k", l, 5000, kT0);
  EXPECT_FALSE(d.allowed);                                  // not full
  EXPECT_NEAR(d.retry_after_s, 0.6, 1e-9);                  // 10 tokens at 1000/min
  EXPECT_TRUE(rl.Acquire("k", l, 5000, kT0 + 1s).allowed);  // full: admitted, into debt
  d = rl.Acquire("k", l, 1, kT0 + 1s);
  EXPECT_FALSE(d.allowed);
  EXPECT_NEAR(d.retry_after_s, 4001.0 * 60 / 1000, 1e-6);
}

TEST(RateLimiter, BothLimitsReportTheLongerWait) {
  RateLimiter rl;
  KeyLimits l{.requests_per_minute = 2, .tokens_per_minute = 100};
  ASSERT_TRUE(rl.Acquire("k", l, 10, kT0).allowed);
  ASSERT_TRUE(rl.Acquire("k", l, 10, kT0).allowed);
  RateDecision d = rl.Acquire("k", l, 10, kT0);  // requests empty (30 s), tokens fine
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, "requests per minute");
  EXPECT_NEAR(d.retry_after_s, 30.0, 1e-9);
  d = rl.Acquire("k", l, 100, kT0 + 30s);  // a request is due; tokens: min(80+50, 100)
  EXPECT_TRUE(d.allowed);
  d = rl.Acquire("k", l, 90, kT0 + 60s);  // requests: 1 (due); tokens: 0+50 < 90
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reason, "tokens per minute");
  EXPECT_NEAR(d.retry_after_s, 40.0 * 60 / 100, 1e-9);
}

TEST(RateLimiter, ConcurrentAcquiresNeverOverAdmit) {
  RateLimiter rl;
  KeyLimits l{.requests_per_minute = 1000, .tokens_per_minute = 0};
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) admitted += rl.Acquire("shared", l, 0, kT0).allowed;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), 1000);
}

TEST(RateLimiter, ManyIdleKeysArePrunedWithoutChangingDecisions) {
  RateLimiter rl;
  KeyLimits l{.requests_per_minute = 1};
  for (int i = 0; i < 10000; ++i) rl.Acquire("key" + std::to_string(i), l, 0, kT0);
  // Much later every key is full again (whether its bucket was pruned or not).
  for (int i = 0; i < 10000; i += 97) {
    const std::string k = "key" + std::to_string(i);
    EXPECT_TRUE(rl.Acquire(k, l, 0, kT0 + 2h).allowed);
    EXPECT_FALSE(rl.Acquire(k, l, 0, kT0 + 2h).allowed);
  }
}

}  // namespace
}  // namespace strata::gateway
