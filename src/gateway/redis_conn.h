// Pieces shared by the gateway's two Redis cache clients (one server: cache.cc; a Redis
// Cluster: redis_cluster.cc): SIGPIPE suppression, owned replies, connecting with AUTH, the
// seal key, and opening a sealed cache value.
#pragma once

#include <signal.h>

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

}  // namespace strata::gateway
