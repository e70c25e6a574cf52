// Redis Cluster pieces without a cluster: key slots against the spec's vectors (and values a
// real `CLUSTER KEYSLOT` returns), CLUSTER SLOTS and MOVED / ASK parsing from raw RESP bytes
// (hiredis' own reader builds the replies), and the cluster cache's configuration errors and
// degraded start with no node reachable.
#include "gateway/redis_cluster.h"

#include <chrono>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include "gateway/redis_conn.h"

namespace strata::gateway {
namespace {

// Parses RESP bytes into a reply the way hiredis does for a socket.
Reply ParseResp(const std::string& bytes) {
  redisReader* reader = redisReaderCreate();
  redisReaderFeed(reader, bytes.data(), bytes.size());
  void* out = nullptr;
  const int rc = redisReaderGetReply(reader, &out);
  redisReaderFree(reader);
  EXPECT_EQ(rc, REDIS_OK);
  return Reply(static_cast<redisReply*>(out));
}

TEST(RedisCluster, Crc16MatchesTheSpecVector) {
  // The cluster spec: CRC16 of "123456789" is 0x31C3 (XMODEM).
  EXPECT_EQ(RedisCrc16("123456789"), 0x31C3);
  EXPECT_EQ(RedisCrc16(""), 0);
}

TEST(RedisCluster, KeySlotsMatchCLUSTERKEYSLOT) {
  // Values from a real redis-server 7 (`CLUSTER KEYSLOT`).
  const std::pair<const char*, int> kSlots[] = {
      {"123456789", 12739},       {"foo", 12182}, {"bar", 5061}, {"hello", 866}, {"somekey", 11058},
      {"strata:cache:abc", 5327}, {"", 0}};
  for (const auto& [key, slot] : kSlots) EXPECT_EQ(RedisKeySlot(key), slot) << key;
}

TEST(RedisCluster, HashTags) {
  EXPECT_EQ(RedisKeySlot("foo{hash_tag}"), 2515);
  EXPECT_EQ(RedisKeySlot("{user1000}.following"), 3443);
  EXPECT_EQ(RedisKeySlot("{user1000}.followers"), 3443);
  EXPECT_EQ(RedisKeySlot("foo{bar}{zap}"), RedisKeySlot("bar"));  // first tag only
  EXPECT_EQ(RedisKeySlot("foo{}{bar}"), 8363);                    // empty tag: the whole key
  EXPECT_EQ(RedisKeySlot("foo{{bar}}zap"), 4015);                 // the tag is "{bar"
  EXPECT_EQ(RedisKeySlot("foo{{bar}}zap"), RedisKeySlot("{bar"));
  EXPECT_EQ(RedisKeySlot("{}"), 15257);
  EXPECT_EQ(RedisKeySlot("{"), 4092);  // unclosed: the whole key
}

TEST(RedisCluster, HostPort) {
  auto a = ParseRedisHostPort("10.0.0.5:7001");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "10.0.0.5");
  EXPECT_EQ(a->port, 7001);
  auto b = ParseRedisHostPort("[::1]:7002");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->ToString(), "[::1]:7002");
  auto c = ParseRedisHostPort("fe80::1:7003");  // the last ':' separates the port
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "fe80::1");
  for (const char* bad : {"host", "host:", "host:0", "host:70000", "host:7x"})
    EXPECT_FALSE(ParseRedisHostPort(bad).ok()) << bad;
}

TEST(RedisCluster, ParsesClusterSlots) {
  // Two ranges, the first with a replica, the second with an unknown (empty) host and the
  // Redis 7 hostname map (an array in RESP2).
  Reply r = ParseResp(
      "*2\r\n"
      "*4\r\n:0\r\n:5460\r\n"
      "*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$4\r\nid-a\r\n"
      "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$4\r\nid-d\r\n"
      "*3\r\n:5461\r\n:16383\r\n"
      "*4\r\n$0\r\n\r\n:7001\r\n$4\r\nid-b\r\n*2\r\n$8\r\nhostname\r\n$2\r\nh1\r\n");
  auto slots = ParseClusterSlots(r.get(), "10.1.1.1");
  ASSERT_TRUE(slots.ok()) << slots.status().message();
  ASSERT_EQ(slots->size(), 2u);
  EXPECT_EQ((*slots)[0].first, 0);
  EXPECT_EQ((*slots)[0].last, 5460);
  EXPECT_EQ((*slots)[0].master, (RedisNodeAddr{"127.0.0.1", 7000}));
  EXPECT_EQ((*slots)[1].first, 5461);
  EXPECT_EQ((*slots)[1].last, 16383);
  EXPECT_EQ((*slots)[1].master, (RedisNodeAddr{"10.1.1.1", 7001}));
}

TEST(RedisCluster, RejectsMalformedClusterSlots) {
  const char* bad[] = {
      "+OK\r\n",                                               // not an array
      "*1\r\n*2\r\n:0\r\n:10\r\n",                             // no master
      "*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",      // first > last
      "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",   // beyond the last slot
      "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:0\r\n",       // port 0
      "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n:1\r\n:1\r\n",            // host not a string
      "*1\r\n*3\r\n$1\r\n0\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n",  // slot not an integer
  };
  for (const char* b : bad) {
    Reply r = ParseResp(b);
    EXPECT_FALSE(ParseClusterSlots(r.get(), "h").ok()) << b;
  }
  EXPECT_FALSE(ParseClusterSlots(nullptr, "h").ok());
}

TEST(RedisCluster, ParsesRedirects) {
  auto m = ParseRedisRedirect("MOVED 3999 127.0.0.1:6381", "x");
  ASSERT_TRUE(m.has_value());
  EXPECT_FALSE(m->ask);
  EXPECT_EQ(m->slot, 3999);
  EXPECT_EQ(m->to, (RedisNodeAddr{"127.0.0.1", 6381}));
  auto a = ParseRedisRedirect("ASK 16383 [::1]:7000", "x");
  ASSERT_TRUE(a.has_value());
  EXPECT_TRUE(a->ask);
  EXPECT_EQ(a->slot, 16383);
  EXPECT_EQ(a->to.host, "::1");
  auto e = ParseRedisRedirect("MOVED 12 :7005", "10.0.0.9");  // unknown endpoint: same host
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->to, (RedisNodeAddr{"10.0.0.9", 7005}));
  for (const char* bad :
       {"ERR unknown command", "MOVED", "MOVED 3999", "MOVED x h:1", "MOVED 16384 h:1",
        "MOVED -1 h:1", "ASK 1 h", "CLUSTERDOWN x", "TRYAGAIN Multiple keys", "moved 1 h:1"})
    EXPECT_FALSE(ParseRedisRedirect(bad, "x").has_value()) << bad;
}

TEST(RedisCluster, ConfigErrors) {
  CacheOptions o;
  o.redis_cluster = true;
  EXPECT_FALSE(MakeResponseCache(o).ok());  // no seed
  o.redis_nodes = {"127.0.0.1"};
  EXPECT_FALSE(MakeResponseCache(o).ok());  // no port
  o.redis_nodes = {};
  o.redis_url = "redis://127.0.0.1:1/3";
  EXPECT_FALSE(MakeResponseCache(o).ok());  // a cluster has only db 0
}

TEST(RedisCluster, UnreachableClusterIsAFastMiss) {
  // Nothing listens on port 1: the cache starts degraded, every call is a miss / dropped put,
  // and none waits for a timeout (refused connects, then the per-node circuit).
  CacheOptions o;
  o.redis_nodes = {"127.0.0.1:1"};
  o.redis_timeout_ms = 200;
  o.hmac_key = "k";
  auto made = MakeResponseCache(o);
  ASSERT_TRUE(made.ok()) << made.status().message();
  auto& c = *made;
  EXPECT_EQ(c->backend(), "redis-cluster");
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) {
    EXPECT_FALSE(c->Get("k" + std::to_string(i)).has_value());
    c->Put("k" + std::to_string(i), CachedResponse{200, "application/json", "{}"});
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000));
  const CacheStats s = c->stats();
  EXPECT_EQ(s.misses, 50u);
  EXPECT_EQ(s.puts, 0u);
  EXPECT_EQ(s.errors, 100u);
  EXPECT_FALSE(s.backend_up);
}

}  // namespace
}  // namespace strata::gateway
