// The gateway's response cache for deterministic requests (temperature 0, or a fixed seed):
// an in-memory LRU by default, or Redis (hiredis) shared by several gateways. Every method
// is thread-safe. A Redis outage never fails a request: Get misses and Put is dropped while
// Redis is down, and the cache reconnects by itself after `redis_retry_ms`.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace strata::gateway {

struct CachedResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;  // the whole response body (for a stream: the whole SSE text)
};

struct CacheOptions {
  bool enabled = false;
  size_t max_entries = 4096;     // LRU: entries at most
  size_t max_bytes = 64u << 20;  // LRU: body bytes at most
  int ttl_s = 600;               // entry lifetime (both backends)
  std::string redis_url;         // "redis://host:port[/db]": use Redis; empty: in-memory LRU
  std::string redis_prefix = "strata:cache:";
  int redis_timeout_ms = 200;  // connect / command timeout
  int redis_retry_ms = 2000;   // after a failure, Redis is skipped this long
  int redis_pool = 4;          // Redis connections at most (callers beyond wait <= timeout)
  std::string redis_password;  // AUTH password when the URL has none (from a file / env)
  // Redis Cluster: when set (or when redis_nodes is not empty) the cache follows the cluster's
  // slots (CLUSTER SLOTS, MOVED, ASK) over one connection per master. The seeds are
  // redis_nodes ("host:port") plus redis_url's host; redis_url's user / password (else
  // redis_password) authenticate every node.
  bool redis_cluster = false;
  std::vector<std::string> redis_nodes;
  // Redis: entries are sealed with HMAC-SHA256 under this key (shared by the gateways of a
  // cluster); entries failing the check are misses. Empty: a random key per process (a
  // warning: gateways then cannot share entries).
  std::string hmac_key;
};

// The content types a cached answer may have (the gateway's own): anything else stored or
// read back is refused, so a cache writer cannot inject arbitrary headers.
bool CacheableContentType(std::string_view content_type);

// Seals / opens a Redis value: hex HMAC-SHA256(key, redis key || '\n' || value) || value.
std::string SealCacheValue(const std::string& hmac_key, std::string_view redis_key,
                           std::string_view value);
std::optional<std::string_view> OpenCacheValue(const std::string& hmac_key,
                                               std::string_view redis_key, std::string_view sealed);

struct CacheStats {
  uint64_t hits = 0, misses = 0, puts = 0, evictions = 0;
  uint64_t errors = 0;     // backend failures (Redis down, ...) turned into misses / dropped puts
  uint64_t redirects = 0;  // Redis Cluster: MOVED / ASK answers followed
  uint64_t entries = 0;    // LRU only (Redis: 0)
  uint64_t bytes = 0;      // LRU only
  bool backend_up = true;
};

class ResponseCache {
 public:
  virtual ~ResponseCache() = default;
  virtual std::optional<CachedResponse> Get(const std::string& key) = 0;
  // Only call with successful (2xx) responses: errors are never cached.
  virtual void Put(const std::string& key, const CachedResponse& response) = 0;
  virtual CacheStats stats() const = 0;
  virtual std::string backend() const = 0;  // "memory", "redis" or "redis-cluster"
};

// Builds the configured cache. An unparsable redis_url is an error; an unreachable Redis is
// not (the cache starts degraded and keeps retrying). `enabled` is not consulted: the caller
// decides whether to build a cache at all. ttl_s <= 0: entries never expire.
Result<std::unique_ptr<ResponseCache>> MakeResponseCache(const CacheOptions& opts);

// The in-memory LRU with an injectable clock (tests).
using CacheClock = std::chrono::steady_clock;
std::unique_ptr<ResponseCache> MakeMemoryCache(const CacheOptions& opts,
                                               std::function<CacheClock::time_point()> now);

// "redis://[[user]:password@]host[:port][/db]" (port 6379 and db 0 by default).
struct RedisEndpoint {
  std::string host;
  int port = 6379;
  int db = 0;
  std::string user, password;  // AUTH when password is not empty
};
Result<RedisEndpoint> ParseRedisUrl(const std::string& url);

// The compact value stored in Redis: "1 <status> <content type length>\n<content type><body>"
// (binary-safe). Decode returns nullopt on anything malformed.
std::string EncodeCachedResponse(const CachedResponse& r);
std::optional<CachedResponse> DecodeCachedResponse(std::string_view v);

// True when the request's output is determined by its input: temperature 0 (or absent with a
// default of 0... callers pass the effective value), or an explicit integer "seed".
bool IsDeterministic(const nlohmann::json& body, double default_temperature);

// Stable key of a request: endpoint path + model + the body with its keys sorted and fields
// that do not change the output removed ("user", "stream_options" is kept since it changes
// the stream). A hex SHA-256. `tenant` isolates callers (the API key's name; "" for shared
// keys and no authentication); `model_fingerprint` the served model (its entries must not
// outlive a model change).
std::string CacheKey(const std::string& path, const nlohmann::json& body,
                     const std::string& tenant = "", const std::string& model_fingerprint = "");

}  // namespace strata::gateway
