// Per-API-key rate limits for the gateway: requests per minute and tokens per minute, as
// token buckets refilled continuously (a full minute's allowance as the burst). Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace strata::gateway {

struct KeyLimits {
  int64_t requests_per_minute = 0;  // 0: unlimited
  int64_t tokens_per_minute = 0;    // 0: unlimited (prompt + completion tokens)
};

struct RateDecision {
  bool allowed = true;
  double retry_after_s = 0;  // when refused: seconds until the request would be allowed
  std::string reason;        // when refused: "requests per minute" / "tokens per minute"
};

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // Admits one request for `key` if both buckets allow it: takes one request and reserves
  // `estimated_tokens` (e.g. prompt tokens + max_tokens, or 0 when unknown).
  // When refused nothing is taken. An estimate above tokens_per_minute waits for a full bucket
  // and then goes into debt (later requests wait it out) rather than being refused forever.
  RateDecision Acquire(const std::string& key, const KeyLimits& limits, int64_t estimated_tokens,
                       Clock::time_point now = Clock::now());
  // After the request: corrects the reservation to the tokens really used (may refund).
  void Settle(const std::string& key, const KeyLimits& limits, int64_t estimated_tokens,
              int64_t used_tokens, Clock::time_point now = Clock::now());

 private:
  struct Bucket {
    double requests = 0, tokens = 0;  // available
    Clock::time_point last{};
    bool init = false;
  };
  void Refill(Bucket& b, const KeyLimits& limits, Clock::time_point now);
  void Prune(Clock::time_point now);  // drops long-idle buckets (mu_ held)

  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
  uint64_t acquires_ = 0;
};

}  // namespace strata::gateway
