#include "gateway/redis_conn.h"

#include "base/log.h"

#include <pthread.h>
#include <sys/time.h>

#include <openssl/rand.h>

#include <algorithm>
#include <cstdio>

namespace strata::gateway {

SigpipeGuard::SigpipeGuard() {
  sigemptyset(&pipe_);
  sigaddset(&pipe_, SIGPIPE);
  sigset_t pending;
  sigemptyset(&pending);
  sigpending(&pending);
  was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
}

SigpipeGuard::~SigpipeGuard() {
  if (!was_pending_) {
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) == 1) {
      timespec zero{0, 0};
      sigtimedwait(&pipe_, nullptr, &zero);
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

redisContext* RedisConnect(const std::string& host, int port, int timeout_ms,
                           const std::string& user, const std::string& password, int db) {
  SigpipeGuard guard;
  const int ms = std::max(1, timeout_ms);
  const timeval tv{ms / 1000, (ms % 1000) * 1000};
  redisContext* c = redisConnectWithTimeout(host.c_str(), port, tv);
  if (!c) return nullptr;
  if (c->err || redisSetTimeout(c, tv) != REDIS_OK) {
    redisFree(c);
    return nullptr;
  }
  auto ok = [&](void* r) {
    Reply rr(static_cast<redisReply*>(r));
    return rr && c->err == 0 && rr->type == REDIS_REPLY_STATUS;
  };
  if (!password.empty()) {
    void* r = user.empty() ? redisCommand(c, "AUTH %s", password.c_str())
                           : redisCommand(c, "AUTH %s %s", user.c_str(), password.c_str());
    if (!ok(r)) {
      redisFree(c);
      return nullptr;
    }
  }
  if (db != 0 && !ok(redisCommand(c, "SELECT %d", db))) {
    redisFree(c);
    return nullptr;
  }
  return c;
}

std::string CacheHmacKeyOrRandom(const std::string& configured) {
  if (!configured.empty()) return configured;
  unsigned char k[32];
  RAND_bytes(k, sizeof k);
  LogEvent(LogLevel::kWarn,
           "strata gateway: cache.hmac_key_file / STRATA_CACHE_HMAC_KEY "
           "not set: Redis entries are sealed with a per-process key (other "
           "gateways cannot share them)",
           "");
  return std::string(reinterpret_cast<const char*>(k), sizeof k);
}

std::optional<CachedResponse> RedisCacheCounters::OnGet(const Reply& r, const std::string& hmac_key,
                                                        std::string_view redis_key) {
  if (r && r->type == REDIS_REPLY_STRING) {
    auto v = OpenCachedResponse(hmac_key, redis_key, std::string_view(r->str, r->len));
    if (v) {
      hits++;
      return v;
    }
    errors++;  // a value we did not write (or a different format version)
  } else if (r && r->type != REDIS_REPLY_NIL) {
    errors++;
  }
  misses++;
  return std::nullopt;
}

void RedisCacheCounters::OnSet(const Reply& r) {
  if (!r) return;
  if (r->type == REDIS_REPLY_ERROR) {
    errors++;
  } else {
    puts++;
  }
}

CacheStats RedisCacheCounters::Stats() const {
  CacheStats s;
  s.hits = hits;
  s.misses = misses;
  s.puts = puts;
  s.errors = errors;
  return s;
}

std::optional<CachedResponse> OpenCachedResponse(const std::string& hmac_key,
                                                 std::string_view redis_key,
                                                 std::string_view sealed) {
  const auto opened = OpenCacheValue(hmac_key, redis_key, sealed);
  auto v = opened ? DecodeCachedResponse(*opened) : std::nullopt;
  if (v && v->status >= 200 && v->status < 300 && CacheableContentType(v->content_type)) return v;
  return std::nullopt;
}

}  // namespace strata::gateway
