// Tests of the response cache: the in-memory LRU (with a fake clock), request keys, and the
// Redis backend against a real redis-server child process that is killed, frozen and
// restarted mid-test.
#include "gateway/cache.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

extern char** environ;

namespace strata::gateway {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

struct FakeClock {
  CacheClock::time_point t = CacheClock::time_point{} + 1000h;
  std::function<CacheClock::time_point()> fn() {
    return [this] { return t; };
  }
};

CachedResponse Resp(const std::string& body, int status = 200) {
  CachedResponse r;
  r.status = status;
  r.body = body;
  return r;
}

// ---------------------------------------------------------------------------------------------
// In-memory LRU.

TEST(MemoryCache, EvictsLeastRecentlyUsedByCount) {
  FakeClock clock;
  CacheOptions o;
  o.max_entries = 3;
  auto c = MakeMemoryCache(o, clock.fn());
  EXPECT_EQ(c->backend(), "memory");
  c->Put("a", Resp("A"));
  c->Put("b", Resp("B"));
  c->Put("c", Resp("C"));
  ASSERT_TRUE(c->Get("a"));  // a is now the most recent: b is the oldest
  c->Put("d", Resp("D"));
  EXPECT_FALSE(c->Get("b"));
  ASSERT_TRUE(c->Get("a"));
  EXPECT_EQ(c->Get("a")->body, "A");
  EXPECT_EQ(c->Get("c")->body, "C");
  EXPECT_EQ(c->Get("d")->body, "D");
  CacheStats s = c->stats();
  EXPECT_EQ(s.entries, 3u);
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.puts, 4u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 5u);
  EXPECT_EQ(s.bytes, 3u);
  EXPECT_TRUE(s.backend_up);
}

TEST(MemoryCache, EvictsByBytes) {
  FakeClock clock;
  CacheOptions o;
  o.max_bytes = 100;
  auto c = MakeMemoryCache(o, clock.fn());
  c->Put("a", Resp(std::string(40, 'a')));
  c->Put("b", Resp(std::string(40, 'b')));
  EXPECT_EQ(c->stats().bytes, 80u);
  c->Put("c", Resp(std::string(40, 'c')));  // 120 > 100: a goes
  EXPECT_FALSE(c->Get("a"));
  EXPECT_TRUE(c->Get("b"));
  EXPECT_TRUE(c->Get("c"));
  EXPECT_EQ(c->stats().bytes, 80u);
  c->Put("huge", Resp(std::string(101, 'h')));  // can never fit: not stored, nothing evicted
  EXPECT_FALSE(c->Get("huge"));
  EXPECT_TRUE(c->Get("b"));
  EXPECT_TRUE(c->Get("c"));
  c->Put("big", Resp(std::string(100, 'x')));  // fits alone: evicts both
  EXPECT_TRUE(c->Get("big"));
  EXPECT_EQ(c->stats().entries, 1u);
  EXPECT_EQ(c->stats().bytes, 100u);
  EXPECT_EQ(c->stats().evictions, 3u);
}

TEST(MemoryCache, ReplaceKeepsAccountingRight) {
  FakeClock clock;
  CacheOptions o;
  auto c = MakeMemoryCache(o, clock.fn());
  c->Put("k", Resp("short"));
  c->Put("k", Resp("a longer body", 201));
  auto r = c->Get("k");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "a longer body");
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(c->stats().entries, 1u);
  EXPECT_EQ(c->stats().bytes, 13u);
}

// A memory cache on `clock` whose entries live ttl_s seconds (0: forever).
std::unique_ptr<ResponseCache> WithTtl(int ttl_s, FakeClock& clock) {
  CacheOptions o;
  o.ttl_s = ttl_s;
  return MakeMemoryCache(o, clock.fn());
}

TEST(MemoryCache, TtlExpiresUnlessZero) {
  FakeClock clock;
  auto c = WithTtl(10, clock);
  c->Put("k", Resp("v"));
  clock.t += 9s;
  EXPECT_TRUE(c->Get("k"));
  clock.t += 1s;  // exactly ttl: expired
  EXPECT_FALSE(c->Get("k"));
  EXPECT_EQ(c->stats().entries, 0u);
  EXPECT_EQ(c->stats().bytes, 0u);
  c->Put("k", Resp("v2"));  // a fresh put gets a fresh lifetime
  clock.t += 5s;
  EXPECT_EQ(c->Get("k")->body, "v2");

  auto forever = WithTtl(0, clock);  // ttl 0: never expires
  forever->Put("k", Resp("v"));
  clock.t += 1000000s;
  EXPECT_TRUE(forever->Get("k"));
}

TEST(MemoryCache, ConcurrentGetPutSmoke) {
  CacheOptions o;
  o.max_entries = 32;
  o.max_bytes = 32 * 20;
  auto made = MakeResponseCache(o);
  ASSERT_TRUE(made.ok());
  ResponseCache& c = **made;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      uint32_t x = 12345u + t;
      for (int i = 0; i < 20000; ++i) {
        x = x * 1664525u + 1013904223u;
        const std::string key = "k" + std::to_string((x >> 8) % 64);
        if ((x >> 20) % 3 == 0) {
          c.Put(key, Resp("body-of-" + key));
        } else if (auto r = c.Get(key); r && r->body != "body-of-" + key) {
          bad++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  CacheStats s = c.stats();
  EXPECT_LE(s.entries, 32u);
  EXPECT_LE(s.bytes, 32u * 20);
  EXPECT_GT(s.hits, 0u);
  EXPECT_GT(s.evictions, 0u);
  EXPECT_EQ(s.hits + s.misses + s.puts, 8u * 20000);
}

// ---------------------------------------------------------------------------------------------
// Keys, determinism, value encoding, URLs.

TEST(CacheKey, CanonicalAndSha256) {
  const std::string path = "/v1/chat/completions";
  json a = json::parse(R"({"model":"m","messages":[{"role":"user","content":"hi"}],
                           "temperature":0,"max_tokens":8,"stream":false})");
  json b = json::parse(R"({"stream":false,"max_tokens":8,"temperature":0.0,
                           "messages":[{"content":"hi","role":"user"}],"model":"m",
                           "user":"alice"})");
  const std::string ka = CacheKey(path, a);
  EXPECT_EQ(ka.size(), 64u);
  EXPECT_EQ(ka.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(ka, CacheKey(path, b));  // order, 0 vs 0.0 and "user" do not matter
  EXPECT_EQ(ka, CacheKey(path, a));  // stable

  auto changed = [&](const char* field, const json& v) {
    json c = a;
    c[field] = v;
    return CacheKey(path, c);
  };
  EXPECT_NE(ka, changed("model", "other"));
  EXPECT_NE(ka, changed("max_tokens", 9));
  EXPECT_NE(ka, changed("temperature", 0.5));
  EXPECT_NE(ka, changed("stream", true));
  EXPECT_NE(ka, changed("seed", 1));
  EXPECT_NE(ka, changed("stream_options", json{{"include_usage", true}}));
  EXPECT_NE(ka, CacheKey("/v1/completions", a));
  json d = a;
  d["messages"][0]["content"] = "hi!";
  EXPECT_NE(ka, CacheKey(path, d));

  // The digest is SHA-256 of "<path>\n<sorted compact JSON>" (reference value from Python's
  // hashlib over that exact text).
  json e = json::parse(R"({"b":[2.0,"x"],"user":"u","a":1})");
  EXPECT_EQ(CacheKey(path, e), "47fa286b59ca71829ef582cd185ce79841719148d4e1c557bb959cfecc5e8a0b");
}

TEST(CacheKey, TenantAndModelIsolate) {
  const std::string path = "/v1/completions";
  const json a = json::parse(R"({"prompt":"hi","temperature":0})");
  const std::string shared = CacheKey(path, a);
  EXPECT_NE(shared, CacheKey(path, a, "key-a"));
  EXPECT_NE(CacheKey(path, a, "key-a"), CacheKey(path, a, "key-b"));
  EXPECT_EQ(CacheKey(path, a, "key-a", "m1"), CacheKey(path, a, "key-a", "m1"));
  EXPECT_NE(CacheKey(path, a, "key-a", "m1"), CacheKey(path, a, "key-a", "m2"));
  EXPECT_NE(CacheKey(path, a, "", "m1"), shared);
  // A separator inside the tenant cannot make it collide with another tenant + model.
  EXPECT_NE(CacheKey(path, a, "x\n\"m\"", ""), CacheKey(path, a, "x", "m"));
  EXPECT_TRUE(CacheableContentType("application/json"));
  EXPECT_TRUE(CacheableContentType("text/event-stream"));
  EXPECT_FALSE(CacheableContentType("text/html"));
  EXPECT_FALSE(CacheableContentType("application/json\r\nX-Injected: 1"));
}

TEST(CacheKey, IsDeterministic) {
  EXPECT_TRUE(IsDeterministic(json{{"temperature", 0}}, 1.0));
  EXPECT_TRUE(IsDeterministic(json{{"temperature", 0.0}}, 1.0));
  EXPECT_FALSE(IsDeterministic(json{{"temperature", 0.7}}, 0.0));
  EXPECT_TRUE(IsDeterministic(json::object(), 0.0));  // default applies
  EXPECT_FALSE(IsDeterministic(json::object(), 0.8));
  EXPECT_TRUE(IsDeterministic(json{{"temperature", nullptr}}, 0.0));
  EXPECT_TRUE(IsDeterministic(json{{"temperature", 1.0}, {"seed", 42}}, 1.0));
  EXPECT_TRUE(IsDeterministic(json{{"seed", -1}}, 1.0));  // any explicit integer
  EXPECT_FALSE(IsDeterministic(json{{"seed", "42"}}, 1.0));
  EXPECT_FALSE(IsDeterministic(json{{"seed", 1.5}}, 1.0));
  EXPECT_FALSE(IsDeterministic(json{{"seed", nullptr}}, 1.0));
  EXPECT_FALSE(IsDeterministic(json{{"temperature", "0"}}, 1.0));
  EXPECT_FALSE(IsDeterministic(json::array(), 0.0));
}

TEST(CacheValue, EncodeDecodeRoundTrip) {
  CachedResponse r;
  r.status = 203;
  r.content_type = "text/event-stream";
  r.body = std::string("data: {\"x\":1}\n\n\0binary\r\n", 24);
  std::string v = EncodeCachedResponse(r);
  EXPECT_LT(v.size(), r.body.size() + r.content_type.size() + 16);
  auto d = DecodeCachedResponse(v);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 203);
  EXPECT_EQ(d->content_type, r.content_type);
  EXPECT_EQ(d->body, r.body);
  auto empty = DecodeCachedResponse(EncodeCachedResponse(CachedResponse{200, "", ""}));
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->body, "");

  EXPECT_FALSE(DecodeCachedResponse(""));
  EXPECT_FALSE(DecodeCachedResponse("garbage"));
  EXPECT_FALSE(DecodeCachedResponse("2 200 4\nabcd"));   // unknown version
  EXPECT_FALSE(DecodeCachedResponse("1 200 40\nabcd"));  // content type cut short
  EXPECT_FALSE(DecodeCachedResponse("1 20x 4\nabcd"));
  EXPECT_FALSE(DecodeCachedResponse("1 200\nabcd"));
}

TEST(CacheOptionsTest, ParseRedisUrl) {
  auto a = ParseRedisUrl("redis://127.0.0.1:6380/2");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 6380);
  EXPECT_EQ(a->db, 2);
  auto b = ParseRedisUrl("redis://cache.internal");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "cache.internal");
  EXPECT_EQ(b->port, 6379);
  EXPECT_EQ(b->db, 0);
  auto c = ParseRedisUrl("redis://bob:s3cret@h:1/");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->user, "bob");
  EXPECT_EQ(c->password, "s3cret");
  EXPECT_EQ(c->host, "h");
  auto d = ParseRedisUrl("redis://[::1]:7000");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->host, "::1");
  EXPECT_EQ(d->port, 7000);
  for (const char* bad : {"http://h:1", "redis://", "redis://h:0", "redis://h:x", "redis://h:1/db",
                          "redis://h:99999"}) {
    EXPECT_FALSE(ParseRedisUrl(bad).ok()) << bad;
  }
  CacheOptions o;
  o.redis_url = "redis://h:port";
  auto made = MakeResponseCache(o);
  ASSERT_FALSE(made.ok());
  EXPECT_NE(made.status().message().find("redis_url"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Redis, against a real redis-server.

std::string FindRedisServer() {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string cand = p.substr(start, end - start) + "/redis-server";
    if (access(cand.c_str(), X_OK) == 0) return cand;
    start = end + 1;
  }
  return "";
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  close(fd);
  return ok ? ntohs(a.sin_port) : 0;
}

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

class RedisServer {
 public:
  RedisServer(std::string bin, int port) : bin_(std::move(bin)), port_(port) {}
  ~RedisServer() { Kill(); }

  // Starts it and waits until it answers PING.
  bool Start() {
    const std::string port = std::to_string(port_);
    std::vector<std::string> args = {bin_,     "--port", port,           "--bind", "127.0.0.1",
                                     "--save", "",       "--appendonly", "no"};
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn(&pid_, bin_.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      pid_ = -1;
      return false;
    }
    for (int i = 0; i < 500; ++i) {
      if (Ping()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGCONT);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void Freeze() { kill(pid_, SIGSTOP); }
  void Thaw() { kill(pid_, SIGCONT); }
  int port() const { return port_; }

  // Runs one command on a fresh direct connection (for inspection); reply as text or integer.
  std::string Command(const std::string& cmd, const std::string& arg) {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    std::string out = "<error>";
    if (c && !c->err) {
      auto* r =
          static_cast<redisReply*>(redisCommand(c, "%s %b", cmd.c_str(), arg.data(), arg.size()));
      if (r) {
        if (r->type == REDIS_REPLY_INTEGER) out = std::to_string(r->integer);
        if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
          out = std::string(r->str, r->len);
        if (r->type == REDIS_REPLY_NIL) out = "<nil>";
        freeReplyObject(r);
      }
    }
    if (c) redisFree(c);
    return out;
  }

 private:
  bool Ping() {
    timeval tv{0, 200000};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    bool ok = false;
    if (c && !c->err) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
      ok = r && r->type == REDIS_REPLY_STATUS;
      if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    return ok;
  }

  std::string bin_;
  int port_;
  pid_t pid_ = -1;
};

class RedisCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bin_ = FindRedisServer();
    if (bin_.empty()) GTEST_SKIP() << "redis-server not found in PATH: Redis tests skipped";
    server_ = std::make_unique<RedisServer>(bin_, FreePort());
    ASSERT_TRUE(server_->Start()) << "could not start " << bin_;
    opts_.enabled = true;
    opts_.redis_url = "redis://127.0.0.1:" + std::to_string(server_->port());
    opts_.redis_prefix = "test:";
    opts_.ttl_s = 60;
    opts_.redis_timeout_ms = 200;
    opts_.redis_retry_ms = 300;
    opts_.hmac_key = "test-hmac-key";  // shared by the instances of a test (two gateways)
  }
  std::unique_ptr<ResponseCache> Make() {
    auto c = MakeResponseCache(opts_);
    EXPECT_TRUE(c.ok()) << c.status().message();
    return c.ok() ? std::move(*c) : nullptr;
  }
  // Make, with `key` stored (value "v1") and read back; nullptr (and a failure) otherwise.
  std::unique_ptr<ResponseCache> MakeHolding(const std::string& key) {
    auto c = Make();
    if (!c) return nullptr;
    c->Put(key, Resp("v1"));
    EXPECT_TRUE(c->Get(key));
    return HasFailure() ? nullptr : std::move(c);
  }
  // Waits (bounded) until a Put then Get through `c` round-trips again.
  bool Recovers(ResponseCache& c, const std::string& key, double max_ms) {
    auto t0 = std::chrono::steady_clock::now();
    while (MsSince(t0) < max_ms) {
      c.Put(key, Resp("back"));
      if (auto r = c.Get(key); r && r->body == "back") return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  std::string bin_;
  std::unique_ptr<RedisServer> server_;
  CacheOptions opts_;
};

TEST_F(RedisCacheTest, SharedByTwoInstancesWithTtl) {
  auto a = Make();
  auto b = Make();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->backend(), "redis");
  EXPECT_TRUE(a->stats().backend_up);
  CachedResponse r;
  r.status = 200;
  r.content_type = "text/event-stream";
  r.body = std::string("data: x\n\n\0tail", 14);  // with a NUL byte inside
  EXPECT_FALSE(b->Get("k1"));
  a->Put("k1", r);
  auto got = b->Get("k1");  // the other gateway sees it
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->content_type, "text/event-stream");
  EXPECT_EQ(got->body, r.body);
  // Stored under the prefix, with the TTL.
  EXPECT_EQ(server_->Command("EXISTS", "test:k1"), "1");
  int ttl = std::atoi(server_->Command("TTL", "test:k1").c_str());
  EXPECT_GT(ttl, 50);
  EXPECT_LE(ttl, 60);
  EXPECT_EQ(a->stats().puts, 1u);
  EXPECT_EQ(b->stats().hits, 1u);
  EXPECT_EQ(b->stats().misses, 1u);
  EXPECT_EQ(b->stats().errors, 0u);
  // A value not written by the cache is a miss, counted as an error.
  server_->Command("DEL", "test:k1");
  EXPECT_FALSE(a->Get("k1"));
}

// A Redis writer without the HMAC key cannot inject answers: forged, moved and re-typed
// entries are misses; another gateway with the same key reads the real ones.
TEST_F(RedisCacheTest, ForgedEntriesAreMisses) {
  auto a = Make();
  ASSERT_TRUE(a);
  CachedResponse r;
  r.body = "{\"ok\":1}";
  a->Put("k1", r);
  ASSERT_TRUE(a->Get("k1"));
  const std::string sealed = server_->Command("GET", "test:k1");
  ASSERT_GT(sealed.size(), 64u);
  // Written without the seal (the old format), or with a body changed under the seal.
  auto set = [&](const std::string& key, const std::string& value) {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", server_->port(), tv);
    ASSERT_TRUE(c && !c->err);
    auto* rep = static_cast<redisReply*>(
        redisCommand(c, "SET %b %b", key.data(), key.size(), value.data(), value.size()));
    if (rep) freeReplyObject(rep);
    redisFree(c);
  };
  set("test:k2", EncodeCachedResponse(r));
  EXPECT_FALSE(a->Get("k2"));
  std::string tampered = sealed;
  tampered.back() = '2';
  set("test:k3", tampered);
  EXPECT_FALSE(a->Get("k3"));
  set("test:k4", sealed);  // a valid entry moved to another key
  EXPECT_FALSE(a->Get("k4"));
  // A content type off the allow-list is neither stored nor served.
  CachedResponse html = r;
  html.content_type = "text/html\r\nSet-Cookie: x=1";
  a->Put("k5", html);
  EXPECT_EQ(server_->Command("EXISTS", "test:k5"), "0");
  // A gateway with another key (or none: a per-process one) does not trust these entries.
  opts_.hmac_key = "other";
  auto b = Make();
  EXPECT_FALSE(b->Get("k1"));
  opts_.hmac_key = "test-hmac-key";
  auto c = Make();
  EXPECT_TRUE(c->Get("k1"));
}

TEST_F(RedisCacheTest, UnreachableAtStartDegradesThenConnects) {
  server_->Kill();
  auto t0 = std::chrono::steady_clock::now();
  auto c = Make();
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->stats().backend_up);
  EXPECT_FALSE(c->Get("k"));
  c->Put("k", Resp("v"));
  EXPECT_LT(MsSince(t0), 2.0 * opts_.redis_timeout_ms);
  EXPECT_GE(c->stats().errors, 2u);
  ASSERT_TRUE(server_->Start());
  EXPECT_TRUE(Recovers(*c, "k", 5000));
  EXPECT_TRUE(c->stats().backend_up);
}

TEST_F(RedisCacheTest, KilledMidTestThenRestarted) {
  auto c = MakeHolding("k");
  ASSERT_TRUE(c);

  server_->Kill();
  const uint64_t errors0 = c->stats().errors;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(c->Get("k"));  // miss, not an exception or a hang
  EXPECT_LT(MsSince(t0), 2.0 * opts_.redis_timeout_ms);
  t0 = std::chrono::steady_clock::now();
  c->Put("k2", Resp("v2"));  // dropped
  EXPECT_LT(MsSince(t0), 2.0 * opts_.redis_timeout_ms);
  EXPECT_FALSE(c->stats().backend_up);
  EXPECT_GT(c->stats().errors, errors0);
  // While down, Redis is skipped: calls return at once.
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(c->Get("k"));
  EXPECT_LT(MsSince(t0), 100.0);

  ASSERT_TRUE(server_->Start());  // same port, empty data
  EXPECT_FALSE(c->Get("k"));      // still inside the retry window, or Redis lost it: a miss
  EXPECT_TRUE(Recovers(*c, "k", opts_.redis_retry_ms + 5000.0));
  EXPECT_TRUE(c->stats().backend_up);
}

TEST_F(RedisCacheTest, RestartBetweenCallsCostsNoOutage) {
  auto c = MakeHolding("k");
  ASSERT_TRUE(c);
  server_->Kill();
  ASSERT_TRUE(server_->Start());  // the pooled connection is now stale
  const uint64_t errors0 = c->stats().errors;
  c->Put("k2", Resp("v2"));  // the stale connection fails fast: retried on a fresh one
  auto r = c->Get("k2");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "v2");
  EXPECT_TRUE(c->stats().backend_up);
  EXPECT_EQ(c->stats().errors, errors0);
}

TEST_F(RedisCacheTest, FrozenServerTimesOut) {
  auto c = MakeHolding("k");
  ASSERT_TRUE(c);
  server_->Freeze();  // accepts connections (kernel), never answers
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(c->Get("k"));
  const double ms = MsSince(t0);
  EXPECT_GE(ms, 0.5 * opts_.redis_timeout_ms);
  EXPECT_LT(ms, 2.0 * opts_.redis_timeout_ms);
  EXPECT_FALSE(c->stats().backend_up);
  server_->Thaw();
  EXPECT_TRUE(Recovers(*c, "k", opts_.redis_retry_ms + 5000.0));
  // The data survived the freeze (same process).
  auto other = Make();
  ASSERT_TRUE(other);
  EXPECT_TRUE(other->Get("k"));
}

TEST_F(RedisCacheTest, ThreadsThroughAnOutage) {
  opts_.redis_pool = 3;
  auto c = Make();
  ASSERT_TRUE(c);
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0};
  std::atomic<int64_t> worst_us{0};
  std::vector<std::thread> threads;
  threads.reserve(6);
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop; ++i) {
        const std::string key = "t" + std::to_string((i * 7 + t) % 20);
        auto t0 = std::chrono::steady_clock::now();
        if (i % 2) {
          c->Put(key, Resp("v-" + key));
        } else if (auto r = c->Get(key); r && r->body != "v-" + key) {
          wrong++;
        }
        int64_t us = static_cast<int64_t>(MsSince(t0) * 1000);
        int64_t w = worst_us.load();
        while (us > w && !worst_us.compare_exchange_weak(w, us)) {}
      }
    });
  }
  std::this_thread::sleep_for(200ms);
  const uint64_t hits_before = c->stats().hits;
  server_->Kill();
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(server_->Start());
  std::this_thread::sleep_for(std::chrono::milliseconds(opts_.redis_retry_ms + 700));
  const uint64_t hits_mid = c->stats().hits;
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(hits_before, 0u);
  EXPECT_GT(c->stats().hits, hits_mid);  // serving from Redis again after the restart
  EXPECT_TRUE(c->stats().backend_up);
  EXPECT_GT(c->stats().errors, 0u);
  // Waiting for a pooled connection plus one command is bounded by the timeouts.
  EXPECT_LT(worst_us.load(), 3 * opts_.redis_timeout_ms * 1000);
}

}  // namespace
}  // namespace strata::gateway
