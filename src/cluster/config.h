// The cluster description (cluster.yaml), read by `strata gateway`, `strata node` and the
// planner: the model, the nodes (replicas and pipeline stages), and the gateway's routing,
// health, failover, admission, API keys and cache. Schema: docs/cluster-config.md.
//
// Parsing is strict: unknown keys, wrong types and inconsistent references are errors whose
// message names the file and line ("cluster.yaml:12: nodes[1].port: must be ...").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace strata::cluster {

struct ModelSpec {
  std::string path;  // GGUF file
  std::string name;  // served model id ("": the file name)
};

struct NodeSpec {
  std::string name;
  std::string host = "127.0.0.1";
  int port = 0;             // HTTP port (required)
  int stage_port = 0;       // stage protocol port (0: none / not a pipeline stage)
  bool layers_auto = true;  // "auto" (or absent): the planner decides
  int layer_begin = -1;     // "A-B": layers A..B inclusive
  int layer_end = -1;
  std::string next;    // the next pipeline stage's node name ("": last stage / replica)
  int64_t memory = 0;  // bytes the node may use (0: unknown)
  double speed = 1.0;  // relative compute speed (planner weight)
  int threads = 0;     // compute threads (0: all cores)
  int parallel = 4;    // sequence slots
  int ctx = 4096;      // KV positions per slot
  std::string cache_type_k = "f16";  // KV cache types: f16, q8_0, q4_0
  std::string cache_type_v = "f16";
  // Pipeline head: a stage back within this long loses no request (replayed); 0: fail at once.
  int stage_grace_ms = 10000;
  // Most thinking tokens per request (-1: unlimited): `strata node --reasoning-budget`.
  int reasoning_budget = -1;
  // Speculative decoding (`strata node --model-draft ...`, docs/speculative.md): a draft model
  // path ("": none; relative to the config file's directory), spec_type "none" or
  // "ngram-simple", draft tokens at most / at least, the draft's minimum top probability, the
  // n-gram lookup's longest n, and the most generating sequences that speculate (0: auto).
  std::string model_draft;
  int draft_vocab = 0;  // the draft proposes only ids below this (0: all)
  std::string spec_type = "none";
  int draft_max = 16;
  int draft_min = 0;
  double draft_p_min = 0.75;
  int spec_ngram_size_n = 3;
  int spec_max_seqs = 0;
  int line = 0;  // 1-based line of the entry in the file
};

struct ClusterSection {
  std::string secret;  // shared secret of the stage protocol ("": none)
  // A file holding the secret (used when `secret` is empty; relative to the config file's
  // directory). Else $STRATA_CLUSTER_SECRET, read by `strata node`.
  std::string secret_file;
};

// The shortest cluster secret accepted (bytes).
inline constexpr size_t kMinClusterSecretBytes = 32;
// Ok when `secret` is empty (none) or long enough; else an error saying how to make one.
Status CheckClusterSecret(const std::string& secret, const std::string& where);

// A secret given by value, by file or by environment variable, in that order of precedence
// (the file's content is trimmed of surrounding whitespace). "" when none is set; an error
// when the file cannot be read or is empty.
Result<std::string> ResolveSecret(const std::string& value, const std::string& file,
                                  const char* env_var, const std::string& what);

enum class RoutingPolicy { kRoundRobin, kLeastOutstanding, kPowerOfTwo, kAffinity };
const char* RoutingPolicyName(RoutingPolicy p);

struct RoutingConfig {
  RoutingPolicy policy = RoutingPolicy::kLeastOutstanding;
  // Affinity: the session id is taken from this header, else this body field, else the first
  // `affinity_prefix_chars` characters of the prompt (chat: of the first messages).
  std::string affinity_header = "X-Session-Id";
  std::string affinity_field = "user";
  int affinity_prefix_chars = 256;
  int affinity_vnodes = 64;  // points per backend on the hash ring
  // The affine backend is skipped when its outstanding requests exceed
  // max(affinity_min_load, affinity_max_load_factor * (least loaded's + 1)).
  double affinity_max_load_factor = 2.0;
  int affinity_min_load = 4;
  // Skip a backend whose /health reports memory pressure (its resources.memory_pressure) while
  // other backends are eligible.
  bool avoid_memory_pressure = false;
};

// The gateway's own resource monitoring (src/http/resources.h): warning thresholds in percent
// (0: off), the sampling interval and the directory whose filesystem's use is reported.
struct ResourcesConfig {
  double warn_cpu_percent = 90, warn_memory_percent = 90, warn_disk_percent = 90;
  int interval_ms = 5000;
  std::string disk_path = ".";
};

struct HealthConfig {
  int interval_ms = 2000;
  int timeout_ms = 1000;
  int unhealthy_threshold = 2;  // consecutive failed probes -> unhealthy
  int healthy_threshold = 1;    // consecutive good probes -> healthy
};

struct CircuitConfig {
  int failure_threshold = 3;  // consecutive request failures -> open (ejected)
  int open_ms = 5000;         // then half-open: one trial request
  int half_open_max = 1;      // trial requests at once while half-open
};

struct RetryConfig {
  int max_attempts = 3;  // backends tried per request, the first included
  int backoff_ms = 25;   // base of the exponential backoff (full jitter)
  int max_backoff_ms = 500;
  int unavailable_timeout_ms = 5000;  // no backend to try: wait this long, then 503
};

struct AdmissionConfig {
  int max_concurrent = 1024;  // requests being proxied at once (0: unlimited)
  int max_queue = 1024;       // requests waiting for a slot
  int queue_timeout_ms = 5000;
  int64_t max_body_bytes = 8 << 20;
  int request_timeout_ms = 600000;  // whole upstream exchange
};

struct ApiKeySpec {
  std::string key;
  std::string name;
  int64_t requests_per_minute = 0;  // 0: unlimited
  int64_t tokens_per_minute = 0;
  int max_concurrent = 0;
  bool shared_cache = false;  // share cached answers with the other keys (default: its own)
  int line = 0;
};

// Mirrors gateway::CacheOptions (cache.h) so that this library needs no gateway code.
struct CacheConfig {
  bool enabled = false;
  int64_t max_entries = 4096;
  int64_t max_bytes = 64 << 20;
  int ttl_s = 600;
  std::string redis_url;
  // Redis Cluster (gateway::CacheOptions): follow the cluster's slots; seeds: redis_nodes
  // ("host:port") plus redis_url's host.
  bool redis_cluster = false;
  std::vector<std::string> redis_nodes;
  std::string redis_prefix = "strata:cache:";
  int redis_timeout_ms = 200;
  int redis_retry_ms = 2000;
  // The Redis password when the URL has none: from this file, else $STRATA_REDIS_PASSWORD.
  std::string redis_password_file;
  std::string redis_password;  // resolved by LoadClusterConfig (file, else env), not a key
  // The key sealing Redis entries (HMAC-SHA256), shared by the gateways of a cluster: from
  // hmac_key_file, else $STRATA_CACHE_HMAC_KEY (resolved into hmac_key by LoadClusterConfig).
  std::string hmac_key_file, hmac_key;
};

// Keep-alive connections from the gateway to each backend.
struct UpstreamConfig {
  int max_idle_per_backend = 32;  // idle connections kept per backend (0: none)
  int idle_timeout_ms = 15000;    // closed after this long idle (below the node's 30 s)
};

struct GatewayConfig {
  std::string listen_host = "0.0.0.0";
  int listen_port = 8000;
  std::string tls_cert, tls_key;  // both or neither ($STRATA_TLS_CERT / $STRATA_TLS_KEY)
  // Sent to the nodes as "Authorization: Bearer KEY" (requests and health probes), for nodes
  // started with --api-key. Else from node_api_key_file, else $STRATA_NODE_API_KEY.
  std::string node_api_key, node_api_key_file;
  UpstreamConfig upstream;
  int threads = 2;  // event loop threads
  RoutingConfig routing;
  ResourcesConfig resources;
  HealthConfig health;
  CircuitConfig circuit;
  RetryConfig retry;
  AdmissionConfig admission;
  std::vector<ApiKeySpec> api_keys;  // empty: no authentication
  CacheConfig cache;
  std::vector<std::string> backends;  // node names; filled with the default when absent
  bool access_log = true;
  // Client connections (the HTTP core, src/http).
  int max_connections = 2048;            // open at once (0: unlimited)
  int max_connections_per_client = 512;  // per client address (0: unlimited)
  int idle_timeout_ms = 30000;           // keep-alive: waiting for a request
  int request_read_timeout_ms = 30000;   // reading one whole request (headers and body)
  std::string admin_key;  // "": /metrics and /api/cluster open (STRATA_ADMIN_KEY also sets it)
};

struct ClusterConfig {
  std::string source;  // file name, for messages
  ModelSpec model;
  ClusterSection cluster;
  std::vector<NodeSpec> nodes;
  GatewayConfig gateway;

  const NodeSpec* FindNode(std::string_view name) const;
  // Nodes that are no other node's `next`: replicas and pipeline heads.
  std::vector<std::string> DefaultBackends() const;
  // "replica" (no next), "pipeline" (head of a pipeline) or "stage" (a later stage).
  std::string ModeOf(const NodeSpec& n) const;
};

// Parses YAML text. `source` names the file in error messages.
Result<ClusterConfig> ParseClusterConfig(std::string_view text,
                                         const std::string& source = "cluster.yaml");
Result<ClusterConfig> LoadClusterConfig(const std::string& path);

// "8GiB", "512MiB", "1.5GB", "1000" -> bytes.
std::optional<int64_t> ParseByteSize(std::string_view s);

}  // namespace strata::cluster
