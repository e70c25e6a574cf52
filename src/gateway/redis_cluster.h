// The gateway's response cache on a Redis Cluster: key slots (CRC16 with {hash tags}), the slot
// map from CLUSTER SLOTS, MOVED / ASK redirections, one connection per master, and a short
// circuit per master so that a dead one costs a miss, not a timeout per request.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "gateway/cache.h"

struct redisReply;

namespace strata::gateway {

inline constexpr int kRedisClusterSlots = 16384;

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the Redis Cluster key hash.
uint16_t RedisCrc16(std::string_view data);

// The cluster slot of `key`: CRC16 mod 16384 of the key, or of its hash tag — the text between
// the first '{' and the first '}' after it — when that text is not empty.
int RedisKeySlot(std::string_view key);

struct RedisNodeAddr {
  std::string host;
  int port = 0;
  bool operator==(const RedisNodeAddr& o) const { return port == o.port && host == o.host; }
  std::string ToString() const;
};

// "host:port" ("[v6]:port" or "v6:port": the last ':' separates the port).
Result<RedisNodeAddr> ParseRedisHostPort(std::string_view s);

struct RedisSlotRange {
  int first = 0, last = 0;  // inclusive
  RedisNodeAddr master;
};

// A CLUSTER SLOTS reply: [[first, last, [host, port, id, ...], replicas...], ...]. An empty
// host (a node that does not know its address) is `asked_host`, the node that answered.
Result<std::vector<RedisSlotRange>> ParseClusterSlots(const redisReply* reply,
                                                      const std::string& asked_host);

// "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>"; an empty host is `asked_host`.
struct RedisRedirect {
  bool ask = false;
  int slot = 0;
  RedisNodeAddr to;
};
std::optional<RedisRedirect> ParseRedisRedirect(std::string_view error,
                                                const std::string& asked_host);

// The cluster cache. `ep` gives the credentials (user / password; db must be 0); `seeds` the
// nodes asked for the slot map (at least one).
Result<std::unique_ptr<ResponseCache>> MakeRedisClusterCache(
    const CacheOptions& opts, const RedisEndpoint& ep, const std::vector<RedisNodeAddr>& seeds);

}  // namespace strata::gateway
