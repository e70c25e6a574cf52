// The response cache: an O(1) in-memory LRU with TTL, or Redis through hiredis with a small
// connection pool that degrades to "no cache" while Redis is unreachable.
#include "gateway/cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <hiredis/hiredis.h>

#include "base/log.h"
#include "gateway/redis_cluster.h"
#include "gateway/redis_conn.h"

namespace strata::gateway {
namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// In-memory LRU.

class MemoryCache final : public ResponseCache {
 public:
  MemoryCache(const CacheOptions& o, std::function<CacheClock::time_point()> now)
      : opts_(o), now_(std::move(now)) {}

  std::optional<CachedResponse> Get(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++stats_.misses;
      return std::nullopt;
    }
    if (opts_.ttl_s > 0 && now_() >= it->second->expires) {
      Erase(it->second);
      ++stats_.misses;
      return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, it->second);  // most recently used first
    ++stats_.hits;
    return it->second->response;
  }

  void Put(const std::string& key, const CachedResponse& response) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it != index_.end()) Erase(it->second);
    const size_t size = response.body.size();
    if (opts_.max_entries == 0 || size > opts_.max_bytes) return;  // can never fit
    while (!lru_.empty() &&
           (lru_.size() + 1 > opts_.max_entries || stats_.bytes + size > opts_.max_bytes)) {
      Erase(std::prev(lru_.end()));
      ++stats_.evictions;
    }
    CacheClock::time_point expires{};
    if (opts_.ttl_s > 0) expires = now_() + std::chrono::seconds(opts_.ttl_s);
    lru_.push_front(Entry{key, response, expires});
    index_.emplace(key, lru_.begin());
    stats_.bytes += size;
    stats_.entries = lru_.size();
    ++stats_.puts;
  }

  CacheStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  std::string backend() const override { return "memory"; }

 private:
  struct Entry {
    std::string key;
    CachedResponse response;
    CacheClock::time_point expires;
  };
  using Iter = std::list<Entry>::iterator;

  void Erase(Iter e) {
    stats_.bytes -= e->response.body.size();
    index_.erase(e->key);
    lru_.erase(e);
    stats_.entries = lru_.size();
  }

  const CacheOptions opts_;
  const std::function<CacheClock::time_point()> now_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_map<std::string, Iter> index_;
  CacheStats stats_;
};

// ---------------------------------------------------------------------------------------------
// Redis.

class RedisCache final : public ResponseCache {
 public:
  RedisCache(const CacheOptions& o, RedisEndpoint ep)
      : opts_(o),
        ep_(std::move(ep)),
        pool_max_(std::max(1, o.redis_pool)),
        hmac_key_(CacheHmacKeyOrRandom(o.hmac_key)) {
    // Connect once now so that stats say at once whether Redis is there.
    Conn c = Acquire();
    if (c.ctx) Release(c);
  }
  ~RedisCache() override {
    for (Conn& c : idle_) redisFree(c.ctx);
  }

  std::optional<CachedResponse> Get(const std::string& key) override {
    const std::string k = opts_.redis_prefix + key;
    Reply r = Command([&](redisContext* c) {
      return static_cast<redisReply*>(redisCommand(c, "GET %b", k.data(), k.size()));
    });
    return counts_.OnGet(r, hmac_key_, k);
  }

  void Put(const std::string& key, const CachedResponse& response) override {
    const std::string k = opts_.redis_prefix + key;
    if (!CacheableContentType(response.content_type)) return;
    const std::string v = SealCacheValue(hmac_key_, k, EncodeCachedResponse(response));
    const std::string ttl = std::to_string(opts_.ttl_s);
    Reply r = Command([&](redisContext* c) {
      if (opts_.ttl_s > 0)
        return static_cast<redisReply*>(redisCommand(c, "SET %b %b EX %s", k.data(), k.size(),
                                                     v.data(), v.size(), ttl.c_str()));
      return static_cast<redisReply*>(
          redisCommand(c, "SET %b %b", k.data(), k.size(), v.data(), v.size()));
    });
    counts_.OnSet(r);
  }

  CacheStats stats() const override {
    CacheStats s = counts_.Stats();
    s.backend_up = up_;
    return s;
  }
  std::string backend() const override { return "redis"; }

 private:
  struct Conn {
    redisContext* ctx = nullptr;
    uint64_t gen = 0;     // pool generation it was opened in
    bool reused = false;  // came from the idle list (may have gone stale)
    bool probe = false;   // this caller holds the "probe while down" right
  };

  static int64_t NowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               CacheClock::now().time_since_epoch())
        .count();
  }

  // Runs one command on a pooled connection. Null on any failure (counted in counts_.errors).
  template <typename F>
  Reply Command(F&& f) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      Conn c = Acquire();
      if (!c.ctx) {
        counts_.errors++;
        return nullptr;
      }
      const int64_t t0 = NowMs();
      redisReply* raw;
      {
        SigpipeGuard guard;
        raw = f(c.ctx);
      }
      if (raw && c.ctx->err == 0) {
        Release(c);
        return Reply(raw);
      }
      if (raw) freeReplyObject(raw);
      // A pooled connection that fails fast most likely went stale (Redis restarted since):
      // retry once on a fresh connection. A slow failure (timeout) is not retried.
      const bool retry = attempt == 0 && c.reused && NowMs() - t0 < opts_.redis_timeout_ms / 2;
      Fail(c, !retry);
      if (!retry) {
        counts_.errors++;
        return nullptr;
      }
    }
    return nullptr;
  }

  // A connection, or {nullptr} when Redis is being skipped (down, or the pool is busy).
  Conn Acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    Conn c;
    if (!up_) {
      if (NowMs() < down_until_ms_ || probing_) return c;
      probing_ = true;  // this caller probes; the others keep skipping until it is done
      c.probe = true;
      c.gen = gen_;
      ++open_;
      lock.unlock();
      c.ctx = Connect();
      lock.lock();
      if (!c.ctx) {
        --open_;
        probing_ = false;
        down_until_ms_ = NowMs() + opts_.redis_retry_ms;
        return c;
      }
      return c;  // up_ is set once its command succeeds (Release)
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(opts_.redis_timeout_ms);
    while (idle_.empty() && open_ >= pool_max_) {
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) return Conn{};
      if (!up_) return Conn{};
    }
    if (!idle_.empty()) {
      c = idle_.back();
      idle_.pop_back();
      c.reused = true;
      return c;
    }
    c.gen = gen_;
    ++open_;
    lock.unlock();
    c.ctx = Connect();
    if (!c.ctx) {
      lock.lock();
      --open_;
      MarkDown();
      cv_.notify_all();
    }
    return c;
  }

  void Release(Conn& c) {
    std::lock_guard<std::mutex> lock(mu_);
    if (c.probe) {
      probing_ = false;
      up_ = true;
    }
    if (c.gen == gen_ && up_) {
      c.reused = false;
      c.probe = false;
      idle_.push_back(c);
    } else {
      redisFree(c.ctx);
      --open_;
    }
    c.ctx = nullptr;
    cv_.notify_one();
  }

  // The connection failed: free it. When `down` and it belongs to the current generation,
  // Redis is considered down: the pool is flushed and Redis skipped for redis_retry_ms.
  void Fail(Conn& c, bool down) {
    redisFree(c.ctx);
    c.ctx = nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    --open_;
    if (c.probe) probing_ = false;
    if (c.gen != gen_) return;  // stale: opened before the last outage
    if (down) {
      MarkDown();
    } else {
      FlushIdle();  // its siblings are likely stale too
    }
    cv_.notify_all();
  }

  void MarkDown() {  // mu_ held
    up_ = false;
    down_until_ms_ = NowMs() + opts_.redis_retry_ms;
    FlushIdle();
  }
  void FlushIdle() {  // mu_ held
    ++gen_;
    for (Conn& i : idle_) redisFree(i.ctx);
    open_ -= static_cast<int>(idle_.size());
    idle_.clear();
  }

  // Opens and prepares a connection (AUTH, SELECT); nullptr on failure.
  redisContext* Connect() {
    return RedisConnect(ep_.host, ep_.port, opts_.redis_timeout_ms, ep_.user, ep_.password, ep_.db);
  }

  const CacheOptions opts_;
  const RedisEndpoint ep_;
  const int pool_max_;
  std::string hmac_key_;  // seals the stored values (set once in the constructor)

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Conn> idle_;
  int open_ = 0;                // connections alive: idle + in use
  uint64_t gen_ = 0;            // bumped on each outage; older connections are discarded
  int64_t down_until_ms_ = 0;   // while !up_: skip Redis until then
  bool probing_ = false;        // while !up_: one caller is trying to reconnect
  std::atomic<bool> up_{true};  // optimistic until the first connect says otherwise
  RedisCacheCounters counts_;
};

bool ParseInt(std::string_view s, int lo, int hi, int* out) {
  if (s.empty()) return false;
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// Copies `j` with floats of an integral value written as integers (1.0 and 1 mean the same).
json Canonical(const json& j) {
  if (j.is_object()) {
    json out = json::object();
    for (auto it = j.begin(); it != j.end(); ++it) out[it.key()] = Canonical(it.value());
    return out;
  }
  if (j.is_array()) {
    json out = json::array();
    for (const json& e : j) out.push_back(Canonical(e));
    return out;
  }
  if (j.is_number_float()) {
    const double d = j.get<double>();
    if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) < 9.0e15)
      return json(static_cast<int64_t>(d));
  }
  return j;
}

// Redis Cluster: the seeds are redis_nodes plus redis_url's host; the URL (if any) carries the
// credentials.
Result<std::unique_ptr<ResponseCache>> MakeClusterCache(const CacheOptions& opts) {
  RedisEndpoint ep;
  std::vector<RedisNodeAddr> seeds;
  if (!opts.redis_url.empty()) {
    auto u = ParseRedisUrl(opts.redis_url);
    if (!u.ok()) return u.status().With("cache");
    ep = *u;
    if (ep.db != 0) return Status::Error("cache: a Redis Cluster has only database 0");
    seeds.push_back(RedisNodeAddr{ep.host, ep.port});
  }
  for (const std::string& n : opts.redis_nodes) {
    auto a = ParseRedisHostPort(n);
    if (!a.ok() || a->host.empty())
      return Status::Error("cache: bad redis_nodes entry \"" + n + "\": expected host:port");
    seeds.push_back(*a);
  }
  if (seeds.empty()) return Status::Error("cache: redis_cluster needs redis_nodes or redis_url");
  if (ep.password.empty()) ep.password = opts.redis_password;
  if (opts.redis_timeout_ms <= 0) return Status::Error("cache: redis_timeout_ms must be > 0");
  return MakeRedisClusterCache(opts, ep, seeds);
}

}  // namespace

std::unique_ptr<ResponseCache> MakeMemoryCache(const CacheOptions& opts,
                                               std::function<CacheClock::time_point()> now) {
  return std::make_unique<MemoryCache>(opts, std::move(now));
}

Result<std::unique_ptr<ResponseCache>> MakeResponseCache(const CacheOptions& opts) {
  if (opts.redis_cluster || !opts.redis_nodes.empty()) return MakeClusterCache(opts);
  if (opts.redis_url.empty())
    return std::unique_ptr<ResponseCache>(MakeMemoryCache(opts, [] { return CacheClock::now(); }));
  auto ep = ParseRedisUrl(opts.redis_url);
  if (!ep.ok()) return ep.status().With("cache");
  if (ep->password.empty()) ep->password = opts.redis_password;
  if (opts.redis_timeout_ms <= 0) return Status::Error("cache: redis_timeout_ms must be > 0");
  return std::unique_ptr<ResponseCache>(std::make_unique<RedisCache>(opts, std::move(*ep)));
}

Result<RedisEndpoint> ParseRedisUrl(const std::string& url) {
  const std::string scheme = "redis://";
  auto bad = [&](const char* why) {
    return Status::Error("bad redis_url \"" + url + "\": " + why);
  };
  if (url.compare(0, scheme.size(), scheme) != 0) return bad("expected redis://host[:port][/db]");
  std::string_view rest(url);
  rest.remove_prefix(scheme.size());
  RedisEndpoint ep;
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty() && !ParseInt(db, 0, 1 << 20, &ep.db)) return bad("database is not a number");
    rest = rest.substr(0, slash);
  }
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (size_t colon = cred.find(':'); colon != std::string_view::npos) {
      ep.user = std::string(cred.substr(0, colon));
      ep.password = std::string(cred.substr(colon + 1));
    } else {
      ep.password = std::string(cred);
    }
  }
  std::string_view host = rest;
  if (!rest.empty() && rest.front() == '[') {  // [ipv6]:port
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed [");
    host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || !ParseInt(rest.substr(1), 1, 65535, &ep.port))
        return bad("bad port");
    }
  } else if (size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    if (!ParseInt(rest.substr(colon + 1), 1, 65535, &ep.port)) return bad("bad port");
  }
  if (host.empty()) return bad("no host");
  ep.host = std::string(host);
  return ep;
}

std::string EncodeCachedResponse(const CachedResponse& r) {
  std::string out =
      "1 " + std::to_string(r.status) + " " + std::to_string(r.content_type.size()) + "\n";
  out.reserve(out.size() + r.content_type.size() + r.body.size());
  out += r.content_type;
  out += r.body;
  return out;
}

std::optional<CachedResponse> DecodeCachedResponse(std::string_view v) {
  size_t nl = v.find('\n');
  if (nl == std::string_view::npos || nl > 32) return std::nullopt;
  std::string_view head = v.substr(0, nl);
  if (head.substr(0, 2) != "1 ") return std::nullopt;
  head.remove_prefix(2);
  size_t sp = head.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  CachedResponse r;
  int ct_len = 0;
  if (!ParseInt(head.substr(0, sp), 100, 999, &r.status)) return std::nullopt;
  if (!ParseInt(head.substr(sp + 1), 0, 1 << 16, &ct_len)) return std::nullopt;
  std::string_view rest = v.substr(nl + 1);
  if (rest.size() < static_cast<size_t>(ct_len)) return std::nullopt;
  r.content_type = std::string(rest.substr(0, ct_len));
  r.body = std::string(rest.substr(ct_len));
  return r;
}

bool CacheableContentType(std::string_view t) {
  return t == "application/json" || t == "text/event-stream" ||
         t == "application/json; charset=utf-8";
}

namespace {
std::string HexHmac(const std::string& key, std::string_view redis_key, std::string_view value) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  std::string msg;
  msg.reserve(redis_key.size() + 1 + value.size());
  msg.append(redis_key.data(), redis_key.size());
  msg += '\n';
  msg.append(value.data(), value.size());
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), md, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 15];
  }
  return hex;
}
}  // namespace

std::string SealCacheValue(const std::string& hmac_key, std::string_view redis_key,
                           std::string_view value) {
  std::string out = HexHmac(hmac_key, redis_key, value);
  out.append(value.data(), value.size());
  return out;
}

std::optional<std::string_view> OpenCacheValue(const std::string& hmac_key,
                                               std::string_view redis_key,
                                               std::string_view sealed) {
  if (sealed.size() < 64) return std::nullopt;
  const std::string_view value = sealed.substr(64);
  const std::string want = HexHmac(hmac_key, redis_key, value);
  if (CRYPTO_memcmp(want.data(), sealed.data(), 64) != 0) return std::nullopt;
  return value;
}

bool IsDeterministic(const nlohmann::json& body, double default_temperature) {
  if (!body.is_object()) return false;
  if (auto s = body.find("seed"); s != body.end() && s->is_number_integer()) return true;
  double t = default_temperature;
  if (auto it = body.find("temperature"); it != body.end() && !it->is_null()) {
    if (!it->is_number()) return false;
    t = it->get<double>();
  }
  return t <= 0.0;
}

std::string CacheKey(const std::string& path, const nlohmann::json& body, const std::string& tenant,
                     const std::string& model_fingerprint) {
  json b = Canonical(body);
  if (b.is_object()) b.erase("user");
  // nlohmann::json objects are ordered maps: dump() writes keys sorted at every level. The
  // tenant and the fingerprint are JSON strings: no separator can be forged inside them.
  // (Without both: the original "<path>\n<body>" text, whose body starts with '{', not '"'.)
  auto dump = [](const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); };
  std::string text = path + "\n";
  if (!tenant.empty() || !model_fingerprint.empty())
    text += dump(json(tenant)) + "\n" + dump(json(model_fingerprint)) + "\n";
  text += dump(b);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

}  // namespace strata::gateway
