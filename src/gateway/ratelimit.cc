// Token buckets per API key: capacity = the per-minute limit, refilled at limit / 60 per second.
#include "gateway/ratelimit.h"

#include <algorithm>

namespace strata::gateway {

namespace {
constexpr int kPruneEvery = 4096;   // Acquire calls between sweeps of idle buckets
constexpr double kIdlePruneS = 60;  // an idle bucket with no debt is full again after a minute
}  // namespace

void RateLimiter::Refill(Bucket& b, const KeyLimits& limits, Clock::time_point now) {
  const double rpm = static_cast<double>(limits.requests_per_minute);
  const double tpm = static_cast<double>(limits.tokens_per_minute);
  if (!b.init) {
    b.requests = rpm;
    b.tokens = tpm;
    b.last = now;
    b.init = true;
    return;
  }
  const double dt = std::chrono::duration<double>(now - b.last).count();
  if (dt > 0) {
    b.last = now;
    b.requests += dt * rpm / 60.0;
    b.tokens += dt * tpm / 60.0;
  }
  // Limits may have been lowered (a config reload): never hold more than a minute's worth.
  b.requests = std::min(b.requests, rpm);
  b.tokens = std::min(b.tokens, tpm);
}

RateDecision RateLimiter::Acquire(const std::string& key, const KeyLimits& limits,
                                  int64_t estimated_tokens, Clock::time_point now) {
  RateDecision d;
  const bool limit_requests = limits.requests_per_minute > 0;
  const bool limit_tokens = limits.tokens_per_minute > 0;
  if (!limit_requests && !limit_tokens) return d;
  const double est = static_cast<double>(std::max<int64_t>(0, estimated_tokens));

  std::lock_guard<std::mutex> lock(mu_);
  if (++acquires_ % kPruneEvery == 0) Prune(now);
  Bucket& b = buckets_[key];
  Refill(b, limits, now);

  double wait_requests = 0, wait_tokens = 0;
  if (limit_requests && b.requests < 1.0)
    wait_requests = (1.0 - b.requests) * 60.0 / static_cast<double>(limits.requests_per_minute);
  if (limit_tokens) {
    // A request estimated above a whole minute's allowance waits for a full bucket (and then
    // runs into debt) instead of being refused forever.
    const double need = std::min(est, static_cast<double>(limits.tokens_per_minute));
    if (b.tokens < need)
      wait_tokens = (need - b.tokens) * 60.0 / static_cast<double>(limits.tokens_per_minute);
  }
  if (wait_requests > 0 || wait_tokens > 0) {
    d.allowed = false;
    d.retry_after_s = std::max(wait_requests, wait_tokens);
    d.reason = wait_requests >= wait_tokens ? "requests per minute" : "tokens per minute";
    return d;
  }
  if (limit_requests) b.requests -= 1.0;
  if (limit_tokens) b.tokens -= est;
  return d;
}

void RateLimiter::Settle(const std::string& key, const KeyLimits& limits, int64_t estimated_tokens,
                         int64_t used_tokens, Clock::time_point now) {
  if (limits.tokens_per_minute <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  Bucket& b = buckets_[key];
  Refill(b, limits, now);
  const double delta = static_cast<double>(std::max<int64_t>(0, estimated_tokens)) -
                       static_cast<double>(std::max<int64_t>(0, used_tokens));
  // delta > 0: refund what was reserved but not used; delta < 0: the request used more than
  // reserved, which becomes debt that later requests wait out.
  b.tokens = std::min(b.tokens + delta, static_cast<double>(limits.tokens_per_minute));
}

void RateLimiter::Prune(Clock::time_point now) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    const Bucket& b = it->second;
    const double idle = std::chrono::duration<double>(now - b.last).count();
    if (idle >= kIdlePruneS && b.requests >= 0 && b.tokens >= 0)
      it = buckets_.erase(it);  // would be full again: same as a fresh bucket
    else ++it;
  }
}

}  // namespace strata::gateway
