// The response cache on a Redis Cluster (see redis_cluster.h and docs/gateway-cache.md).
#include "gateway/redis_cluster.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <mutex>

#include "gateway/redis_conn.h"

namespace strata::gateway {

uint16_t RedisCrc16(std::string_view data) {
  uint16_t crc = 0;
  for (unsigned char byte : data) {
    crc ^= static_cast<uint16_t>(byte) << 8;
    for (int bit = 0; bit < 8; ++bit)
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
  }
  return crc;
}

int RedisKeySlot(std::string_view key) {
  if (const size_t open = key.find('{'); open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  return RedisCrc16(key) % kRedisClusterSlots;
}

std::string RedisNodeAddr::ToString() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

namespace {

bool ParsePort(std::string_view s, int* out) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v < 1 || v > 65535)
    return false;
  *out = v;
  return true;
}

}  // namespace

Result<RedisNodeAddr> ParseRedisHostPort(std::string_view s) {
  const size_t colon = s.rfind(':');
  RedisNodeAddr a;
  if (colon == std::string_view::npos || !ParsePort(s.substr(colon + 1), &a.port))
    return Status::Error("bad Redis node address \"" + std::string(s) + "\": expected host:port");
  std::string_view host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  a.host = std::string(host);
  return a;
}

Result<std::vector<RedisSlotRange>> ParseClusterSlots(const redisReply* r,
                                                      const std::string& asked_host) {
  auto bad = [](const char* why) {
    return Status::Error(std::string("bad CLUSTER SLOTS reply: ") + why);
  };
  if (!r || r->type != REDIS_REPLY_ARRAY) return bad("not an array");
  std::vector<RedisSlotRange> out;
  for (size_t i = 0; i < r->elements; ++i) {
    const redisReply* e = r->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3)
      return bad("entry is not [first, last, master]");
    const redisReply* first = e->element[0];
    const redisReply* last = e->element[1];
    const redisReply* master = e->element[2];
    if (first->type != REDIS_REPLY_INTEGER || last->type != REDIS_REPLY_INTEGER ||
        first->integer < 0 || last->integer < first->integer || last->integer >= kRedisClusterSlots)
      return bad("slot range");
    if (master->type != REDIS_REPLY_ARRAY || master->elements < 2 ||
        master->element[0]->type != REDIS_REPLY_STRING ||
        master->element[1]->type != REDIS_REPLY_INTEGER || master->element[1]->integer < 1 ||
        master->element[1]->integer > 65535)
      return bad("master is not [host, port, ...]");
    RedisSlotRange range;
    range.first = static_cast<int>(first->integer);
    range.last = static_cast<int>(last->integer);
    range.master.host.assign(master->element[0]->str, master->element[0]->len);
    if (range.master.host.empty() || range.master.host == "?") range.master.host = asked_host;
    range.master.port = static_cast<int>(master->element[1]->integer);
    out.push_back(std::move(range));
  }
  return out;
}

std::optional<RedisRedirect> ParseRedisRedirect(std::string_view error,
                                                const std::string& asked_host) {
  RedisRedirect r;
  if (error.substr(0, 6) == "MOVED ") {
    error.remove_prefix(6);
  } else if (error.substr(0, 4) == "ASK ") {
    r.ask = true;
    error.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const size_t sp = error.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  const std::string_view slot = error.substr(0, sp);
  auto [p, ec] = std::from_chars(slot.data(), slot.data() + slot.size(), r.slot);
  if (slot.empty() || ec != std::errc() || p != slot.data() + slot.size() || r.slot < 0 ||
      r.slot >= kRedisClusterSlots)
    return std::nullopt;
  auto to = ParseRedisHostPort(error.substr(sp + 1));
  if (!to.ok()) return std::nullopt;
  r.to = *to;
  if (r.to.host.empty()) r.to.host = asked_host;
  return r;
}

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr int kMaxRedirects = 3;        // MOVED / ASK hops followed per command
constexpr int64_t kMinRefreshMs = 500;  // CLUSTER SLOTS at most this often

// One master (or any node seen): its single connection, used by one caller at a time, and a
// circuit that skips it for redis_retry_ms after a failure.
struct ClusterNode {
  explicit ClusterNode(RedisNodeAddr a) : addr(std::move(a)) {}
  ~ClusterNode() {
    if (ctx) redisFree(ctx);
  }
  const RedisNodeAddr addr;
  std::mutex mu;                // serializes the use of ctx
  redisContext* ctx = nullptr;  // guarded by mu
  std::atomic<int64_t> down_until_ms{0};
};

// Sends `argv` (after ASKING when `asking`); null when the connection failed.
Reply Send(redisContext* c, const std::vector<std::string>& argv, bool asking) {
  SigpipeGuard guard;
  std::vector<const char*> a;
  std::vector<size_t> len;
  for (const std::string& s : argv) {
    a.push_back(s.data());
    len.push_back(s.size());
  }
  if (asking) redisAppendCommand(c, "ASKING");
  redisAppendCommandArgv(c, static_cast<int>(a.size()), a.data(), len.data());
  void* raw = nullptr;
  if (asking) {
    if (redisGetReply(c, &raw) != REDIS_OK || c->err) return nullptr;
    Reply ok(static_cast<redisReply*>(raw));  // +OK (an error here shows in the next reply)
  }
  raw = nullptr;
  if (redisGetReply(c, &raw) != REDIS_OK || c->err) {
    if (raw) freeReplyObject(raw);
    return nullptr;
  }
  return Reply(static_cast<redisReply*>(raw));
}

class RedisClusterCache final : public ResponseCache {
 public:
  RedisClusterCache(const CacheOptions& o, const RedisEndpoint& ep,
                    const std::vector<RedisNodeAddr>& seeds)
      : opts_(o), ep_(ep), hmac_key_(CacheHmacKeyOrRandom(o.hmac_key)) {
    slots_.fill(-1);
    for (const RedisNodeAddr& s : seeds) NodeFor(s);
    Refresh(/*force=*/true);
  }

  std::optional<CachedResponse> Get(const std::string& key) override {
    const std::string k = opts_.redis_prefix + key;
    return counts_.OnGet(Run(k, {"GET", k}), hmac_key_, k);
  }

  void Put(const std::string& key, const CachedResponse& response) override {
    if (!CacheableContentType(response.content_type)) return;
    const std::string k = opts_.redis_prefix + key;
    std::vector<std::string> argv{"SET", k,
                                  SealCacheValue(hmac_key_, k, EncodeCachedResponse(response))};
    if (opts_.ttl_s > 0) {
      argv.emplace_back("EX");
      argv.emplace_back(std::to_string(opts_.ttl_s));
    }
    counts_.OnSet(Run(k, argv));
  }

  CacheStats stats() const override {
    CacheStats s = counts_.Stats();
    s.redirects = redirects_;
    std::lock_guard<std::mutex> lock(map_mu_);
    const int64_t now = NowMs();
    s.backend_up = !masters_.empty();
    for (int m : masters_)
      if (now < nodes_[m]->down_until_ms.load()) s.backend_up = false;
    return s;
  }
  std::string backend() const override { return "redis-cluster"; }

 private:
  // Runs a one-key command on the slot's master, following redirections. Null on failure
  // (counted in counts_.errors); an error reply other than a redirection is returned as is.
  Reply Run(const std::string& key, const std::vector<std::string>& argv) {
    const int slot = RedisKeySlot(key);
    ClusterNode* node = MasterOf(slot);
    bool asking = false;
    for (int hop = 0; node && hop <= kMaxRedirects; ++hop) {
      bool failed = false;
      Reply r = Call(*node, argv, asking, &failed);
      if (!r) {
        if (failed) Refresh(false);  // a failover may have promoted a replica
        break;
      }
      if (r->type != REDIS_REPLY_ERROR) return r;
      auto to = ParseRedisRedirect(std::string_view(r->str, r->len), node->addr.host);
      if (!to) return r;  // CLUSTERDOWN, TRYAGAIN, ...: the caller counts it as an error
      redirects_++;
      node = NodeFor(to->to);
      asking = to->ask;
      if (!to->ask) {
        SetMaster(to->slot, node);
        Refresh(false);
      }
    }
    counts_.errors++;
    return nullptr;
  }

  // One command on `node`'s connection. Null when the node is being skipped or failed (then
  // `failed` is set and the node skipped for redis_retry_ms).
  Reply Call(ClusterNode& node, const std::vector<std::string>& argv, bool asking, bool* failed) {
    if (NowMs() < node.down_until_ms.load()) return nullptr;
    std::lock_guard<std::mutex> lock(node.mu);
    if (NowMs() < node.down_until_ms.load()) return nullptr;  // failed while we waited
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool fresh = node.ctx == nullptr;
      if (fresh) {
        node.ctx = RedisConnect(node.addr.host, node.addr.port, opts_.redis_timeout_ms, ep_.user,
                                ep_.password, 0);
        if (!node.ctx) break;
      }
      const int64_t t0 = NowMs();
      Reply r = Send(node.ctx, argv, asking);
      if (r) return r;
      redisFree(node.ctx);
      node.ctx = nullptr;
      // A kept connection that fails fast most likely went stale (the node restarted since):
      // once more on a fresh one. A fresh one failing, or a timeout, is an outage.
      if (fresh || NowMs() - t0 >= opts_.redis_timeout_ms / 2) break;
    }
    node.down_until_ms = NowMs() + opts_.redis_retry_ms;
    *failed = true;
    return nullptr;
  }

  ClusterNode* MasterOf(int slot) {
    for (int pass = 0; pass < 2; ++pass) {
      {
        std::lock_guard<std::mutex> lock(map_mu_);
        if (slots_[slot] >= 0) return nodes_[slots_[slot]].get();
      }
      if (pass == 0) Refresh(false);
    }
    return nullptr;
  }

  ClusterNode* NodeFor(const RedisNodeAddr& addr) {
    std::lock_guard<std::mutex> lock(map_mu_);
    return nodes_[IndexOf(addr)].get();
  }
  int IndexOf(const RedisNodeAddr& addr) {  // map_mu_ held
    for (size_t i = 0; i < nodes_.size(); ++i)
      if (nodes_[i]->addr == addr) return static_cast<int>(i);
    nodes_.push_back(std::make_unique<ClusterNode>(addr));
    return static_cast<int>(nodes_.size() - 1);
  }

  void SetMaster(int slot, ClusterNode* node) {
    std::lock_guard<std::mutex> lock(map_mu_);
    const int i = IndexOf(node->addr);
    slots_[slot] = static_cast<int16_t>(i);
    if (std::find(masters_.begin(), masters_.end(), i) == masters_.end()) masters_.push_back(i);
  }

  // Reloads the slot map with CLUSTER SLOTS from the first node that answers (the current
  // masters first, then every node seen). At most once per kMinRefreshMs unless `force`.
  void Refresh(bool force) {
    std::vector<ClusterNode*> ask;
    {
      std::lock_guard<std::mutex> lock(map_mu_);
      const int64_t now = NowMs();
      if (refreshing_ || (!force && now - last_refresh_ms_ < kMinRefreshMs)) return;
      refreshing_ = true;
      last_refresh_ms_ = now;
      for (int m : masters_) ask.push_back(nodes_[m].get());
      for (auto& n : nodes_)
        if (std::find(ask.begin(), ask.end(), n.get()) == ask.end()) ask.push_back(n.get());
    }
    for (ClusterNode* n : ask) {
      bool failed = false;
      Reply r = Call(*n, {"CLUSTER", "SLOTS"}, false, &failed);
      if (!r) continue;
      auto ranges = ParseClusterSlots(r.get(), n->addr.host);
      if (!ranges.ok() || ranges->empty()) continue;
      std::lock_guard<std::mutex> lock(map_mu_);
      slots_.fill(-1);
      masters_.clear();
      for (const RedisSlotRange& range : *ranges) {
        const int i = IndexOf(range.master);
        if (std::find(masters_.begin(), masters_.end(), i) == masters_.end()) masters_.push_back(i);
        for (int s = range.first; s <= range.last; ++s) slots_[s] = static_cast<int16_t>(i);
      }
      refreshing_ = false;
      return;
    }
    std::lock_guard<std::mutex> lock(map_mu_);
    refreshing_ = false;
  }

  const CacheOptions opts_;
  const RedisEndpoint ep_;
  const std::string hmac_key_;

  mutable std::mutex map_mu_;  // guards the fields below (not the nodes' connections)
  std::vector<std::unique_ptr<ClusterNode>> nodes_;  // every node seen; never shrinks
  std::array<int16_t, kRedisClusterSlots> slots_;    // slot -> index in nodes_, -1: unknown
  std::vector<int> masters_;                         // the distinct indices in slots_
  int64_t last_refresh_ms_ = 0;
  bool refreshing_ = false;
  RedisCacheCounters counts_;
  std::atomic<uint64_t> redirects_{0};
};

}  // namespace

Result<std::unique_ptr<ResponseCache>> MakeRedisClusterCache(
    const CacheOptions& opts, const RedisEndpoint& ep, const std::vector<RedisNodeAddr>& seeds) {
  if (seeds.empty()) return Status::Error("cache: Redis Cluster without a seed node");
  if (opts.redis_timeout_ms <= 0) return Status::Error("cache: redis_timeout_ms must be > 0");
  return std::unique_ptr<ResponseCache>(std::make_unique<RedisClusterCache>(opts, ep, seeds));
}

}  // namespace strata::gateway
