#include "cluster/config.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <openssl/sha.h>
#include <yaml-cpp/yaml.h>

namespace strata::cluster {

namespace {

// A log name for a key without one: "key-" and 8 hex digits of its SHA-256 (never a prefix
// of the key itself).
std::string DefaultKeyName(const std::string& key) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), d);
  return StrFormat("key-%02x%02x%02x%02x", d[0], d[1], d[2], d[3]);
}

// Reads one YAML document into the structs. yaml-cpp throws: everything runs inside a try in
// ParseClusterConfig; the readers below report errors by returning a Status.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  Status Err(const YAML::Node& n, const std::string& where, const std::string& what) const {
    const YAML::Mark m = n.Mark();
    if (m.line >= 0)
      return Errorf("%s:%d: %s: %s", source_.c_str(), m.line + 1, where.c_str(), what.c_str());
    return Errorf("%s: %s: %s", source_.c_str(), where.c_str(), what.c_str());
  }

  // Rejects keys not in `allowed` (catches typos such as "intervall_ms").
  Status Keys(const YAML::Node& map, const std::string& where,
              std::initializer_list<const char*> allowed) const {
    if (!map.IsMap()) return Err(map, where, "must be a mapping");
    for (const auto& kv : map) {
      const std::string k = kv.first.as<std::string>();
      bool ok = false;
      for (const char* a : allowed) ok = ok || k == a;
      if (!ok) {
        std::string list;
        for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
        return Err(kv.first, where, "unknown key '" + k + "' (expected one of: " + list + ")");
      }
    }
    return Status::Ok();
  }

  Status Str(const YAML::Node& map, const char* key, const std::string& where,
             std::string* out) const {
    const YAML::Node v = map[key];
    if (!v) return Status::Ok();
    if (!v.IsScalar()) return Err(v, Path(where, key), "must be a string");
    *out = v.Scalar();
    return Status::Ok();
  }

  Status Int(const YAML::Node& map, const char* key, const std::string& where, int64_t lo,
             int64_t hi, int64_t* out) const {
    const YAML::Node v = map[key];
    if (!v) return Status::Ok();
    int64_t x = 0;
    if (!v.IsScalar() || !YAML::convert<int64_t>::decode(v, x))
      return Err(v, Path(where, key), "must be an integer (got '" + Text(v) + "')");
    if (x < lo || x > hi)
      return Err(v, Path(where, key),
                 StrFormat("must be between %lld and %lld (got %lld)", static_cast<long long>(lo),
                           static_cast<long long>(hi), static_cast<long long>(x)));
    *out = x;
    return Status::Ok();
  }

  Status Int(const YAML::Node& map, const char* key, const std::string& where, int64_t lo,
             int64_t hi, int* out) const {
    int64_t x = *out;
    STRATA_RETURN_IF_ERROR(Int(map, key, where, lo, hi, &x));
    *out = static_cast<int>(x);
    return Status::Ok();
  }

  Status Num(const YAML::Node& map, const char* key, const std::string& where, double lo, double hi,
             double* out) const {
    const YAML::Node v = map[key];
    if (!v) return Status::Ok();
    double x = 0;
    if (!v.IsScalar() || !YAML::convert<double>::decode(v, x) || !std::isfinite(x))
      return Err(v, Path(where, key), "must be a number (got '" + Text(v) + "')");
    if (x < lo || x > hi)
      return Err(v, Path(where, key), StrFormat("must be between %g and %g (got %g)", lo, hi, x));
    *out = x;
    return Status::Ok();
  }

  Status Bool(const YAML::Node& map, const char* key, const std::string& where, bool* out) const {
    const YAML::Node v = map[key];
    if (!v) return Status::Ok();
    bool x = false;
    if (!v.IsScalar() || !YAML::convert<bool>::decode(v, x))
      return Err(v, Path(where, key), "must be true or false (got '" + Text(v) + "')");
    *out = x;
    return Status::Ok();
  }

  Status Bytes(const YAML::Node& map, const char* key, const std::string& where,
               int64_t* out) const {
    const YAML::Node v = map[key];
    if (!v) return Status::Ok();
    auto b = v.IsScalar() ? ParseByteSize(v.Scalar()) : std::nullopt;
    if (!b) return Err(v, Path(where, key), "must be a size such as 8GiB, 512MiB or 1000000");
    *out = *b;
    return Status::Ok();
  }

  static std::string Path(const std::string& where, const char* key) {
    return where.empty() ? key : where + "." + key;
  }
  static std::string Text(const YAML::Node& v) {
    if (v.IsScalar()) return v.Scalar();
    if (v.IsSequence()) return "a list";
    if (v.IsMap()) return "a mapping";
    return "null";
  }

  Status Model(const YAML::Node& n, ModelSpec* m) const {
    STRATA_RETURN_IF_ERROR(Keys(n, "model", {"path", "name"}));
    STRATA_RETURN_IF_ERROR(Str(n, "path", "model", &m->path));
    return Str(n, "name", "model", &m->name);
  }

  Status Node(const YAML::Node& n, const std::string& where, NodeSpec* s) const {
    // clang-format off
    STRATA_RETURN_IF_ERROR(Keys(
        n, where,
        {"name", "host", "port", "stage_port", "layers", "next", "memory", "speed", "threads",
         "parallel", "ctx", "stage_grace_ms", "reasoning_budget", "cache_type_k", "cache_type_v",
         "model_draft", "spec_type", "draft_max", "draft_min", "draft_p_min", "draft_vocab",
         "spec_ngram_size_n", "spec_max_seqs"}));
    // clang-format on
    s->line = n.Mark().line + 1;
    STRATA_RETURN_IF_ERROR(Str(n, "name", where, &s->name));
    if (s->name.empty()) return Err(n, where, "'name' is required");
    STRATA_RETURN_IF_ERROR(Str(n, "host", where, &s->host));
    if (!n["port"]) return Err(n, where, "'port' is required");
    STRATA_RETURN_IF_ERROR(Int(n, "port", where, 1, 65535, &s->port));
    STRATA_RETURN_IF_ERROR(Int(n, "stage_port", where, 0, 65535, &s->stage_port));
    if (const YAML::Node l = n["layers"]) {
      const std::string text = l.IsScalar() ? l.Scalar() : std::string();
      if (text == "auto") {
        s->layers_auto = true;
      } else {
        int a = -1, b = -1;
        char dash = 0;
        std::istringstream in(text);
        std::string rest;
        if (!(in >> a >> dash >> b) || dash != '-' || (in >> rest) || a < 0 || b < a)
          return Err(
              l, Path(where, "layers"),
              "must be \"auto\" or a range \"A-B\" with 0 <= A <= B (got '" + Text(l) + "')");
        s->layers_auto = false;
        s->layer_begin = a;
        s->layer_end = b;
      }
    }
    STRATA_RETURN_IF_ERROR(Str(n, "next", where, &s->next));
    STRATA_RETURN_IF_ERROR(Bytes(n, "memory", where, &s->memory));
    STRATA_RETURN_IF_ERROR(Num(n, "speed", where, 1e-6, 1e6, &s->speed));
    STRATA_RETURN_IF_ERROR(Int(n, "threads", where, 0, 4096, &s->threads));
    STRATA_RETURN_IF_ERROR(Int(n, "parallel", where, 1, 4096, &s->parallel));
    STRATA_RETURN_IF_ERROR(Int(n, "stage_grace_ms", where, 0, 3600000, &s->stage_grace_ms));
    STRATA_RETURN_IF_ERROR(Int(n, "reasoning_budget", where, -1, 1 << 24, &s->reasoning_budget));
    for (auto [key, out] : {std::pair{"cache_type_k", &s->cache_type_k},
                            std::pair{"cache_type_v", &s->cache_type_v}}) {
      STRATA_RETURN_IF_ERROR(Str(n, key, where, out));
      if (*out != "f16" && *out != "q8_0" && *out != "q4_0")
        return Err(n[key], Path(where, key), "must be f16, q8_0 or q4_0 (got '" + *out + "')");
    }
    STRATA_RETURN_IF_ERROR(Speculation(n, where, s));
    return Int(n, "ctx", where, 8, 1 << 24, &s->ctx);
  }

  Status Speculation(const YAML::Node& n, const std::string& where, NodeSpec* s) const {
    STRATA_RETURN_IF_ERROR(Str(n, "model_draft", where, &s->model_draft));
    STRATA_RETURN_IF_ERROR(Str(n, "spec_type", where, &s->spec_type));
    if (s->spec_type != "none" && s->spec_type != "ngram-simple")
      return Err(n["spec_type"], Path(where, "spec_type"),
                 "must be none or ngram-simple (got '" + s->spec_type + "')");
    STRATA_RETURN_IF_ERROR(Int(n, "draft_max", where, 0, 256, &s->draft_max));
    STRATA_RETURN_IF_ERROR(Int(n, "draft_min", where, 0, 256, &s->draft_min));
    STRATA_RETURN_IF_ERROR(Num(n, "draft_p_min", where, 0, 1, &s->draft_p_min));
    STRATA_RETURN_IF_ERROR(Int(n, "draft_vocab", where, 0, 1 << 24, &s->draft_vocab));
    STRATA_RETURN_IF_ERROR(Int(n, "spec_ngram_size_n", where, 1, 64, &s->spec_ngram_size_n));
    return Int(n, "spec_max_seqs", where, 0, 4096, &s->spec_max_seqs);
  }

  Status Resources(const YAML::Node& gw, ResourcesConfig* rc) const {
    const YAML::Node n = gw["resources"];
    if (!n) return Status::Ok();
    const std::string w = "gateway.resources";
    STRATA_RETURN_IF_ERROR(Keys(n, w,
                                {"warn_cpu_percent", "warn_memory_percent", "warn_disk_percent",
                                 "interval_ms", "disk_path"}));
    STRATA_RETURN_IF_ERROR(Num(n, "warn_cpu_percent", w, 0, 100, &rc->warn_cpu_percent));
    STRATA_RETURN_IF_ERROR(Num(n, "warn_memory_percent", w, 0, 100, &rc->warn_memory_percent));
    STRATA_RETURN_IF_ERROR(Num(n, "warn_disk_percent", w, 0, 100, &rc->warn_disk_percent));
    STRATA_RETURN_IF_ERROR(Int(n, "interval_ms", w, 100, 3600000, &rc->interval_ms));
    return Str(n, "disk_path", w, &rc->disk_path);
  }

  Status Gateway(const YAML::Node& n, GatewayConfig* g) const {
    const std::string w = "gateway";
    STRATA_RETURN_IF_ERROR(Keys(n, w,
                                {"listen",
                                 "tls_cert",
                                 "tls_key",
                                 "threads",
                                 "routing",
                                 "health",
                                 "circuit_breaker",
                                 "retry",
                                 "admission",
                                 "api_keys",
                                 "cache",
                                 "backends",
                                 "access_log",
                                 "max_connections",
                                 "max_connections_per_client",
                                 "idle_timeout_ms",
                                 "request_read_timeout_ms",
                                 "admin_key",
                                 "node_api_key",
                                 "node_api_key_file",
                                 "upstream",
                                 "resources"}));
    STRATA_RETURN_IF_ERROR(Resources(n, &g->resources));
    if (const YAML::Node l = n["listen"]) {
      const std::string text = l.IsScalar() ? l.Scalar() : std::string();
      const size_t colon = text.rfind(':');
      int port = -1;
      if (colon != std::string::npos) {
        try {
          size_t used = 0;
          port = std::stoi(text.substr(colon + 1), &used);
          if (used != text.size() - colon - 1) port = -1;
        } catch (...) {
          port = -1;
        }
      }
      if (colon == std::string::npos || port < 0 || port > 65535)
        return Err(l, "gateway.listen", "must be \"host:port\" (got '" + Text(l) + "')");
      g->listen_host = text.substr(0, colon);
      if (g->listen_host.size() >= 2 && g->listen_host.front() == '[')
        g->listen_host = g->listen_host.substr(1, g->listen_host.size() - 2);
      if (g->listen_host.empty()) g->listen_host = "0.0.0.0";
      g->listen_port = port;
    }
    STRATA_RETURN_IF_ERROR(Str(n, "tls_cert", w, &g->tls_cert));
    STRATA_RETURN_IF_ERROR(Str(n, "tls_key", w, &g->tls_key));
    if (g->tls_cert.empty() != g->tls_key.empty())
      return Err(n, w, "tls_cert and tls_key must be given together");
    STRATA_RETURN_IF_ERROR(Int(n, "threads", w, 1, 256, &g->threads));
    STRATA_RETURN_IF_ERROR(Bool(n, "access_log", w, &g->access_log));
    STRATA_RETURN_IF_ERROR(Int(n, "max_connections", w, 0, 10000000, &g->max_connections));
    STRATA_RETURN_IF_ERROR(
        Int(n, "max_connections_per_client", w, 0, 10000000, &g->max_connections_per_client));
    STRATA_RETURN_IF_ERROR(Int(n, "idle_timeout_ms", w, 100, 86400000, &g->idle_timeout_ms));
    STRATA_RETURN_IF_ERROR(
        Int(n, "request_read_timeout_ms", w, 100, 86400000, &g->request_read_timeout_ms));
    STRATA_RETURN_IF_ERROR(Str(n, "admin_key", w, &g->admin_key));
    STRATA_RETURN_IF_ERROR(Str(n, "node_api_key", w, &g->node_api_key));
    STRATA_RETURN_IF_ERROR(Str(n, "node_api_key_file", w, &g->node_api_key_file));
    if (const YAML::Node u = n["upstream"]) {
      const std::string uw = "gateway.upstream";
      STRATA_RETURN_IF_ERROR(Keys(u, uw, {"max_idle_per_backend", "idle_timeout_ms"}));
      STRATA_RETURN_IF_ERROR(
          Int(u, "max_idle_per_backend", uw, 0, 100000, &g->upstream.max_idle_per_backend));
      STRATA_RETURN_IF_ERROR(
          Int(u, "idle_timeout_ms", uw, 1, 3600000, &g->upstream.idle_timeout_ms));
    }

    if (const YAML::Node r = n["routing"]) {
      const std::string rw = "gateway.routing";
      STRATA_RETURN_IF_ERROR(
          Keys(r, rw,
               {"policy", "affinity_header", "affinity_field", "affinity_prefix_chars",
                "affinity_vnodes", "affinity_max_load_factor", "affinity_min_load",
                "avoid_memory_pressure"}));
      RoutingConfig& rc = g->routing;
      if (const YAML::Node p = r["policy"]) {
        const std::string s = p.IsScalar() ? p.Scalar() : std::string();
        if (s == "round_robin") rc.policy = RoutingPolicy::kRoundRobin;
        else if (s == "least_outstanding") rc.policy = RoutingPolicy::kLeastOutstanding;
        else if (s == "p2c") rc.policy = RoutingPolicy::kPowerOfTwo;
        else if (s == "affinity") rc.policy = RoutingPolicy::kAffinity;
        else
          return Err(
              p, rw + ".policy",
              "must be round_robin, least_outstanding, p2c or affinity (got '" + Text(p) + "')");
      }
      STRATA_RETURN_IF_ERROR(Str(r, "affinity_header", rw, &rc.affinity_header));
      STRATA_RETURN_IF_ERROR(Str(r, "affinity_field", rw, &rc.affinity_field));
      STRATA_RETURN_IF_ERROR(
          Int(r, "affinity_prefix_chars", rw, 1, 1 << 20, &rc.affinity_prefix_chars));
      STRATA_RETURN_IF_ERROR(Int(r, "affinity_vnodes", rw, 1, 4096, &rc.affinity_vnodes));
      STRATA_RETURN_IF_ERROR(
          Num(r, "affinity_max_load_factor", rw, 1, 1e6, &rc.affinity_max_load_factor));
      STRATA_RETURN_IF_ERROR(Int(r, "affinity_min_load", rw, 0, 1 << 20, &rc.affinity_min_load));
      STRATA_RETURN_IF_ERROR(Bool(r, "avoid_memory_pressure", rw, &rc.avoid_memory_pressure));
    }
    if (const YAML::Node h = n["health"]) {
      const std::string hw = "gateway.health";
      STRATA_RETURN_IF_ERROR(
          Keys(h, hw, {"interval_ms", "timeout_ms", "unhealthy_threshold", "healthy_threshold"}));
      HealthConfig& hc = g->health;
      STRATA_RETURN_IF_ERROR(Int(h, "interval_ms", hw, 10, 3600000, &hc.interval_ms));
      STRATA_RETURN_IF_ERROR(Int(h, "timeout_ms", hw, 10, 3600000, &hc.timeout_ms));
      STRATA_RETURN_IF_ERROR(Int(h, "unhealthy_threshold", hw, 1, 1000, &hc.unhealthy_threshold));
      STRATA_RETURN_IF_ERROR(Int(h, "healthy_threshold", hw, 1, 1000, &hc.healthy_threshold));
    }
    if (const YAML::Node c = n["circuit_breaker"]) {
      const std::string cw = "gateway.circuit_breaker";
      STRATA_RETURN_IF_ERROR(Keys(c, cw, {"failure_threshold", "open_ms", "half_open_max"}));
      STRATA_RETURN_IF_ERROR(
          Int(c, "failure_threshold", cw, 1, 1000000, &g->circuit.failure_threshold));
      STRATA_RETURN_IF_ERROR(Int(c, "open_ms", cw, 1, 3600000, &g->circuit.open_ms));
      STRATA_RETURN_IF_ERROR(Int(c, "half_open_max", cw, 1, 1000, &g->circuit.half_open_max));
    }
    if (const YAML::Node r = n["retry"]) {
      const std::string rw = "gateway.retry";
      STRATA_RETURN_IF_ERROR(
          Keys(r, rw, {"max_attempts", "backoff_ms", "max_backoff_ms", "unavailable_timeout_ms"}));
      STRATA_RETURN_IF_ERROR(Int(r, "max_attempts", rw, 1, 100, &g->retry.max_attempts));
      STRATA_RETURN_IF_ERROR(Int(r, "backoff_ms", rw, 0, 60000, &g->retry.backoff_ms));
      STRATA_RETURN_IF_ERROR(Int(r, "max_backoff_ms", rw, 0, 600000, &g->retry.max_backoff_ms));
      STRATA_RETURN_IF_ERROR(
          Int(r, "unavailable_timeout_ms", rw, 0, 3600000, &g->retry.unavailable_timeout_ms));
    }
    if (const YAML::Node a = n["admission"]) {
      const std::string aw = "gateway.admission";
      STRATA_RETURN_IF_ERROR(Keys(a, aw,
                                  {"max_concurrent", "max_queue", "queue_timeout_ms",
                                   "max_body_bytes", "request_timeout_ms"}));
      AdmissionConfig& ac = g->admission;
      STRATA_RETURN_IF_ERROR(Int(a, "max_concurrent", aw, 0, 10000000, &ac.max_concurrent));
      STRATA_RETURN_IF_ERROR(Int(a, "max_queue", aw, 0, 10000000, &ac.max_queue));
      STRATA_RETURN_IF_ERROR(Int(a, "queue_timeout_ms", aw, 0, 3600000, &ac.queue_timeout_ms));
      STRATA_RETURN_IF_ERROR(Bytes(a, "max_body_bytes", aw, &ac.max_body_bytes));
      if (ac.max_body_bytes < 1) return Err(a["max_body_bytes"], aw, "max_body_bytes must be > 0");
      STRATA_RETURN_IF_ERROR(Int(a, "request_timeout_ms", aw, 1, 86400000, &ac.request_timeout_ms));
    }
    if (const YAML::Node keys = n["api_keys"]) {
      if (!keys.IsSequence()) return Err(keys, "gateway.api_keys", "must be a list");
      std::set<std::string> seen;
      for (size_t i = 0; i < keys.size(); ++i) {
        const YAML::Node k = keys[i];
        const std::string kw = StrFormat("gateway.api_keys[%zu]", i);
        STRATA_RETURN_IF_ERROR(Keys(k, kw,
                                    {"key", "name", "requests_per_minute", "tokens_per_minute",
                                     "max_concurrent", "shared_cache"}));
        ApiKeySpec s;
        s.line = k.Mark().line + 1;
        STRATA_RETURN_IF_ERROR(Str(k, "key", kw, &s.key));
        if (s.key.empty()) return Err(k, kw, "'key' is required");
        if (!seen.insert(s.key).second) return Err(k, kw, "duplicate key");
        s.name = DefaultKeyName(s.key);
        STRATA_RETURN_IF_ERROR(Str(k, "name", kw, &s.name));
        STRATA_RETURN_IF_ERROR(
            Int(k, "requests_per_minute", kw, 0, int64_t{1} << 40, &s.requests_per_minute));
        STRATA_RETURN_IF_ERROR(
            Int(k, "tokens_per_minute", kw, 0, int64_t{1} << 50, &s.tokens_per_minute));
        STRATA_RETURN_IF_ERROR(Int(k, "max_concurrent", kw, 0, 10000000, &s.max_concurrent));
        STRATA_RETURN_IF_ERROR(Bool(k, "shared_cache", kw, &s.shared_cache));
        g->api_keys.push_back(std::move(s));
      }
    }
    if (const YAML::Node c = n["cache"]) {
      const std::string cw = "gateway.cache";
      STRATA_RETURN_IF_ERROR(
          Keys(c, cw,
               {"enabled", "max_entries", "max_bytes", "ttl_s", "redis_url", "redis_prefix",
                "redis_timeout_ms", "redis_retry_ms", "redis_password_file", "hmac_key_file",
                "redis_cluster", "redis_nodes"}));
      CacheConfig& cc = g->cache;
      cc.enabled = true;  // a cache section turns it on unless it says otherwise
      STRATA_RETURN_IF_ERROR(Bool(c, "enabled", cw, &cc.enabled));
      STRATA_RETURN_IF_ERROR(Int(c, "max_entries", cw, 1, int64_t{1} << 40, &cc.max_entries));
      STRATA_RETURN_IF_ERROR(Bytes(c, "max_bytes", cw, &cc.max_bytes));
      STRATA_RETURN_IF_ERROR(Int(c, "ttl_s", cw, 1, 100000000, &cc.ttl_s));
      STRATA_RETURN_IF_ERROR(Str(c, "redis_url", cw, &cc.redis_url));
      STRATA_RETURN_IF_ERROR(Str(c, "redis_password_file", cw, &cc.redis_password_file));
      STRATA_RETURN_IF_ERROR(Str(c, "hmac_key_file", cw, &cc.hmac_key_file));
      STRATA_RETURN_IF_ERROR(Str(c, "redis_prefix", cw, &cc.redis_prefix));
      STRATA_RETURN_IF_ERROR(Int(c, "redis_timeout_ms", cw, 1, 600000, &cc.redis_timeout_ms));
      STRATA_RETURN_IF_ERROR(Int(c, "redis_retry_ms", cw, 0, 3600000, &cc.redis_retry_ms));
      STRATA_RETURN_IF_ERROR(Bool(c, "redis_cluster", cw, &cc.redis_cluster));
      if (const YAML::Node rn = c["redis_nodes"]) {
        if (!rn.IsSequence()) return Err(rn, cw + ".redis_nodes", "must be a list of host:port");
        for (size_t i = 0; i < rn.size(); ++i) {
          if (!rn[i].IsScalar() || rn[i].Scalar().rfind(':') == std::string::npos)
            return Err(rn[i], StrFormat("%s.redis_nodes[%zu]", cw.c_str(), i), "must be host:port");
          cc.redis_nodes.push_back(rn[i].Scalar());
        }
      }
    }
    if (const YAML::Node b = n["backends"]) {
      if (!b.IsSequence()) return Err(b, "gateway.backends", "must be a list of node names");
      for (size_t i = 0; i < b.size(); ++i) {
        if (!b[i].IsScalar())
          return Err(b[i], StrFormat("gateway.backends[%zu]", i), "must be a node name");
        g->backends.push_back(b[i].Scalar());
      }
    }
    return Status::Ok();
  }

  Status Parse(const YAML::Node& root, ClusterConfig* c) const {
    if (!root || root.IsNull()) return Errorf("%s: the file is empty", source_.c_str());
    STRATA_RETURN_IF_ERROR(Keys(root, "top level", {"model", "cluster", "nodes", "gateway"}));
    if (const YAML::Node m = root["model"]) STRATA_RETURN_IF_ERROR(Model(m, &c->model));
    if (const YAML::Node cl = root["cluster"]) {
      STRATA_RETURN_IF_ERROR(Keys(cl, "cluster", {"secret", "secret_file"}));
      STRATA_RETURN_IF_ERROR(Str(cl, "secret", "cluster", &c->cluster.secret));
      STRATA_RETURN_IF_ERROR(Str(cl, "secret_file", "cluster", &c->cluster.secret_file));
      if (!c->cluster.secret.empty()) {
        const Status st = CheckClusterSecret(c->cluster.secret, "cluster.secret");
        if (!st.ok()) return Err(cl["secret"], "cluster.secret", st.message());
      }
    }
    const YAML::Node nodes = root["nodes"];
    if (!nodes)
      return Errorf("%s: 'nodes' is required (the list of compute nodes)", source_.c_str());
    if (!nodes.IsSequence() || nodes.size() == 0)
      return Err(nodes, "nodes", "must be a non-empty list");
    std::set<std::string> names;
    for (size_t i = 0; i < nodes.size(); ++i) {
      NodeSpec s;
      STRATA_RETURN_IF_ERROR(Node(nodes[i], StrFormat("nodes[%zu]", i), &s));
      if (!names.insert(s.name).second)
        return Err(nodes[i], StrFormat("nodes[%zu]", i), "duplicate node name '" + s.name + "'");
      c->nodes.push_back(std::move(s));
    }
    // References: `next` names a node, no node is the next of two, no cycles.
    std::set<std::string> targets;
    for (size_t i = 0; i < c->nodes.size(); ++i) {
      const NodeSpec& s = c->nodes[i];
      if (s.next.empty()) continue;
      const std::string w = StrFormat("nodes[%zu].next", i);
      if (!names.count(s.next))
        return Err(nodes[i]["next"], w, "no node is named '" + s.next + "'");
      if (s.next == s.name) return Err(nodes[i]["next"], w, "a node cannot be its own next");
      if (!targets.insert(s.next).second)
        return Err(nodes[i]["next"], w, "'" + s.next + "' is already the next of another node");
    }
    for (const NodeSpec& s : c->nodes) {  // a chain longer than the node count is a cycle
      const NodeSpec* p = &s;
      for (size_t steps = 0; p && !p->next.empty(); ++steps) {
        if (steps > c->nodes.size())
          return Errorf("%s:%d: nodes: the 'next' chain from '%s' is a cycle", source_.c_str(),
                        s.line, s.name.c_str());
        p = c->FindNode(p->next);
      }
    }
    if (const YAML::Node g = root["gateway"]) STRATA_RETURN_IF_ERROR(Gateway(g, &c->gateway));
    if (c->gateway.backends.empty()) {
      c->gateway.backends = c->DefaultBackends();
    } else {
      const YAML::Node b = root["gateway"]["backends"];
      std::set<std::string> seen;
      for (size_t i = 0; i < c->gateway.backends.size(); ++i) {
        const std::string& name = c->gateway.backends[i];
        const NodeSpec* n = c->FindNode(name);
        const std::string w = StrFormat("gateway.backends[%zu]", i);
        if (!n) return Err(b[i], w, "no node is named '" + name + "'");
        if (targets.count(name))
          return Err(b[i], w, "'" + name + "' is a later pipeline stage, not a backend");
        if (!seen.insert(name).second) return Err(b[i], w, "duplicate backend '" + name + "'");
      }
    }
    return Status::Ok();
  }

 private:
  std::string source_;
};

}  // namespace

const char* RoutingPolicyName(RoutingPolicy p) {
  switch (p) {
    case RoutingPolicy::kRoundRobin: return "round_robin";
    case RoutingPolicy::kLeastOutstanding: return "least_outstanding";
    case RoutingPolicy::kPowerOfTwo: return "p2c";
    case RoutingPolicy::kAffinity: return "affinity";
  }
  return "?";
}

const NodeSpec* ClusterConfig::FindNode(std::string_view name) const {
  for (const NodeSpec& n : nodes)
    if (n.name == name) return &n;
  return nullptr;
}

std::vector<std::string> ClusterConfig::DefaultBackends() const {
  std::set<std::string> targets;
  for (const NodeSpec& n : nodes)
    if (!n.next.empty()) targets.insert(n.next);
  std::vector<std::string> out;
  for (const NodeSpec& n : nodes)
    if (!targets.count(n.name)) out.push_back(n.name);
  return out;
}

std::string ClusterConfig::ModeOf(const NodeSpec& n) const {
  for (const NodeSpec& o : nodes)
    if (o.next == n.name) return "stage";
  return n.next.empty() ? "replica" : "pipeline";
}

std::optional<int64_t> ParseByteSize(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) return std::nullopt;
  double v = 0;
  try {
    size_t used = 0;
    v = std::stod(std::string(s.substr(0, i)), &used);
    if (used != i) return std::nullopt;
  } catch (...) {
    return std::nullopt;
  }
  std::string unit(s.substr(i));
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  double mul = 0;
  if (unit.empty() || unit == "B") mul = 1;
  else if (unit == "KB" || unit == "K") mul = 1e3;
  else if (unit == "MB" || unit == "M") mul = 1e6;
  else if (unit == "GB" || unit == "G") mul = 1e9;
  else if (unit == "TB" || unit == "T") mul = 1e12;
  else if (unit == "KiB") mul = 1024.0;
  else if (unit == "MiB") mul = 1024.0 * 1024;
  else if (unit == "GiB") mul = 1024.0 * 1024 * 1024;
  else if (unit == "TiB") mul = 1024.0 * 1024 * 1024 * 1024;
  else return std::nullopt;
  const double bytes = v * mul;
  if (!std::isfinite(bytes) || bytes > 9.0e18) return std::nullopt;
  return static_cast<int64_t>(std::llround(bytes));
}

Result<ClusterConfig> ParseClusterConfig(std::string_view text, const std::string& source) {
  ClusterConfig c;
  c.source = source;
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    Reader r(source);
    STRATA_RETURN_IF_ERROR(r.Parse(root, &c));
  } catch (const YAML::Exception& e) {
    if (e.mark.line >= 0)
      return Errorf("%s:%d: %s", source.c_str(), e.mark.line + 1, e.msg.c_str());
    return Errorf("%s: %s", source.c_str(), e.msg.c_str());
  } catch (const std::exception& e) {
    return Errorf("%s: %s", source.c_str(), e.what());
  }
  return c;
}

Status CheckClusterSecret(const std::string& secret, const std::string& where) {
  if (secret.empty() || secret.size() >= kMinClusterSecretBytes) return Status::Ok();
  return Errorf(
      "%s: the cluster secret is %zu bytes; at least %zu are required "
      "(generate one with: openssl rand -hex 32)",
      where.c_str(), secret.size(), kMinClusterSecretBytes);
}

Result<std::string> ResolveSecret(const std::string& value, const std::string& file,
                                  const char* env_var, const std::string& what) {
  if (!value.empty()) return value;
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return Errorf("%s: cannot read the file %s", what.c_str(), file.c_str());
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    const auto space = [](char ch) { return std::isspace(static_cast<unsigned char>(ch)) != 0; };
    while (!s.empty() && space(s.back())) s.pop_back();
    size_t b = 0;
    while (b < s.size() && space(s[b])) ++b;
    s.erase(0, b);
    if (s.empty()) return Errorf("%s: the file %s is empty", what.c_str(), file.c_str());
    return s;
  }
  if (env_var != nullptr) {
    if (const char* e = std::getenv(env_var)) return std::string(e);
  }
  return std::string();
}

Result<ClusterConfig> LoadClusterConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Errorf("cannot read %s", path.c_str());
  std::stringstream ss;
  ss << in.rdbuf();
  auto parsed = ParseClusterConfig(ss.str(), path);
  if (!parsed.ok()) return parsed;
  ClusterConfig c = std::move(parsed).value();
  // Secret files are relative to the config file's directory.
  const auto rel = [&](const std::string& f) {
    if (f.empty()) return f;
    std::filesystem::path p(f);
    if (p.is_relative()) p = std::filesystem::path(path).parent_path() / p;
    return p.string();
  };
  STRATA_ASSIGN_OR_RETURN(c.cluster.secret,
                          ResolveSecret(c.cluster.secret, rel(c.cluster.secret_file), nullptr,
                                        path + ": cluster.secret_file"));
  STRATA_RETURN_IF_ERROR(CheckClusterSecret(c.cluster.secret, path + ": cluster.secret_file"));
  STRATA_ASSIGN_OR_RETURN(
      c.gateway.node_api_key,
      ResolveSecret(c.gateway.node_api_key, rel(c.gateway.node_api_key_file), "STRATA_NODE_API_KEY",
                    path + ": gateway.node_api_key_file"));
  // TLS paths from the environment when the file names none.
  if (c.gateway.tls_cert.empty() && c.gateway.tls_key.empty()) {
    const char* cert = std::getenv("STRATA_TLS_CERT");
    const char* key = std::getenv("STRATA_TLS_KEY");
    if ((cert && *cert) != (key && *key))
      return Errorf("%s: set both STRATA_TLS_CERT and STRATA_TLS_KEY, or neither", path.c_str());
    if (cert && *cert) {
      c.gateway.tls_cert = cert;
      c.gateway.tls_key = key;
    }
  }
  STRATA_ASSIGN_OR_RETURN(
      c.gateway.cache.redis_password,
      ResolveSecret("", rel(c.gateway.cache.redis_password_file), "STRATA_REDIS_PASSWORD",
                    path + ": gateway.cache.redis_password_file"));
  STRATA_ASSIGN_OR_RETURN(
      c.gateway.cache.hmac_key,
      ResolveSecret("", rel(c.gateway.cache.hmac_key_file), "STRATA_CACHE_HMAC_KEY",
                    path + ": gateway.cache.hmac_key_file"));
  c.cluster.secret_file = rel(c.cluster.secret_file);
  c.gateway.node_api_key_file = rel(c.gateway.node_api_key_file);
  c.gateway.cache.redis_password_file = rel(c.gateway.cache.redis_password_file);
  return c;
}

}  // namespace strata::cluster
