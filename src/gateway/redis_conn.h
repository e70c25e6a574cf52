// Pieces shared by the gateway's two Redis cache clients (one server: cache.cc; a Redis
// Cluster: redis_cluster.cc): SIGPIPE suppression, owned replies, connecting with AUTH, the
// seal key, and opening a sealed cache value.
#pragma once

#include <signal.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <hiredis/hiredis.h>

#include "gateway/cache.h"

namespace strata::gateway {

// hiredis writes with write(2): a peer that reset the connection would raise SIGPIPE. Blocks
// it in this thread for the guard's lifetime and swallows one raised meanwhile.
class SigpipeGuard {
 public:
  SigpipeGuard();
  ~SigpipeGuard();
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_, old_;
  bool was_pending_ = false;
};

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// Connects with connect and command timeouts of `timeout_ms`, then AUTH (password, or ACL
// user + password) when `password` is set and SELECT when `db` != 0. nullptr on any failure.
redisContext* RedisConnect(const std::string& host, int port, int timeout_ms,
                           const std::string& user, const std::string& password, int db);

// `configured`, or (with a warning on stderr) a random per-process key when it is empty.
std::string CacheHmacKeyOrRandom(const std::string& configured);

// The cached answer inside a sealed value read back from `redis_key`, or nullopt when the seal,
// the format, the status or the content type is not one the gateway writes.
std::optional<CachedResponse> OpenCachedResponse(const std::string& hmac_key,
                                                 std::string_view redis_key,
                                                 std::string_view sealed);

// The counts of a Redis cache client and the handling of the GET / SET replies they count.
struct RedisCacheCounters {
  std::atomic<uint64_t> hits{0}, misses{0}, puts{0}, errors{0};

  // The cached answer in a GET reply for `redis_key` (null: the command failed, already
  // counted): a hit, or a miss (and an error when the value is not one the gateway wrote, or
  // the reply is neither a value nor nil).
  std::optional<CachedResponse> OnGet(const Reply& r, const std::string& hmac_key,
                                      std::string_view redis_key);
  // Counts a SET reply (null: the command failed, already counted).
  void OnSet(const Reply& r);
  // hits, misses, puts and errors (the rest left at their defaults).
  CacheStats Stats() const;
};

}  // namespace strata::gateway
